import NIOCore
import PostgresWire
import Testing
@testable import SwitchyardProxy

/// Drives the client-side and server-side login state machines against each other's real
/// counterparts (the SCRAM exchanges), with no sockets.
@Suite struct ClientStartupStateMachineTests {
    func machine(auth: String = "scram-sha-256", tls: ClientTLSMode = .disable) throws -> ClientStartupStateMachine {
        let configuration = try ProxyConfiguration.parse("""
            [switchyard]
            auth_type = \(auth)
            [servers]
            main = host=127.0.0.1 role=primary
            [users]
            app = password=app-secret server_password=server-secret
            """)
        return ClientStartupStateMachine(credentials: try ClientCredentialStore(configuration: configuration), tlsMode: tls)
    }

    func startup(user: String, database: String? = "db") -> StartupPacket {
        var parameters = [("user", user)]
        if let database { parameters.append(("database", database)) }
        return .startup(StartupMessage(parameters: parameters))
    }

    /// Runs a full SCRAM exchange with `password`, returning the final action.
    func scramLogin(user: String, password: String) throws -> ClientStartupStateMachine.Action {
        var server = try machine()
        guard case .sendAuthenticationRequest(.sasl(let mechanisms)) = server.packetReceived(startup(user: user)) else {
            Issue.record("expected SASL request"); return .wait
        }
        #expect(mechanisms == ["SCRAM-SHA-256"])
        var client = SCRAMClientExchange(password: password, clientNonce: SCRAMServerExchange.randomNonce())
        var initial = ByteBuffer()
        initial.writeNullTerminatedString("SCRAM-SHA-256")
        let first = client.clientFirstMessage()
        initial.writeInteger(Int32(first.count))
        initial.writeBytes(first)
        guard case .sendAuthenticationRequest(.saslContinue(let serverFirst)) = server.passwordMessageReceived(initial) else {
            Issue.record("expected SASL continue"); return .wait
        }
        let clientFinal = try client.receiveServerFirst(serverFirst).get()
        return server.passwordMessageReceived(ByteBuffer(bytes: clientFinal))
    }

    @Test func scramLoginWithTheRightPasswordAuthenticates() throws {
        guard case .authenticated(let identity, let saslFinal) = try scramLogin(user: "app", password: "app-secret") else {
            Issue.record("expected authentication to succeed"); return
        }
        #expect(identity.user == "app")
        #expect(identity.database == "db")
        #expect(identity.serverPassword == "server-secret")
        #expect(saslFinal?.starts(with: Array("v=".utf8)) == true)
    }

    @Test func wrongPasswordAndUnknownUserFailAlike() throws {
        guard case .fail(let wrong) = try scramLogin(user: "app", password: "nope"),
              case .fail(let unknown) = try scramLogin(user: "ghost", password: "nope") else {
            Issue.record("expected both logins to fail"); return
        }
        #expect(wrong.code == SQLState.invalidPassword)
        #expect(unknown.code == SQLState.invalidPassword)
        #expect(wrong.message == #"password authentication failed for user "app""#)
        #expect(unknown.message == #"password authentication failed for user "ghost""#)
        #expect(wrong.isFatal && unknown.isFatal)
    }

    @Test func md5LoginVerifiesTheSaltedHash() throws {
        var server = try machine(auth: "md5")
        guard case .sendAuthenticationRequest(.md5Password(let salt)) = server.packetReceived(startup(user: "app")) else {
            Issue.record("expected md5 request"); return
        }
        var body = ByteBuffer()
        body.writeNullTerminatedString(MD5Password.hash(user: "app", password: "app-secret", salt: salt))
        guard case .authenticated = server.passwordMessageReceived(body) else { Issue.record("expected success"); return }

        var other = try machine(auth: "md5")
        guard case .sendAuthenticationRequest(.md5Password(let salt2)) = other.packetReceived(startup(user: "app")) else { return }
        var bad = ByteBuffer()
        bad.writeNullTerminatedString(MD5Password.hash(user: "app", password: "wrong", salt: salt2))
        guard case .fail(let error) = other.passwordMessageReceived(bad) else { Issue.record("expected failure"); return }
        #expect(error.code == SQLState.invalidPassword)
    }

    @Test func trustNeedsNoPasswordAndDatabaseDefaultsToUser() throws {
        var server = try machine(auth: "trust")
        guard case .authenticated(let identity, nil) = server.packetReceived(startup(user: "app", database: nil)) else {
            Issue.record("expected immediate authentication"); return
        }
        #expect(identity.database == "app")
    }

    @Test func sslRequestIsRefusedWhenTLSIsOffAndRequiredWhenOn() throws {
        var plain = try machine()
        guard case .sendSSLResponse(accepted: false) = plain.packetReceived(.sslRequest) else { Issue.record("expected N"); return }

        var required = try machine(tls: .require)
        guard case .fail(let error) = required.packetReceived(startup(user: "app")) else { Issue.record("expected refusal"); return }
        #expect(error.code == SQLState.invalidAuthorizationSpecification)

        var secured = try machine(tls: .require)
        guard case .sendSSLResponse(accepted: true) = secured.packetReceived(.sslRequest) else { Issue.record("expected S"); return }
        guard case .sendAuthenticationRequest = secured.packetReceived(startup(user: "app")) else { Issue.record("expected auth"); return }
    }

    @Test func missingUserIsRejected() throws {
        var server = try machine()
        guard case .fail(let error) = server.packetReceived(.startup(StartupMessage(parameters: []))) else {
            Issue.record("expected failure"); return
        }
        #expect(error.code == SQLState.invalidAuthorizationSpecification)
    }

