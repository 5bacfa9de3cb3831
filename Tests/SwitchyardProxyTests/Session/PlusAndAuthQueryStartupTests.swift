import NIOCore
import PostgresWire
import Testing
@testable import SwitchyardProxy

/// The client start-up machine's SCRAM-SHA-256-PLUS offer and its auth_query path, driven with
/// real SCRAM client exchanges and no sockets.
@Suite struct PlusAndAuthQueryStartupTests {
    static let endPoint = Array(repeating: UInt8(0x5A), count: 32)
    static let salt = Array(repeating: UInt8(1), count: 16)
    /// A role's verifier, as auth_query would return it from pg_shadow.
    static let roleSecret = SCRAMSecret.derive(password: "role-secret", salt: salt, iterations: 4096)
    static let roleClientKey = SCRAMPrimitives.hmac(
        SCRAMPrimitives.saltedPassword("role-secret", salt: salt, iterations: 4096), Array("Client Key".utf8))

    func machine(auth: String = "scram-sha-256", authUser: Bool = false, endPoint: [UInt8]? = Self.endPoint) throws -> ClientStartupStateMachine {
        let configuration = try ProxyConfiguration.parse("""
            [switchyard]
            auth_type = \(auth)
            \(authUser ? "auth_user = app" : "")
            [servers]
            main = host=127.0.0.1 role=primary
            [users]
            app = password=app-secret
            """)
        return ClientStartupStateMachine(credentials: try ClientCredentialStore(configuration: configuration),
                                         tlsMode: .allow, tlsServerEndPoint: endPoint)
    }

    func startup(_ user: String) -> StartupPacket { .startup(StartupMessage(parameters: [("user", user), ("database", "db")])) }

    func saslInitial(_ mechanism: String, _ data: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeNullTerminatedString(mechanism)
        buffer.writeInteger(Int32(data.count))
        buffer.writeBytes(data)
        return buffer
    }

    /// Runs plain SCRAM-SHA-256 from the SASL request on, with `password`.
    func scram(_ server: inout ClientStartupStateMachine, password: String, flag: String = "n") throws -> ClientStartupStateMachine.Action {
        var client = SCRAMClientExchange(password: password, clientNonce: "cnonce")
        var first = client.clientFirstMessage()
        if flag != "n" { first = Array(flag.utf8) + first.dropFirst() }
        let action = server.passwordMessageReceived(saslInitial("SCRAM-SHA-256", first))
        guard case .sendAuthenticationRequest(.saslContinue(let serverFirst)) = action else { return action }
        return server.passwordMessageReceived(ByteBuffer(bytes: try client.receiveServerFirst(serverFirst).get()))
    }

    // MARK: SCRAM-SHA-256-PLUS

    @Test func plusIsOfferedFirstOnlyOverTLSWithAHashableCertificate() throws {
        var plain = try machine()
        guard case .sendAuthenticationRequest(.sasl(let offered)) = plain.packetReceived(startup("app")) else {
            Issue.record("expected SASL"); return
        }
        #expect(offered == ["SCRAM-SHA-256"])

        var tls = try machine()
        _ = tls.packetReceived(.sslRequest)
        guard case .sendAuthenticationRequest(.sasl(let overTLS)) = tls.packetReceived(startup("app")) else {
            Issue.record("expected SASL"); return
        }
        #expect(overTLS == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])

        var unhashable = try machine(endPoint: nil)
        _ = unhashable.packetReceived(.sslRequest)
        guard case .sendAuthenticationRequest(.sasl(let withoutBinding)) = unhashable.packetReceived(startup("app")) else {
            Issue.record("expected SASL"); return
        }
        #expect(withoutBinding == ["SCRAM-SHA-256"])
    }

    @Test func selectingPlusWithoutTLSIsAnInvalidMechanism() throws {
        var server = try machine()
        _ = server.packetReceived(startup("app"))
        guard case .fail(let error) = server.passwordMessageReceived(saslInitial("SCRAM-SHA-256-PLUS", Array("p=tls-server-end-point,,n=,r=x".utf8))) else {
            Issue.record("expected failure"); return
        }
        #expect(error.code == SQLState.protocolViolation)
        #expect(error.message == "client selected an invalid SASL authentication mechanism")
    }

