import NIOCore
import PostgresWire

/// Who a client turned out to be once start-up and authentication succeeded.
public struct ClientIdentity: Sendable {
    public var user: String
    public var database: String
    public var startup: StartupMessage
    public var serverUser: String
    public var serverPassword: String?
}

/// A client's path from its first byte to AuthenticationOk: SSL/GSS negotiation, the
/// StartupMessage, then trust, md5 or SCRAM-SHA-256. Pure: tests drive it with no sockets.
public struct ClientStartupStateMachine {
    public enum Action {
        /// Answer an SSLRequest with `S` (and start TLS) or `N`.
        case sendSSLResponse(accepted: Bool)
        case rejectGSSEncryption
        /// The connection carried a CancelRequest: act on it, then close without a reply.
        case cancel(CancelRequest)
        case sendAuthenticationRequest(AuthenticationRequest)
        /// Authentication finished: send the SASL final message (when SCRAM ran), then AuthenticationOk.
        case authenticated(ClientIdentity, saslFinal: [UInt8]?)
        /// Send this FATAL and close.
        case fail(ErrorFields)
        case wait
    }

    enum State {
        case awaitingStartup(tlsActive: Bool)
        case awaitingPassword(StartupMessage, user: String, database: String, expected: Expected)
        case done
    }

    enum Expected {
        case md5(salt: [UInt8], storedHash: String?)
        case scramInitial(SCRAMServerExchange)
        case scramFinal(SCRAMServerExchange)
    }

    let credentials: ClientCredentialStore
    let tlsMode: ClientTLSMode
    private var state: State = .awaitingStartup(tlsActive: false)
    /// The user named in the StartupMessage, once it arrived (for logs).
    public private(set) var user: String?

    public init(credentials: ClientCredentialStore, tlsMode: ClientTLSMode) {
        self.credentials = credentials
        self.tlsMode = tlsMode
    }

    public mutating func packetReceived(_ packet: StartupPacket) -> Action {
        guard case .awaitingStartup(let tlsActive) = state else {
            return fail(SQLState.protocolViolation, "unexpected start-up packet")
        }
        switch packet {
        case .sslRequest:
            if tlsActive { return fail(SQLState.protocolViolation, "SSLRequest received over an encrypted connection") }
            let accept = tlsMode != .disable
            if accept { state = .awaitingStartup(tlsActive: true) }
            return .sendSSLResponse(accepted: accept)
        case .gssEncryptionRequest:
            return .rejectGSSEncryption
        case .cancel(let request):
            state = .done
            return .cancel(request)
        case .startup(let message):
            return startupReceived(message, tlsActive: tlsActive)
        }
    }

    private mutating func startupReceived(_ message: StartupMessage, tlsActive: Bool) -> Action {
        guard let user = message["user"], !user.isEmpty else {
            return fail(SQLState.invalidAuthorizationSpecification, "no PostgreSQL user name specified in startup packet")
        }
        self.user = user
        let database = message["database"].flatMap { $0.isEmpty ? nil : $0 } ?? user
        if tlsMode == .require, !tlsActive {
            return fail(SQLState.invalidAuthorizationSpecification,
                        "connection requires SSL: Switchyard's client_tls_sslmode is require",
                        hint: "Connect with sslmode=require.")
        }
        let entry = credentials.entry(for: user)
        switch credentials.method {
        case .trust:
            return authenticated(message, user: user, database: database)
        case .md5:
            let salt = (0..<4).map { _ in UInt8.random(in: .min ... .max) }
            var storedHash: String?
            if case .md5(let hash)? = entry?.credential { storedHash = hash }
            state = .awaitingPassword(message, user: user, database: database, expected: .md5(salt: salt, storedHash: storedHash))
            return .sendAuthenticationRequest(.md5Password(salt: salt))
        case .scramSHA256:
            var secret: SCRAMSecret?
            if case .scram(let known)? = entry?.credential { secret = known }
            // An unknown user runs the same exchange and fails at the proof, so user names cannot be probed.
            let exchange = SCRAMServerExchange(secret: secret, serverNonce: SCRAMServerExchange.randomNonce())
            state = .awaitingPassword(message, user: user, database: database, expected: .scramInitial(exchange))
            return .sendAuthenticationRequest(.sasl(mechanisms: ["SCRAM-SHA-256"]))
        }
    }

    /// A `p` message: PasswordMessage, SASLInitialResponse or SASLResponse, by context.
    public mutating func passwordMessageReceived(_ body: ByteBuffer) -> Action {
        guard case .awaitingPassword(let message, let user, let database, let expected) = state else {
            return fail(SQLState.protocolViolation, "unexpected password message")
        }
        switch expected {
        case .md5(let salt, let storedHash):
            guard let response = FrontendMessage.decodePassword(body) else {
                return fail(SQLState.protocolViolation, "malformed password message")
            }
            guard let storedHash, MD5Password.verify(response: response, storedHash: storedHash, salt: salt) else {
                return passwordFailed(user)
            }
            return authenticated(message, user: user, database: database)
        case .scramInitial(var exchange):
            guard let (mechanism, data) = FrontendMessage.decodeSASLInitialResponse(body) else {
                return fail(SQLState.protocolViolation, "malformed SASLInitialResponse")
            }
            guard mechanism == "SCRAM-SHA-256" else {
                return fail(SQLState.protocolViolation, "client selected an invalid SASL authentication mechanism")
            }
            switch exchange.receiveClientFirst(data) {
            case .success(let serverFirst):
                state = .awaitingPassword(message, user: user, database: database, expected: .scramFinal(exchange))
                return .sendAuthenticationRequest(.saslContinue(data: serverFirst))
            case .failure(let error):
                return fail(SQLState.protocolViolation, "SCRAM exchange failed: \(error)")
            }
        case .scramFinal(var exchange):
            switch exchange.receiveClientFinal(Array(body.readableBytesView)) {
            case .success(let serverFinal):
                return authenticated(message, user: user, database: database, saslFinal: serverFinal)
            case .failure(.authenticationFailed):
                return passwordFailed(user)
            case .failure(let error):
                return fail(SQLState.protocolViolation, "SCRAM exchange failed: \(error)")
            }
        }
    }

    private mutating func authenticated(_ message: StartupMessage, user: String, database: String, saslFinal: [UInt8]? = nil) -> Action {
        state = .done
        let entry = credentials.entry(for: user)
        return .authenticated(ClientIdentity(
            user: user, database: database, startup: message,
            serverUser: entry?.serverUser ?? user, serverPassword: entry?.serverPassword), saslFinal: saslFinal)
    }

    private mutating func passwordFailed(_ user: String) -> Action {
        fail(SQLState.invalidPassword, "password authentication failed for user \"\(user)\"")
    }

    private mutating func fail(_ code: String, _ message: String, hint: String? = nil) -> Action {
        state = .done
        return .fail(ErrorFields(severity: .fatal, code: code, message: message, hint: hint))
    }
}