    @Test func gssEncryptionIsDeclinedAndCancelIsPassedOn() throws {
        var server = try machine()
        guard case .rejectGSSEncryption = server.packetReceived(.gssEncryptionRequest) else { Issue.record("expected N"); return }
        let key = CancelRequest(processID: 5, secretKey: 6)
        guard case .cancel(key) = server.packetReceived(.cancel(key)) else { Issue.record("expected cancel"); return }
    }
}

@Suite struct BackendStartupStateMachineTests {
    func frame(_ write: (inout ByteBuffer) -> Void) -> Frame {
        var buffer = ByteBuffer()
        write(&buffer)
        var decoder = FrameDecoder(maximumLength: 1 << 16)
        return try! decoder.decode(buffer: &buffer)!
    }

    func machine(password: String? = "secret", tls: BackendStartupStateMachine.TLSPolicy = .disable) -> BackendStartupStateMachine {
        BackendStartupStateMachine(credentials: .init(user: "app", database: "db", password: password), tlsPolicy: tls)
    }

    @Test func trustLoginCollectsParametersAndKey() {
        var backend = machine()
        guard case .sendStartup(let message) = backend.connected() else { Issue.record("expected startup"); return }
        #expect(message["user"] == "app" && message["database"] == "db")
        guard case .wait = backend.messageReceived(frame { AuthenticationRequest.ok.encode(into: &$0) }) else { return }
        _ = backend.messageReceived(frame { BackendMessage.parameterStatus(name: "server_version", value: "15.0", into: &$0) })
        _ = backend.messageReceived(frame { BackendMessage.backendKeyData(CancelRequest(processID: 9, secretKey: 10), into: &$0) })
        guard case .ready(let parameters, let key) = backend.messageReceived(frame { BackendMessage.readyForQuery(.idle, into: &$0) }) else {
            Issue.record("expected ready"); return
        }
        #expect(parameters.map(\.0) == ["server_version"])
        #expect(key == CancelRequest(processID: 9, secretKey: 10))
    }

    @Test func md5AndCleartextSendTheConfiguredPassword() {
        var backend = machine()
        _ = backend.connected()
        guard case .sendPassword(let hash) = backend.messageReceived(frame { AuthenticationRequest.md5Password(salt: [1, 2, 3, 4]).encode(into: &$0) }) else {
            Issue.record("expected md5 password"); return
        }
        #expect(hash == MD5Password.hash(user: "app", password: "secret", salt: [1, 2, 3, 4]))
        var cleartext = machine()
        _ = cleartext.connected()
        guard case .sendPassword("secret") = cleartext.messageReceived(frame { AuthenticationRequest.cleartextPassword.encode(into: &$0) }) else {
            Issue.record("expected cleartext password"); return
        }
    }

    @Test func scramLoginAgainstARealServerExchange() throws {
        var backend = machine()
        _ = backend.connected()
        guard case .sendSASLInitialResponse("SCRAM-SHA-256", let clientFirst) = backend.messageReceived(
            frame { AuthenticationRequest.sasl(mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]).encode(into: &$0) }) else {
            Issue.record("expected SASL initial response"); return
        }
        var server = SCRAMServerExchange(secret: .derive(password: "secret", salt: Array(repeating: 7, count: 16)),
                                         serverNonce: SCRAMServerExchange.randomNonce())
        let serverFirst = try server.receiveClientFirst(clientFirst).get()
        guard case .sendSASLResponse(let clientFinal) = backend.messageReceived(frame { AuthenticationRequest.saslContinue(data: serverFirst).encode(into: &$0) }) else {
            Issue.record("expected SASL response"); return
        }
        let serverFinal = try server.receiveClientFinal(clientFinal).get()
        guard case .wait = backend.messageReceived(frame { AuthenticationRequest.saslFinal(data: serverFinal).encode(into: &$0) }) else {
            Issue.record("server signature should verify"); return
        }
    }

    @Test func serverErrorAndMissingPasswordFailTheLogin() {
        var backend = machine()
        _ = backend.connected()
        let error = ErrorFields(severity: .fatal, code: "3D000", message: "database \"db\" does not exist")
        guard case .fail(let reported) = backend.messageReceived(frame { error.encode(into: &$0) }) else { Issue.record("expected fail"); return }
        #expect(reported == error)

        var noPassword = machine(password: nil)
        _ = noPassword.connected()
        guard case .fail(let missing) = noPassword.messageReceived(frame { AuthenticationRequest.cleartextPassword.encode(into: &$0) }) else {
            Issue.record("expected fail"); return
        }
        #expect(missing.code == SQLState.invalidAuthorizationSpecification)
    }

    @Test func tlsNegotiation() {
        var required = machine(tls: .require)
        guard case .sendSSLRequest = required.connected() else { Issue.record("expected SSLRequest"); return }
        guard case .fail = required.sslResponseReceived(UInt8(ascii: "N")) else { Issue.record("require must refuse N"); return }
        var preferred = machine(tls: .prefer)
        _ = preferred.connected()
        guard case .sendStartup = preferred.sslResponseReceived(UInt8(ascii: "N")) else { Issue.record("prefer falls back"); return }
        var accepted = machine(tls: .require)
        _ = accepted.connected()
        guard case .startTLS = accepted.sslResponseReceived(UInt8(ascii: "S")) else { Issue.record("expected TLS"); return }
        guard case .sendStartup = accepted.tlsEstablished() else { Issue.record("expected startup after TLS"); return }
    }
}
