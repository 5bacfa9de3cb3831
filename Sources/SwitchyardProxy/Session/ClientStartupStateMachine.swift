import NIOCore
import PostgresWire

/// Who a client turned out to be once start-up and authentication succeeded.
public struct ClientIdentity: Sendable {
    public var user: String
    public var database: String
    public var startup: StartupMessage
    public var serverUser: String
    public var serverPassword: String?
    /// For a role found through auth_query: the secret Switchyard logs in to the server with.
    public var serverPassThrough: PassThroughCredential? = nil
}

/// What an auth_query lookup of a role's secret came back with.
public enum RoleSecretLookupResult: Sendable {
    /// `fetchedAt`: when the server answered (a cached answer keeps its time).
    case found(RoleSecret, fetchedAt: ContinuousClock.Instant)
    /// No such role, or one without a usable password: it fails like a wrong password.
    case notFound
    /// The query could not run (server down, permission denied …): this FATAL goes to the client.
    case failed(ErrorFields)
}

/// A client's path from its first byte to AuthenticationOk: SSL/GSS negotiation, the
/// StartupMessage, then trust, md5, SCRAM-SHA-256 or SCRAM-SHA-256-PLUS. Roles the configuration
/// doesn't list are looked up through auth_query first. Pure: tests drive it with no sockets.
public struct ClientStartupStateMachine {
    public enum Action {
        /// Answer an SSLRequest with `S` (and start TLS) or `N`.
        case sendSSLResponse(accepted: Bool)
        case rejectGSSEncryption
        /// The connection carried a CancelRequest: act on it, then close without a reply.
        case cancel(CancelRequest)
        case sendAuthenticationRequest(AuthenticationRequest)
        /// Fetch the role's secret with auth_query, off the event loop, and report it with
        /// ``roleSecretLookedUp(_:)``. Nothing is sent to the client meanwhile.
        case lookUpRoleSecret(user: String, database: String)
        /// Authentication finished: send the SASL final message (when SCRAM ran), then AuthenticationOk.
        case authenticated(ClientIdentity, saslFinal: [UInt8]?)
        /// Send this FATAL and close.
        case fail(ErrorFields)
        /// A looked-up role failed its password check: drop its cached secret (the password may have
        /// just changed, and the next try should see the new one), then send this FATAL and close.
        case failForgettingRoleSecret(user: String, database: String, ErrorFields)
        case wait
    }

    enum State {
        case awaitingStartup(tlsActive: Bool)
        case awaitingRoleSecret(StartupMessage, user: String, database: String, tlsActive: Bool)
        case awaitingPassword(Login, expected: Expected)
        case done
    }

    /// The client being authenticated, and where its secret came from.
    struct Login {
        var startup: StartupMessage
        var user: String
        var database: String
        var tlsActive: Bool
        /// When auth_query fetched this client's secret; nil for configured users and for roles
        /// auth_query didn't find. Success passes the secret through to the server, failure drops
        /// it from the cache.
        var fetchedAt: ContinuousClock.Instant?
        var lookedUp: Bool { fetchedAt != nil }
    }

    enum Expected {
        case md5(salt: [UInt8], storedHash: String?)
        /// The exchange is built once the client picks SCRAM-SHA-256 or -PLUS: the choice decides channel binding.
        case scramInitial(SCRAMSecret?)
        case scramFinal(SCRAMServerExchange, serverKey: [UInt8]?)
    }

    let credentials: ClientCredentialStore
    let tlsMode: ClientTLSMode
    /// The tls-server-end-point hash of Switchyard's certificate; nil when there is no TLS, or the
    /// certificate's signature hash can't be computed, and then SCRAM-SHA-256-PLUS is never offered.
    let tlsServerEndPoint: [UInt8]?
    private var state: State = .awaitingStartup(tlsActive: false)
    /// The user named in the StartupMessage, once it arrived (for logs).
    public private(set) var user: String?

    public init(credentials: ClientCredentialStore, tlsMode: ClientTLSMode, tlsServerEndPoint: [UInt8]? = nil) {
        self.credentials = credentials
        self.tlsMode = tlsMode
        self.tlsServerEndPoint = tlsServerEndPoint
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
        let login = Login(startup: message, user: user, database: database, tlsActive: tlsActive, fetchedAt: nil)
        let entry = credentials.entry(for: user)
        switch credentials.method {
        case .trust:
            return authenticated(login)
        case .md5, .scramSHA256:
            // The admin console's users are always configured; its database exists on no server to query.
            if entry == nil, credentials.looksUpUnknownRoles, database != AdminCommand.databaseName {
                state = .awaitingRoleSecret(message, user: user, database: database, tlsActive: tlsActive)
                return .lookUpRoleSecret(user: user, database: database)
            }
            switch entry?.credential {
            case .scram(let secret)?: return challenge(login, secret: .scram(secret))
            case .md5(let hash)?: return challenge(login, secret: .md5(storedHash: hash))
            case .none?, nil: return challenge(login, secret: nil)
            }
        }
    }

    /// The auth_query lookup that ``Action/lookUpRoleSecret(user:database:)`` asked for finished.
    public mutating func roleSecretLookedUp(_ result: RoleSecretLookupResult) -> Action {
        guard case .awaitingRoleSecret(let message, let user, let database, let tlsActive) = state else { return .wait }
        var login = Login(startup: message, user: user, database: database, tlsActive: tlsActive, fetchedAt: nil)
        switch result {
        case .found(let secret, let fetchedAt):
            login.fetchedAt = fetchedAt
            return challenge(login, secret: secret)
        case .notFound: return challenge(login, secret: nil)
        case .failed(let error):
            state = .done
            return .fail(error)
        }
    }

