/// A role's stored password as `auth_query` returns it (`pg_authid.rolpassword`): what clients of a
/// role the configuration doesn't list authenticate against.
public enum RoleSecret: Sendable, Equatable, CustomStringConvertible {
    case scram(SCRAMSecret)
    /// `md5` followed by 32 lowercase hex digits.
    case md5(storedHash: String)

    /// Parses a `rolpassword` value. Nil for anything a client cannot authenticate against: NULL
    /// (no password), an empty string, a malformed verifier, or a plaintext password (pre-10 servers);
    /// Postgres refuses such logins too, with the same 28P01 a wrong password gets.
    public init?(rolpassword: String?) {
        guard let value = rolpassword, !value.isEmpty else { return nil }
        if value.hasPrefix("SCRAM-SHA-256$") {
            guard let secret = try? SCRAMSecret(verifier: value) else { return nil }
            self = .scram(secret)
        } else if value.utf8.count == 35, value.hasPrefix("md5"), value.utf8.dropFirst(3).allSatisfy(Self.isLowerHex) {
            self = .md5(storedHash: value)
        } else {
            return nil
        }
    }

    private static func isLowerHex(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x61...0x66).contains(byte)
    }

    public var description: String {
        switch self {
        case .scram: "RoleSecret.scram(<redacted>)"
        case .md5: "RoleSecret.md5(<redacted>)"
        }
    }
}

/// How Switchyard logs in to a server as a role whose password it never learns: with the secret the
/// client authenticated against. Built only after the client proved it knows the password.
public struct PassThroughCredential: Sendable, Equatable, CustomStringConvertible {
    public enum Secret: Sendable, Equatable {
        /// The md5 hash answers the server's md5 challenge: `md5(hash ‖ salt)` needs no password.
        case md5(storedHash: String)
        /// The ClientKey recovered from the client's proof, and the verifier's ServerKey to check the
        /// server's signature with. Good for as long as the role's verifier doesn't change.
        case scram(clientKey: [UInt8], serverKey: [UInt8])
    }

    public var secret: Secret
    /// When auth_query fetched the secret this came from. A pool logs in with the newest it has seen:
    /// after a password change, sessions authenticated against the old secret may live on.
    public var fetchedAt: ContinuousClock.Instant

    public init(secret: Secret, fetchedAt: ContinuousClock.Instant) {
        self.secret = secret
        self.fetchedAt = fetchedAt
    }

    public var description: String {
        switch secret {
        case .md5: "PassThroughCredential.md5(<redacted>)"
        case .scram: "PassThroughCredential.scram(<redacted>)"
        }
    }
}
