import Logging
import NIOCore
import NIOEmbedded
import PostgresWire
import Testing
@testable import SwitchyardProxy

/// The client handler's start-up phase on an `EmbeddedChannel`: what goes out on the wire for
/// each kind of first packet, before any backend is involved.
@Suite struct ClientSessionHandlerTests {
    func makeChannel(auth: String = "scram-sha-256") throws -> EmbeddedChannel {
        let configuration = try ProxyConfiguration.parse("""
            [switchyard]
            auth_type = \(auth)
            max_message_size = 1024
            admin_users = admin
            [servers]
            main = host=127.0.0.1 port=1 role=primary
            [users]
            app = password=app-secret
            admin = password=admin-secret
            """)
        let runtime = try ProxyRuntime(configuration: configuration, logger: Logger(label: "test"))
        let channel = EmbeddedChannel()
        let settings = PoolSettings(maximumConnectionsPerLoop: 1, connectTimeout: .seconds(1), queryWaitTimeout: .seconds(1),
                                    serverIdleTimeout: nil, tlsPolicy: .disable, tlsContext: nil,
                                    saltedPasswordCache: SaltedPasswordCache())
        let shard = PoolShard(eventLoop: channel.eventLoop, configuration: configuration, settings: settings, runtime: runtime, logger: runtime.logger)
        let monitor = ReplicaMonitor(runtime: runtime, eventLoop: channel.eventLoop, logger: runtime.logger)
        let console = AdminConsole(runtime: runtime, monitor: monitor, reload: { [] }, logger: runtime.logger)
        try channel.pipeline.syncOperations.addHandler(ClientSession(runtime: runtime, shard: shard, console: console, logger: runtime.logger))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        return channel
    }

    func readFrames(_ channel: EmbeddedChannel) throws -> [Frame] {
        var frames: [Frame] = []
        var decoder = FrameDecoder(maximumLength: 1 << 16)
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            while let frame = try decoder.decode(buffer: &buffer) { frames.append(frame) }
        }
        return frames
    }

    @Test func sslRequestWithoutTLSIsAnsweredN() throws {
        let channel = try makeChannel()
        var request = ByteBuffer()
        request.writeInteger(Int32(8)); request.writeInteger(Int32(80_877_103))
        try channel.writeInbound(request)
        let reply = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(Array(reply.readableBytesView) == [UInt8(ascii: "N")])
        #expect(channel.isActive)
    }

    @Test func startupAsksForSCRAM() throws {
        let channel = try makeChannel()
        var startup = ByteBuffer()
        StartupMessage(parameters: [("user", "app"), ("database", "app")]).encode(into: &startup)
        try channel.writeInbound(startup)
        let frames = try readFrames(channel)
        #expect(frames.count == 1)
        #expect(frames.first.flatMap { AuthenticationRequest(decoding: $0.body) } == .sasl(mechanisms: ["SCRAM-SHA-256"]))
    }

    @Test func wrongMD5PasswordGetsFatal28P01AndClose() throws {
        let channel = try makeChannel(auth: "md5")
        var startup = ByteBuffer()
        StartupMessage(parameters: [("user", "app")]).encode(into: &startup)
        try channel.writeInbound(startup)
        _ = try readFrames(channel)
        var password = ByteBuffer()
        FrontendMessage.password("md5" + String(repeating: "0", count: 32), into: &password)
        try channel.writeInbound(password)
        let frames = try readFrames(channel)
        let error = try #require(frames.first.flatMap { ErrorFields(decoding: $0.body) })
        #expect(error.code == SQLState.invalidPassword)
        #expect(error.severity == "FATAL")
        #expect(!channel.isActive)
    }

    @Test func unsupportedProtocolVersionGetsFatal() throws {
        let channel = try makeChannel()
        var packet = ByteBuffer()
        packet.writeInteger(Int32(9)); packet.writeInteger(Int32(2 << 16)); packet.writeInteger(UInt8(0))
        try channel.writeInbound(packet)
        let error = try #require(try readFrames(channel).first.flatMap { ErrorFields(decoding: $0.body) })
        #expect(error.code == SQLState.protocolViolation)
        #expect(error.message.contains("unsupported frontend protocol 2.0"))
        #expect(!channel.isActive)
    }

    @Test func plaintextPipelinedAfterSSLRequestIsRejected() throws {
        let channel = try makeChannel()
        var bytes = ByteBuffer()
        bytes.writeInteger(Int32(8)); bytes.writeInteger(Int32(80_877_103))
        StartupMessage(parameters: [("user", "app")]).encode(into: &bytes)
        try channel.writeInbound(bytes)
        let error = try #require(try readFrames(channel).first.flatMap { ErrorFields(decoding: $0.body) })
        #expect(error.code == SQLState.protocolViolation)
        #expect(!channel.isActive)
    }

    @Test func adminLoginHandsTheConnectionToTheConsole() throws {
        let channel = try makeChannel(auth: "trust")
        var startup = ByteBuffer()
        StartupMessage(parameters: [("user", "admin"), ("database", "switchyard")]).encode(into: &startup)
        try channel.writeInbound(startup)
        let frames = try readFrames(channel)
        #expect(frames.first.flatMap { AuthenticationRequest(decoding: $0.body) } == .ok)
        let parameters = frames.filter { $0.id == BackendMessageID.parameterStatus }.compactMap { BackendMessage.decodeParameterStatus($0.body) }
        #expect(parameters.contains { $0.0 == "server_version" && $0.1.contains("Switchyard") })
        #expect(frames.contains { $0.id == BackendMessageID.backendKeyData })
        #expect(frames.last?.id == BackendMessageID.readyForQuery)
        #expect(channel.isActive)
        // The console's handler took over; the relay's handler left the pipeline.
        #expect(throws: Never.self) { try channel.pipeline.syncOperations.handler(type: AdminSession.self) }
        #expect(throws: (any Error).self) { try channel.pipeline.syncOperations.handler(type: ClientSession.self) }
    }

    @Test func nonAdminOnTheConsoleGetsFatal42501() throws {
        let channel = try makeChannel(auth: "trust")
        var startup = ByteBuffer()
        StartupMessage(parameters: [("user", "app"), ("database", "switchyard")]).encode(into: &startup)
        try channel.writeInbound(startup)
        let error = try #require(try readFrames(channel).compactMap { $0.id == BackendMessageID.errorResponse ? ErrorFields(decoding: $0.body) : nil }.first)
        #expect(error.code == SQLState.insufficientPrivilege)
        #expect(error.severity == "FATAL")
        #expect(!channel.isActive)
    }
}