    /// Asks for the password the way Postgres would for this secret: SCRAM for a SCRAM verifier
    /// (even under auth_type = md5, as Postgres' md5 method does), md5 for an md5 hash under
    /// auth_type = md5. No secret, or an md5 hash under scram-sha-256, still runs the whole exchange
    /// and fails at the end, so nothing tells "no such role" from "wrong password".
    private mutating func challenge(_ login: Login, secret: RoleSecret?) -> Action {
        switch (credentials.method, secret) {
        case (.md5, .md5?), (.md5, nil):
            let salt = (0..<4).map { _ in UInt8.random(in: .min ... .max) }
            var storedHash: String?
            if case .md5(let hash)? = secret { storedHash = hash }
            state = .awaitingPassword(login, expected: .md5(salt: salt, storedHash: storedHash))
            return .sendAuthenticationRequest(.md5Password(salt: salt))
        case (.md5, .scram(let verifier)?), (.scramSHA256, .scram(let verifier)?):
            return scramChallenge(login, secret: verifier)
        case (.scramSHA256, .md5?), (.scramSHA256, nil), (.trust, _):
            return scramChallenge(login, secret: nil)
        }
    }

    private mutating func scramChallenge(_ login: Login, secret: SCRAMSecret?) -> Action {
        state = .awaitingPassword(login, expected: .scramInitial(secret))
        var mechanisms = [SCRAMServerExchange.mechanism]
        // Postgres lists -PLUS first when it can bind; libpq then picks it (channel_binding=prefer).
        if offersChannelBinding(login) { mechanisms.insert(SCRAMServerExchange.plusMechanism, at: 0) }
        return .sendAuthenticationRequest(.sasl(mechanisms: mechanisms))
    }

    private func offersChannelBinding(_ login: Login) -> Bool { login.tlsActive && tlsServerEndPoint != nil }

    /// A `p` message: PasswordMessage, SASLInitialResponse or SASLResponse, by context.
    public mutating func passwordMessageReceived(_ body: ByteBuffer) -> Action {
        guard case .awaitingPassword(let login, let expected) = state else {
            return fail(SQLState.protocolViolation, "unexpected password message")
        }
        switch expected {
        case .md5(let salt, let storedHash):
            guard let response = FrontendMessage.decodePassword(body) else {
                return fail(SQLState.protocolViolation, "malformed password message")
            }
            guard let storedHash, MD5Password.verify(response: response, storedHash: storedHash, salt: salt) else {
                return passwordFailed(login)
            }
            return authenticated(login, passThrough: .md5(storedHash: storedHash))
        case .scramInitial(let secret):
            guard let (mechanism, data) = FrontendMessage.decodeSASLInitialResponse(body) else {
                return fail(SQLState.protocolViolation, "malformed SASLInitialResponse")
            }
            let binding: SCRAMServerExchange.ChannelBinding
            switch mechanism {
            case SCRAMServerExchange.plusMechanism where offersChannelBinding(login):
                binding = .selected(tlsServerEndPoint: tlsServerEndPoint!)
            case SCRAMServerExchange.mechanism:
                binding = offersChannelBinding(login) ? .offered : .notOffered
            default:
                return fail(SQLState.protocolViolation, "client selected an invalid SASL authentication mechanism")
            }
            var exchange = SCRAMServerExchange(secret: secret, serverNonce: SCRAMServerExchange.randomNonce(), channelBinding: binding)
            switch exchange.receiveClientFirst(data) {
            case .success(let serverFirst):
                state = .awaitingPassword(login, expected: .scramFinal(exchange, serverKey: secret?.serverKey))
                return .sendAuthenticationRequest(.saslContinue(data: serverFirst))
            case .failure(let error):
                state = .done
                return .fail(error.clientError)
            }
        case .scramFinal(var exchange, let serverKey):
            switch exchange.receiveClientFinal(Array(body.readableBytesView)) {
            case .success(let serverFinal):
                var passThrough: PassThroughCredential.Secret?
                if let clientKey = exchange.clientKey, let serverKey { passThrough = .scram(clientKey: clientKey, serverKey: serverKey) }
                return authenticated(login, passThrough: passThrough, saslFinal: serverFinal)
            case .failure(.authenticationFailed):
                return passwordFailed(login)
            case .failure(let error):
                state = .done
                return .fail(error.clientError)
            }
        }
    }

    /// `passThrough` is what the client's secret lets Switchyard log in with; it is used only for
    /// looked-up roles (configured users log in to servers with their configured credentials).
    private mutating func authenticated(_ login: Login, passThrough: PassThroughCredential.Secret? = nil, saslFinal: [UInt8]? = nil) -> Action {
        state = .done
        let entry = login.lookedUp ? nil : credentials.entry(for: login.user)
        let serverPassThrough = login.fetchedAt.flatMap { fetchedAt in
            passThrough.map { PassThroughCredential(secret: $0, fetchedAt: fetchedAt) }
        }
        return .authenticated(ClientIdentity(
            user: login.user, database: login.database, startup: login.startup,
            serverUser: entry?.serverUser ?? login.user, serverPassword: entry?.serverPassword,
            serverPassThrough: serverPassThrough), saslFinal: saslFinal)
    }

    private mutating func passwordFailed(_ login: Login) -> Action {
        state = .done
        let error = ErrorFields(severity: .fatal, code: SQLState.invalidPassword,
                                message: "password authentication failed for user \"\(login.user)\"")
        return login.lookedUp ? .failForgettingRoleSecret(user: login.user, database: login.database, error) : .fail(error)
    }

    private mutating func fail(_ code: String, _ message: String, hint: String? = nil) -> Action {
        state = .done
        return .fail(ErrorFields(severity: .fatal, code: code, message: message, hint: hint))
    }
}
