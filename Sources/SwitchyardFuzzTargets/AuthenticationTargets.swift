import NIOCore
import PostgresWire
import SwitchyardProxy

/// The SCRAM exchange parses the first bytes an unauthenticated client sends.
enum AuthenticationTargets {
    /// Derived once: 4096 PBKDF2 rounds per input would leave little time for fuzzing.
    static let secret = SCRAMSecret.derive(password: "fuzz-password", salt: Array("switchyard-fuzz!".utf8))
    static let serverNonce = "fuzzServerNonce0123456789"

    /// The input is client-first, a NUL, then client-final; its length picks the channel-binding case.
    static func scramExchange(_ input: [UInt8]) -> String? {
        let split = input.firstIndex(of: 0) ?? input.endIndex
        let first = Array(input[..<split]), final = Array(input[min(split + 1, input.endIndex)...])
        let binding: SCRAMServerExchange.ChannelBinding = switch input.count % 3 {
        case 0: .notOffered
        case 1: .offered
        default: .selected(tlsServerEndPoint: Array(repeating: 0xAB, count: 32))
        }
        var exchange = SCRAMServerExchange(secret: secret, serverNonce: serverNonce, channelBinding: binding)
        let firstFailed: Bool
        switch exchange.receiveClientFirst(first) {
        case .success(let serverFirst):
            guard String(validating: serverFirst, as: UTF8.self)?.contains("r=") == true else { return "server-first without a nonce" }
            firstFailed = false
        case .failure:
            firstFailed = true
        }
        // Nobody can prove knowledge of the password without it: a fuzzed client-final that passes is
        // an authentication bypass. After a failed client-first, nothing passes either.
        if case .success = exchange.receiveClientFinal(final) {
            return firstFailed ? "client-final accepted after a failed client-first" : "a fuzzed proof was accepted"
        }
        if case .success = exchange.receiveClientFinal(final) { return "a finished exchange accepted another client-final" }
        return nil
    }
}

extension AuthenticationTargets {
    /// Stores of the two password methods, each with a plaintext user and one without a password.
    static let stores: [ClientCredentialStore] = ["scram-sha-256", "md5"].map { method in
        let text = """
            [switchyard]
            auth_type = \(method)
            [servers]
            primary = host=127.0.0.1 port=1 role=primary
            [users]
            app = password=fuzz-password
            fuzz = password=another-password
            """
        // Fixed text: a failure here is a bug in this file, and the first input shows it.
        return try! ClientCredentialStore(configuration: ProxyConfiguration.parse(text))
    }

    /// A client's whole way to login, from its first byte: start-up packets, then password messages,
    /// through ``ClientStartupStateMachine``. The first byte picks the store and how reads are cut. No
    /// input may end in `authenticated`: the fuzzer knows no password.
    static func clientLogin(_ input: [UInt8]) -> String? {
        var splitter = ReadSplitter(input)
        var machine = ClientStartupStateMachine(credentials: stores[Int(input.first ?? 0) % stores.count], tlsMode: .disable)
        let startup = NIOSingleStepByteToMessageProcessor(StartupPacketDecoder())
        let frames = NIOSingleStepByteToMessageProcessor(FrameDecoder(maximumLength: 1 << 16))
        var started = false, ended = false
        var broken: String?
        func perform(_ action: ClientStartupStateMachine.Action) {
            switch action {
            case .authenticated(let identity, _):
                broken = "user \(identity.user.debugDescription) logged in without its password"
                ended = true
            case .fail, .failForgettingRoleSecret, .cancel, .rejectGSSEncryption:
                ended = true
            case .lookUpRoleSecret:
                perform(machine.roleSecretLookedUp(.notFound))
            case .sendSSLResponse, .sendAuthenticationRequest, .wait:
                break
            }
        }
        do {
            for read in splitter.reads() where !ended {
                let buffer = ByteBuffer(bytes: read)
                if !started {
                    try startup.process(buffer: buffer) { packet in
                        guard !ended else { return }
                        if case .startup = packet { started = true }
                        perform(machine.packetReceived(packet))
                    }
                    // Bytes behind the StartupMessage in the same read are lost here, as they would be for a
                    // client that did not wait for the server's answer; the next read is framed.
                } else {
                    try frames.process(buffer: buffer) { frame in
                        guard !ended else { return }
                        guard frame.id == FrontendMessageID.password else { ended = true; return }
                        perform(machine.passwordMessageReceived(frame.body))
                    }
                }
            }
        } catch {
            // A framing error closes the connection: nothing logged in.
        }
        return broken.map { "client login: \($0)" }
    }
}
