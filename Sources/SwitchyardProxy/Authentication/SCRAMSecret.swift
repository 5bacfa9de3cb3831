/// What the server keeps for one SCRAM-SHA-256 user: enough to check a client's proof and to prove
/// itself back, but not the password (StoredKey is a hash of ClientKey, so it can't be replayed as a proof).
public struct SCRAMSecret: Sendable, Equatable, CustomStringConvertible {
    public let iterations: Int
    public let salt: [UInt8]
    public let storedKey: [UInt8]
    public let serverKey: [UInt8]

    public init(iterations: Int, salt: [UInt8], storedKey: [UInt8], serverKey: [UInt8]) {
        self.iterations = iterations
        self.salt = salt
        self.storedKey = storedKey
        self.serverKey = serverKey
    }

    /// Parses Postgres' `rolpassword` format, `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`,
    /// so operators can paste verifiers straight from `pg_authid` into our config.
    public init(verifier: String) throws(SCRAMError) {
        let sections = verifier.split(separator: "$", omittingEmptySubsequences: false)
        guard sections.count == 3, sections[0] == "SCRAM-SHA-256" else {
            throw .invalidVerifier("expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>")
        }
        let parameters = sections[1].split(separator: ":", omittingEmptySubsequences: false)
        let keys = sections[2].split(separator: ":", omittingEmptySubsequences: false)
        guard parameters.count == 2, keys.count == 2 else {
            throw .invalidVerifier("expected <iterations>:<salt> and <StoredKey>:<ServerKey>")
        }
        guard let iterations = SCRAMPrimitives.parseIterations(parameters[0].utf8) else {
            throw .invalidVerifier("iteration count is not a positive integer")
        }
        guard let salt = SCRAMPrimitives.decodeBase64(parameters[1].utf8), !salt.isEmpty else {
            throw .invalidVerifier("salt is not valid base64")
        }
        guard let storedKey = SCRAMPrimitives.decodeBase64(keys[0].utf8), storedKey.count == 32,
              let serverKey = SCRAMPrimitives.decodeBase64(keys[1].utf8), serverKey.count == 32 else {
            throw .invalidVerifier("StoredKey and ServerKey must be 32 bytes of base64")
        }
        self.init(iterations: iterations, salt: salt, storedKey: storedKey, serverKey: serverKey)
    }

    /// Computes the secret for a password, as Postgres does for `CREATE ROLE … PASSWORD`.
    ///
    /// SASLprep is applied minimally: the password's UTF-8 bytes are used as-is. Postgres falls back to
    /// the same raw bytes whenever SASLprep fails, and for the ASCII passwords we expect both agree.
    /// `iterations` must be in 1...Int32.max (a programming error otherwise).
    public static func derive(password: String, salt: [UInt8], iterations: Int = 4096) -> SCRAMSecret {
        let salted = SCRAMPrimitives.saltedPassword(password, salt: salt, iterations: iterations)
        let clientKey = SCRAMPrimitives.hmac(salted, Array("Client Key".utf8))
        return SCRAMSecret(
            iterations: iterations, salt: salt,
            storedKey: SCRAMPrimitives.sha256(clientKey),
            serverKey: SCRAMPrimitives.hmac(salted, Array("Server Key".utf8)))
    }

    /// The Postgres `rolpassword` form of this secret; round-trips through `init(verifier:)`.
    public var verifier: String {
        "SCRAM-SHA-256$\(iterations):\(SCRAMPrimitives.base64(salt))"
            + "$\(SCRAMPrimitives.base64(storedKey)):\(SCRAMPrimitives.base64(serverKey))"
    }

    /// Keeps keys out of logs and string interpolation.
    public var description: String { "SCRAMSecret(iterations: \(iterations), keys: <redacted>)" }
}