    @Test func downgradeToPlainSCRAMWithYIsRefusedOverTLS() throws {
        var server = try machine()
        _ = server.packetReceived(.sslRequest)
        _ = server.packetReceived(startup("app"))
        guard case .fail(let error) = try scram(&server, password: "app-secret", flag: "y") else { Issue.record("expected failure"); return }
        #expect(error.code == SQLState.invalidAuthorizationSpecification)
        #expect(error.message == "SCRAM channel binding negotiation error")
    }

    @Test func plainSCRAMStillWorksOverTLS() throws {
        var server = try machine()
        _ = server.packetReceived(.sslRequest)
        _ = server.packetReceived(startup("app"))
        guard case .authenticated = try scram(&server, password: "app-secret") else { Issue.record("expected success"); return }
    }

    @Test func plusLoginChecksTheBindingData() throws {
        for (binding, succeeds) in [(Self.endPoint, true), (Array(repeating: UInt8(0), count: 32), false)] {
            var server = try machine()
            _ = server.packetReceived(.sslRequest)
            _ = server.packetReceived(startup("app"))
            let header = "p=tls-server-end-point,,"
            let first = Array("\(header)n=,r=cnonce".utf8)
            guard case .sendAuthenticationRequest(.saslContinue(let serverFirst)) = server.passwordMessageReceived(
                saslInitial("SCRAM-SHA-256-PLUS", first)) else { Issue.record("expected continue"); return }
            // Compute the proof by hand: SCRAMClientExchange speaks only "n,,".
            let salted = SCRAMPrimitives.saltedPassword("app-secret", salt: Self.saltOf(serverFirst), iterations: 4096)
            let clientKey = SCRAMPrimitives.hmac(salted, Array("Client Key".utf8))
            let nonce = String(decoding: serverFirst, as: UTF8.self).split(separator: ",")[0].dropFirst(2)
            let withoutProof = "c=\(SCRAMPrimitives.base64(Array(header.utf8) + binding)),r=\(nonce)"
            let authMessage = Array("n=,r=cnonce,".utf8) + serverFirst + Array(",\(withoutProof)".utf8)
            let proof = SCRAMPrimitives.xor(clientKey, SCRAMPrimitives.hmac(SCRAMPrimitives.sha256(clientKey), authMessage))
            let action = server.passwordMessageReceived(ByteBuffer(string: withoutProof + ",p=\(SCRAMPrimitives.base64(proof))"))
            switch action {
            case .authenticated where succeeds: break
            case .fail(let error) where !succeeds:
                #expect(error.code == "28000" && error.message == "SCRAM channel binding check failed")
            default: Issue.record("unexpected \(action) for binding \(succeeds ? "right" : "forged")")
            }
        }
    }

    static func saltOf(_ serverFirst: [UInt8]) -> [UInt8] {
        let field = String(decoding: serverFirst, as: UTF8.self).split(separator: ",")[1].dropFirst(2)
        return SCRAMPrimitives.decodeBase64(field.utf8)!
    }

    // MARK: auth_query

    @Test func unknownRolesAreLookedUpOnlyWithAuthUser() throws {
        var without = try machine()
        guard case .sendAuthenticationRequest(.sasl) = without.packetReceived(startup("role")) else { Issue.record("expected SASL"); return }
        var with = try machine(authUser: true)
        guard case .lookUpRoleSecret("role", "db") = with.packetReceived(startup("role")) else { Issue.record("expected lookup"); return }
        // Configured users and the admin console never are.
        var configured = try machine(authUser: true)
        guard case .sendAuthenticationRequest = configured.packetReceived(startup("app")) else { Issue.record("expected SASL"); return }
        var console = try machine(authUser: true)
        guard case .sendAuthenticationRequest = console.packetReceived(
            .startup(StartupMessage(parameters: [("user", "ops"), ("database", AdminCommand.databaseName)]))) else {
            Issue.record("expected SASL"); return
        }
    }

