import Crypto
import Synchronization

/// The client side of SCRAM-SHA-256, used by the proxy to log in to PostgreSQL with a configured
/// password, or with the keys of a client's own login (SCRAM pass-through, for `auth_query` roles).
///
/// A value-type state machine with no I/O. Any failure ends the exchange; later calls return `.outOfOrder`.
public struct SCRAMClientExchange: Sendable {
    private enum State: Sendable {
        case awaitingServerFirst
        case awaitingServerFinal(serverSignature: [UInt8])
        case finished
    }

    /// What the proof is made from: a password (through PBKDF2), or the keys themselves.
    private enum Secret: Sendable {
        case password(String)
        case keys(clientKey: [UInt8], serverKey: [UInt8])
    }

    private let secret: Secret
    private let clientNonce: String
    private let clientFirstBare: [UInt8]
    private var state = State.awaitingServerFirst

    /// `username` defaults to empty, as libpq sends it: Postgres takes the user from the startup packet.
    /// The nonce is injected so tests are deterministic; use `SCRAMServerExchange.randomNonce()`.
    public init(password: String, clientNonce: String, username: String = "") {
        self.init(secret: .password(password), clientNonce: clientNonce, username: username)
    }

    /// Logs in with a ClientKey recovered from a client's proof and the ServerKey of the role's verifier.
    /// Needs no PBKDF2, and works whatever salt the server sends, provided its verifier is the same one.
    public init(clientKey: [UInt8], serverKey: [UInt8], clientNonce: String) {
        self.init(secret: .keys(clientKey: clientKey, serverKey: serverKey), clientNonce: clientNonce, username: "")
    }

    private init(secret: Secret, clientNonce: String, username: String) {
        precondition(SCRAMPrimitives.isValidNonce(clientNonce.utf8), "client nonce must be printable ASCII without ','")
        self.secret = secret
        self.clientNonce = clientNonce
        var bare = Array("n=".utf8)
        for byte in username.utf8 {  // RFC 5802 saslname escaping
            switch byte {
            case UInt8(ascii: "="): bare += "=3D".utf8
            case comma: bare += "=2C".utf8
            default: bare.append(byte)
            }
        }
        self.clientFirstBare = bare + ",r=\(clientNonce)".utf8
    }

    /// `n,,n=,r=<nonce>`: no channel binding, and we don't claim the server lacks it (we never use -PLUS).
    public func clientFirstMessage() -> [UInt8] { Array("n,,".utf8) + clientFirstBare }

    /// Takes `r=<nonce>,s=<salt>,i=<iterations>` and returns the client-final message with our proof.
    /// PBKDF2 here costs milliseconds; pass a shared `cache` to pay it once per (password, salt, iterations).
    public mutating func receiveServerFirst(
        _ message: [UInt8], cache: SaltedPasswordCache? = nil
    ) -> Result<[UInt8], SCRAMError> {
        guard case .awaitingServerFirst = state else { return .failure(.outOfOrder) }
        state = .finished
        guard let attributes = SCRAMPrimitives.attributes(message[...]), attributes.count >= 3 else {
            return .failure(.malformedMessage("expected r=, s= and i= attributes"))
        }
        guard attributes[0].name != UInt8(ascii: "m") else {
            return .failure(.malformedMessage("mandatory extensions are not supported"))
        }
        guard attributes[0].name == UInt8(ascii: "r"), attributes[1].name == UInt8(ascii: "s"),
              attributes[2].name == UInt8(ascii: "i") else {
            return .failure(.malformedMessage("expected r=, s= and i= attributes"))
        }
        let nonce = attributes[0].value
        guard SCRAMPrimitives.isValidNonce(nonce) else { return .failure(.malformedMessage("invalid server nonce")) }
        // The server must extend our nonce; echoing it alone would let it replay an old exchange.
        guard nonce.count > clientNonce.utf8.count, nonce.starts(with: clientNonce.utf8) else {
            return .failure(.nonceMismatch)
        }
        guard let salt = SCRAMPrimitives.decodeBase64(attributes[1].value), !salt.isEmpty else {
            return .failure(.malformedMessage("salt is not valid base64"))
        }
        guard let iterations = SCRAMPrimitives.parseIterations(attributes[2].value) else {
            return .failure(.malformedMessage("iteration count is not a positive integer"))
        }

        let clientKey: [UInt8], serverKey: [UInt8]
        switch secret {
        case .password(let password):
            let salted = cache?.saltedPassword(password: password, salt: salt, iterations: iterations)
                ?? SCRAMPrimitives.saltedPassword(password, salt: salt, iterations: iterations)
            clientKey = SCRAMPrimitives.hmac(salted, Array("Client Key".utf8))
            serverKey = SCRAMPrimitives.hmac(salted, Array("Server Key".utf8))
        case .keys(let client, let server):
            (clientKey, serverKey) = (client, server)
        }
        let withoutProof = Array("c=biws,r=".utf8) + nonce  // "biws" = base64("n,,")
        let authMessage = clientFirstBare + [comma] + message + [comma] + withoutProof
        let proof = SCRAMPrimitives.xor(clientKey, SCRAMPrimitives.hmac(SCRAMPrimitives.sha256(clientKey), authMessage))
        state = .awaitingServerFinal(serverSignature: SCRAMPrimitives.hmac(serverKey, authMessage))
        return .success(withoutProof + ",p=\(SCRAMPrimitives.base64(proof))".utf8)
    }

