import PostgresWire

/// What Switchyard needs to authenticate clients and to log in to servers on their behalf,
/// prepared once at start-up: SCRAM secrets are derived here, because PBKDF2 costs
/// milliseconds and must never run per login on an event loop.
public struct ClientCredentialStore: Sendable {
    public enum ClientCredential: Sendable {
        case scram(SCRAMSecret)
        case md5(storedHash: String)
        case none
    }

    public struct Entry: Sendable {
        public var credential: ClientCredential
        public var serverUser: String
        public var serverPassword: String?
    }

    public let method: ClientAuthMethod
    /// With `auth_user` set, roles missing from `entries` are looked up on the server (auth_query).
    public let looksUpUnknownRoles: Bool
    private let entries: [String: Entry]

    public init(configuration: ProxyConfiguration) throws {
        method = configuration.clientAuthMethod
        looksUpUnknownRoles = configuration.authQuery != nil && configuration.clientAuthMethod != .trust
        var entries: [String: Entry] = [:]
        for (name, user) in configuration.users {
            let credential: ClientCredential
            switch (configuration.clientAuthMethod, user.clientSecret) {
            case (.trust, _), (_, nil):
                credential = .none
            case (.scramSHA256, .plaintext(let password)?):
                credential = .scram(SCRAMSecret.derive(password: password, salt: (0..<16).map { _ in UInt8.random(in: .min ... .max) }))
            case (.scramSHA256, .scramVerifier(let verifier)?):
                credential = .scram(try SCRAMSecret(verifier: verifier))
            case (.md5, .plaintext(let password)?):
                credential = .md5(storedHash: MD5Password.storedHash(user: name, password: password))
            case (.md5, .md5Hash(let hash)?):
                credential = .md5(storedHash: hash)
            case (.scramSHA256, .md5Hash?), (.md5, .scramVerifier?):
                // The configuration parser rejects these pairs; keep the user unable to log in regardless.
                credential = .none
            }
            entries[name] = Entry(credential: credential, serverUser: user.serverUser, serverPassword: user.serverPassword)
        }
        self.entries = entries
    }

    public func entry(for user: String) -> Entry? { entries[user] }
}