    @Test func aLookedUpSCRAMRoleLogsInAndPassesItsClientKeyThrough() throws {
        var server = try machine(authUser: true)
        _ = server.packetReceived(startup("role"))
        let fetchedAt = ContinuousClock.now
        guard case .sendAuthenticationRequest(.sasl) = server.roleSecretLookedUp(.found(.scram(Self.roleSecret), fetchedAt: fetchedAt)) else {
            Issue.record("expected SASL"); return
        }
        guard case .authenticated(let identity, _) = try scram(&server, password: "role-secret") else { Issue.record("expected success"); return }
        #expect(identity.serverUser == "role" && identity.serverPassword == nil)
        #expect(identity.serverPassThrough == PassThroughCredential(
            secret: .scram(clientKey: Self.roleClientKey, serverKey: Self.roleSecret.serverKey), fetchedAt: fetchedAt))
    }

    @Test func aWrongPasswordForALookedUpRoleForgetsTheSecret() throws {
        var server = try machine(authUser: true)
        _ = server.packetReceived(startup("role"))
        _ = server.roleSecretLookedUp(.found(.scram(Self.roleSecret), fetchedAt: .now))
        guard case .failForgettingRoleSecret("role", "db", let error) = try scram(&server, password: "wrong") else {
            Issue.record("expected failure"); return
        }
        #expect(error.code == SQLState.invalidPassword && error.message == #"password authentication failed for user "role""#)
    }

    @Test func anUnknownRoleFailsLikeAWrongPassword() throws {
        var server = try machine(authUser: true)
        _ = server.packetReceived(startup("ghost"))
        guard case .sendAuthenticationRequest(.sasl) = server.roleSecretLookedUp(.notFound) else { Issue.record("expected SASL"); return }
        guard case .fail(let error) = try scram(&server, password: "anything") else { Issue.record("expected failure"); return }
        #expect(error.code == SQLState.invalidPassword && error.message == #"password authentication failed for user "ghost""#)
    }

    @Test func aFailedLookupEndsTheLoginWithItsError() throws {
        var server = try machine(authUser: true)
        _ = server.packetReceived(startup("role"))
        let problem = ErrorFields(severity: .fatal, code: "3D000", message: #"database "db" does not exist"#)
        guard case .fail(problem) = server.roleSecretLookedUp(.failed(problem)) else { Issue.record("expected the error"); return }
        // A late or repeated answer changes nothing.
        guard case .wait = server.roleSecretLookedUp(.notFound) else { Issue.record("expected wait"); return }
    }

    @Test func md5AuthTypeUsesMD5ForAnMD5SecretAndSCRAMForAVerifier() throws {
        let hash = MD5Password.storedHash(user: "role", password: "role-secret")
        var md5 = try machine(auth: "md5", authUser: true)
        _ = md5.packetReceived(startup("role"))
        guard case .sendAuthenticationRequest(.md5Password(let salt)) = md5.roleSecretLookedUp(.found(.md5(storedHash: hash), fetchedAt: .now)) else {
            Issue.record("expected md5 challenge"); return
        }
        var body = ByteBuffer()
        body.writeNullTerminatedString(MD5Password.hash(user: "role", password: "role-secret", salt: salt))
        guard case .authenticated(let identity, nil) = md5.passwordMessageReceived(body) else { Issue.record("expected success"); return }
        #expect(identity.serverPassThrough?.secret == .md5(storedHash: hash))

        // Like Postgres' md5 method: a role with a SCRAM verifier is asked for SCRAM.
        var upgraded = try machine(auth: "md5", authUser: true)
        _ = upgraded.packetReceived(startup("role"))
        guard case .sendAuthenticationRequest(.sasl) = upgraded.roleSecretLookedUp(.found(.scram(Self.roleSecret), fetchedAt: .now)) else {
            Issue.record("expected SASL"); return
        }
        guard case .authenticated = try scram(&upgraded, password: "role-secret") else { Issue.record("expected success"); return }

        // scram-sha-256 cannot check an md5 hash: the exchange runs and fails, as in Postgres.
        var refused = try machine(auth: "scram-sha-256", authUser: true)
        _ = refused.packetReceived(startup("role"))
        _ = refused.roleSecretLookedUp(.found(.md5(storedHash: hash), fetchedAt: .now))
        guard case .failForgettingRoleSecret(_, _, let error) = try scram(&refused, password: "role-secret") else {
            Issue.record("expected failure"); return
        }
        #expect(error.code == SQLState.invalidPassword)
    }
}