    /// Checks `v=<signature>`, which proves the server knows our password's keys and isn't an impostor
    /// that merely accepted us. `e=<error>` is reported as `.serverError`.
    public func verifyServerFinal(_ message: [UInt8]) -> Result<Void, SCRAMError> {
        guard case let .awaitingServerFinal(expected) = state else { return .failure(.outOfOrder) }
        guard let attributes = SCRAMPrimitives.attributes(message[...]), let first = attributes.first else {
            return .failure(.malformedMessage("expected v= or e="))
        }
        if first.name == UInt8(ascii: "e") {
            // Printable ASCII only and bounded, so a hostile server can't inject into our logs.
            let value = first.value.prefix(100).filter { (0x20...0x7E).contains($0) }
            return .failure(.serverError(String(decoding: value, as: UTF8.self)))
        }
        guard first.name == UInt8(ascii: "v"), let signature = SCRAMPrimitives.decodeBase64(first.value) else {
            return .failure(.malformedMessage("expected v= or e="))
        }
        guard SCRAMPrimitives.constantTimeEquals(signature, expected) else { return .failure(.serverSignatureMismatch) }
        return .success(())
    }
}

/// Reuses SaltedPassword across backend logins: 4096 PBKDF2 rounds cost milliseconds, and the proxy
/// logs in with the same password and salt again and again.
///
/// Keys are SHA-256 of (password, salt, iterations), so no plaintext password sits in the table.
/// The values are password-equivalent for that salt, so the cache lives in memory only.
public final class SaltedPasswordCache: Sendable {
    private let entries = Mutex<[SHA256Digest: [UInt8]]>([:])
    private let capacity: Int

    /// Past `capacity` entries (say, after many password rotations) the cache simply starts over.
    public init(capacity: Int = 64) { self.capacity = capacity }

    public var count: Int { entries.withLock { $0.count } }

    func saltedPassword(password: String, salt: [UInt8], iterations: Int) -> [UInt8] {
        var hasher = SHA256()
        // Length-prefix the password so ("ab", salt "c") and ("a", salt "bc") can't share a key.
        hasher.update(data: withUnsafeBytes(of: UInt64(password.utf8.count).bigEndian) { Array($0) })
        hasher.update(data: Array(password.utf8))
        hasher.update(data: salt)
        hasher.update(data: withUnsafeBytes(of: UInt64(iterations).bigEndian) { Array($0) })
        let key = hasher.finalize()
        if let hit = entries.withLock({ $0[key] }) { return hit }
        // Derive outside the lock so one slow PBKDF2 doesn't stall other connections' lookups.
        let value = SCRAMPrimitives.saltedPassword(password, salt: salt, iterations: iterations)
        entries.withLock { entries in
            if entries.count >= capacity { entries.removeAll() }
            entries[key] = value
        }
        return value
    }
}

private let comma = UInt8(ascii: ",")
