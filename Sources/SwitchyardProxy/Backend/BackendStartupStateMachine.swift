import NIOCore
import PostgresWire

/// Logs Switchyard in to a PostgreSQL server: optional TLS negotiation, StartupMessage, then
/// whichever authentication the server asks for (trust, cleartext, md5, SCRAM-SHA-256), until the
/// first ReadyForQuery. A pure value: the handler feeds it events and performs its actions.
public struct BackendStartupStateMachine {
    public struct Credentials: Sendable {
        public var user: String
        public var database: String
        public var password: String?
        /// For `auth_query` roles, which have no configured password: the secret their client
        /// authenticated with. Used only when `password` is nil.
        public var passThrough: PassThroughCredential?

        public init(user: String, database: String, password: String?, passThrough: PassThroughCredential? = nil) {
            self.user = user
            self.database = database
            self.password = password
            self.passThrough = passThrough
        }
    }

    public enum TLSPolicy: Sendable, Equatable { case disable, prefer, require }

    public enum Action {
        case sendSSLRequest
        case startTLS
        case sendStartup(StartupMessage)
        case sendPassword(String)
        case sendSASLInitialResponse(mechanism: String, data: [UInt8])
        case sendSASLResponse([UInt8])
        case wait
        /// Logged in: the server's parameters and cancel key, in the order received.
        case ready(parameters: [(String, String)], key: CancelRequest)
        case fail(ErrorFields)
    }

    enum State {
        case initial
        case awaitingSSLResponse
        case awaitingTLSHandshake
        case authenticating(scram: SCRAMClientExchange?)
        case awaitingReady
        case ready
        case failed
    }

    let credentials: Credentials
    let tlsPolicy: TLSPolicy
    let saltedPasswordCache: SaltedPasswordCache?
    private var state: State = .initial
    private var parameters: [(String, String)] = []
    private var key: CancelRequest?

    public init(credentials: Credentials, tlsPolicy: TLSPolicy, saltedPasswordCache: SaltedPasswordCache? = nil) {
        self.credentials = credentials
        self.tlsPolicy = tlsPolicy
        self.saltedPasswordCache = saltedPasswordCache
    }

    public mutating func connected() -> Action {
        guard case .initial = state else { return fail("connected twice") }
        if tlsPolicy == .disable {
            state = .authenticating(scram: nil)
            return .sendStartup(startupMessage)
        }
        state = .awaitingSSLResponse
        return .sendSSLRequest
    }

    /// The single byte the server answered to SSLRequest.
    public mutating func sslResponseReceived(_ byte: UInt8) -> Action {
        guard case .awaitingSSLResponse = state else { return fail("unexpected SSL response") }
        switch byte {
        case UInt8(ascii: "S"):
            state = .awaitingTLSHandshake
            return .startTLS
        case UInt8(ascii: "N") where tlsPolicy == .prefer:
            state = .authenticating(scram: nil)
            return .sendStartup(startupMessage)
        case UInt8(ascii: "N"):
            return fail("server does not support SSL, but server_tls_sslmode requires it")
        default:
            return fail("invalid response to SSL negotiation: \(byte)")
        }
    }

    public mutating func tlsEstablished() -> Action {
        guard case .awaitingTLSHandshake = state else { return fail("unexpected TLS handshake") }
        state = .authenticating(scram: nil)
        return .sendStartup(startupMessage)
    }