/// Logging in to a server with what a client's login left behind.
@Suite struct PassThroughBackendLoginTests {
    func frame(_ write: (inout ByteBuffer) -> Void) -> Frame {
        var buffer = ByteBuffer()
        write(&buffer)
        var decoder = FrameDecoder(maximumLength: 1 << 16)
        return try! decoder.decode(buffer: &buffer)!
    }

    func machine(_ secret: PassThroughCredential.Secret) -> BackendStartupStateMachine {
        BackendStartupStateMachine(credentials: .init(user: "role", database: "db", password: nil,
                                                      passThrough: PassThroughCredential(secret: secret, fetchedAt: .now)),
                                   tlsPolicy: .disable)
    }

    @Test func scramKeysLogInWithoutThePassword() throws {
        let secret = PlusAndAuthQueryStartupTests.roleSecret
        var backend = machine(.scram(clientKey: PlusAndAuthQueryStartupTests.roleClientKey, serverKey: secret.serverKey))
        _ = backend.connected()
        guard case .sendSASLInitialResponse("SCRAM-SHA-256", let clientFirst) = backend.messageReceived(
            frame { AuthenticationRequest.sasl(mechanisms: ["SCRAM-SHA-256"]).encode(into: &$0) }) else {
            Issue.record("expected SASL initial response"); return
        }
        var server = SCRAMServerExchange(secret: secret, serverNonce: SCRAMServerExchange.randomNonce())
        let serverFirst = try server.receiveClientFirst(clientFirst).get()
        guard case .sendSASLResponse(let clientFinal) = backend.messageReceived(
            frame { AuthenticationRequest.saslContinue(data: serverFirst).encode(into: &$0) }) else {
            Issue.record("expected SASL response"); return
        }
        let serverFinal = try server.receiveClientFinal(clientFinal).get()
        guard case .wait = backend.messageReceived(frame { AuthenticationRequest.saslFinal(data: serverFinal).encode(into: &$0) }) else {
            Issue.record("server signature should verify"); return
        }
    }

    @Test func anMD5HashAnswersAnMD5Challenge() {
        let hash = MD5Password.storedHash(user: "role", password: "role-secret")
        var backend = machine(.md5(storedHash: hash))
        _ = backend.connected()
        guard case .sendPassword(let answer) = backend.messageReceived(frame { AuthenticationRequest.md5Password(salt: [9, 8, 7, 6]).encode(into: &$0) }) else {
            Issue.record("expected md5 answer"); return
        }
        #expect(answer == MD5Password.hash(user: "role", password: "role-secret", salt: [9, 8, 7, 6]))
    }

    @Test func aMethodTheSecretCannotAnswerFailsClearly() {
        let hash = MD5Password.storedHash(user: "role", password: "role-secret")
        for (secret, request) in [(PassThroughCredential.Secret.md5(storedHash: hash), AuthenticationRequest.sasl(mechanisms: ["SCRAM-SHA-256"])),
                                  (.scram(clientKey: [1], serverKey: [2]), .md5Password(salt: [1, 2, 3, 4])),
                                  (.md5(storedHash: hash), .cleartextPassword)] {
            var backend = machine(secret)
            _ = backend.connected()
            guard case .fail(let error) = backend.messageReceived(frame { request.encode(into: &$0) }) else {
                Issue.record("expected failure for \(request)"); continue
            }
            #expect(error.code == SQLState.invalidAuthorizationSpecification)
            #expect(error.message.contains("from auth_query"))
        }
    }
}