    public mutating func messageReceived(_ frame: Frame) -> Action {
        switch frame.id {
        case BackendMessageID.errorResponse:
            state = .failed
            return .fail(ErrorFields(decoding: frame.body)
                ?? ErrorFields(severity: .fatal, code: SQLState.protocolViolation, message: "malformed error from server"))
        case BackendMessageID.noticeResponse, BackendMessageID.negotiateProtocolVersion:
            return .wait
        case BackendMessageID.authentication:
            guard case .authenticating(let scram) = state else { return fail("unexpected authentication message") }
            guard let request = AuthenticationRequest(decoding: frame.body) else { return fail("malformed authentication request") }
            return authenticate(request, scram: scram)
        case BackendMessageID.parameterStatus:
            if let pair = BackendMessage.decodeParameterStatus(frame.body) { parameters.append(pair) }
            return .wait
        case BackendMessageID.backendKeyData:
            key = BackendMessage.decodeBackendKeyData(frame.body)
            return .wait
        case BackendMessageID.readyForQuery:
            guard case .awaitingReady = state else { return fail("ReadyForQuery before authentication completed") }
            state = .ready
            return .ready(parameters: parameters, key: key ?? CancelRequest(processID: 0, secretKey: 0))
        default:
            return fail("unexpected message '\(Character(Unicode.Scalar(frame.id)))' during start-up")
        }
    }

    private mutating func authenticate(_ request: AuthenticationRequest, scram: SCRAMClientExchange?) -> Action {
        switch request {
        case .ok:
            state = .awaitingReady
            return .wait
        case .cleartextPassword:
            guard let password = credentials.password else { return missingPassword() }
            return .sendPassword(password)
        case .md5Password(let salt):
            if let password = credentials.password {
                return .sendPassword(MD5Password.hash(user: credentials.user, password: password, salt: salt))
            }
            guard case .md5(let storedHash)? = credentials.passThrough?.secret else { return missingPassword() }
            return .sendPassword(MD5Password.hash(storedHash: storedHash, salt: salt))
        case .sasl(let mechanisms):
            guard mechanisms.contains("SCRAM-SHA-256") else {
                return fail("server offers no supported SASL mechanism (\(mechanisms.joined(separator: ", ")))")
            }
            let exchange: SCRAMClientExchange
            if let password = credentials.password {
                exchange = SCRAMClientExchange(password: password, clientNonce: SCRAMServerExchange.randomNonce())
            } else if case .scram(let clientKey, let serverKey)? = credentials.passThrough?.secret {
                exchange = SCRAMClientExchange(clientKey: clientKey, serverKey: serverKey, clientNonce: SCRAMServerExchange.randomNonce())
            } else {
                return missingPassword()
            }
            state = .authenticating(scram: exchange)
            return .sendSASLInitialResponse(mechanism: "SCRAM-SHA-256", data: exchange.clientFirstMessage())
        case .saslContinue(let data):
            guard var exchange = scram else { return fail("unexpected SASL continuation") }
            switch exchange.receiveServerFirst(data, cache: saltedPasswordCache) {
            case .success(let reply):
                state = .authenticating(scram: exchange)
                return .sendSASLResponse(reply)
            case .failure(let error):
                return fail("SCRAM exchange with server failed: \(error)")
            }
        case .saslFinal(let data):
            guard let exchange = scram else { return fail("unexpected SASL final message") }
            if case .failure(let error) = exchange.verifyServerFinal(data) {
                return fail("server's SCRAM signature is invalid: \(error)")
            }
            return .wait
        case .unsupported(let code):
            return fail("server requested unsupported authentication method \(code)")
        }
    }

    private var startupMessage: StartupMessage {
        StartupMessage(parameters: [("user", credentials.user), ("database", credentials.database)])
    }

    private mutating func missingPassword() -> Action {
        if let passThrough = credentials.passThrough {
            // The server asks for what the role's stored secret can't answer: cleartext, SCRAM with only
            // an md5 hash, or md5 with only SCRAM keys. Postgres' pg_hba must match how the role's password is stored.
            let known = if case .md5 = passThrough.secret { "an md5 hash" } else { "SCRAM keys" }
            return fail("server requested an authentication method that the stored secret of user \"\(credentials.user)\" "
                + "(\(known), from auth_query) cannot answer", code: SQLState.invalidAuthorizationSpecification)
        }
        return fail("server requested a password for user \"\(credentials.user)\" but none is configured (set server_password)",
             code: SQLState.invalidAuthorizationSpecification)
    }

    private mutating func fail(_ message: String, code: String = SQLState.protocolViolation) -> Action {
        state = .failed
        return .fail(ErrorFields(severity: .fatal, code: code, message: message))
    }
}
