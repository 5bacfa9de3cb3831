import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import PostgresWire
@testable import SwitchyardProxy

/// The relay with no sockets: a ``ClientSession`` on an `EmbeddedChannel`, and every server connection
/// its pools open on an `EmbeddedChannel` of the same loop (``ServerConnector``). A test plays both
/// peers — the client's bytes in, each server's answers in — and checks what each side was sent.
/// Everything runs on the test's thread, in the order the test writes it, so races are scripted.
final class RelayHarness {
    let loop = EmbeddedEventLoop()
    let client: EmbeddedChannel
    let runtime: ProxyRuntime
    let shard: PoolShard
    private let opened: NIOLockedValueBox<[ScriptedServer]>
    private var clientDecoder = FrameDecoder(maximumLength: 1 << 20)
    private var clientBytes = ByteBuffer()

    /// Server connections in the order the pools opened them.
    var servers: [ScriptedServer] { opened.withLockedValue { $0 } }

    static let configuration = config()

    /// The harness's configuration in `poolMode`, with `settings` (`key = value` lines) added to `[switchyard]`.
    static func config(poolMode: String = "transaction", _ settings: String...) -> String {
        """
        [switchyard]
        auth_type = trust
        pool_mode = \(poolMode)
        pool_size = 4
        health_check_user = app
        \(settings.joined(separator: "\n"))
        [servers]
        main = host=127.0.0.1 port=1 role=primary
        r1 = host=127.0.0.1 port=2 role=replica
        r2 = host=127.0.0.1 port=3 role=replica
        [users]
        app = password=secret
        """
    }

    init(configuration text: String = RelayHarness.configuration) throws {
        let configuration = try ProxyConfiguration.parse(text)
        var logger = Logger(label: "relay-harness")
        logger.logLevel = .critical
        runtime = try ProxyRuntime(configuration: configuration, logger: logger)
        let opened = NIOLockedValueBox<[ScriptedServer]>([])
        self.opened = opened
        let connector = ServerConnector { server, handler, eventLoop, _ in
            let channel = EmbeddedChannel(loop: eventLoop as! EmbeddedEventLoop)
            do {
                try channel.pipeline.syncOperations.addHandler(handler)
                opened.withLockedValue { $0.append(ScriptedServer(name: server.name, channel: channel)) }
                // Active at once: the backend handler sends its StartupMessage now.
                channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: server.port), promise: nil)
            } catch {
                return eventLoop.makeFailedFuture(error)
            }
            return eventLoop.makeSucceededVoidFuture()
        }
        let settings = PoolSettings(maximumConnectionsPerLoop: configuration.poolSize, connectTimeout: .seconds(5),
                                    queryWaitTimeout: .seconds(5), serverIdleTimeout: nil, tlsPolicy: .disable,
                                    tlsContext: nil, saltedPasswordCache: SaltedPasswordCache(), connector: connector)
        client = EmbeddedChannel(loop: loop)
        shard = PoolShard(eventLoop: loop, configuration: configuration, settings: settings, runtime: runtime, logger: logger)
        // What the health monitor would publish: both replicas in rotation.
        shard.updateEligibleReplicas(configuration.servers.filter { $0.role == .replica })
        try client.pipeline.syncOperations.addHandler(ClientSession(runtime: runtime, shard: shard, logger: logger))
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
    }

    /// Another client connection on the same loop and pools, logged in as `app` through `startup`'s
    /// answer by the test (its login may reuse a pooled server connection, or open one).
    func anotherClient() throws -> EmbeddedChannel {
        let other = EmbeddedChannel(loop: loop)
        try other.pipeline.syncOperations.addHandler(ClientSession(runtime: runtime, shard: shard, logger: runtime.logger))
        try other.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40001)).wait()
        var startup = ByteBuffer()
        StartupMessage(parameters: [("user", "app"), ("database", "app")]).encode(into: &startup)
        try other.writeInbound(startup)
        loop.run()
        return other
    }

    /// A client connection that sends only `packet` (a CancelRequest, say), as libpq sends a cancel.
    func rawClient(sending packet: ByteBuffer) throws -> EmbeddedChannel {
        let other = EmbeddedChannel(loop: loop)
        try other.pipeline.syncOperations.addHandler(ClientSession(runtime: runtime, shard: shard, logger: runtime.logger))
        try other.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40002)).wait()
        try other.writeInbound(packet)
        loop.run()
        return other
    }

    /// Every message `channel` (a client of ``anotherClient()``) was sent so far.
    static func received(by channel: EmbeddedChannel) throws -> [Frame] {
        var decoder = FrameDecoder(maximumLength: 1 << 20)
        var bytes = ByteBuffer()
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes.writeImmutableBuffer(buffer) }
        var frames: [Frame] = []
        while let frame = try decoder.decode(buffer: &bytes) { frames.append(frame) }
        return frames
    }

    /// The one server connection opened to `name`, or the `index`-th of them.
    func server(_ name: String, _ index: Int = 0) throws -> ScriptedServer {
        let matching = servers.filter { $0.name == name }
        guard index < matching.count else { throw HarnessError("no connection \(index) to \(name) (opened: \(servers.map(\.name)))") }
        return matching[index]
    }

    /// Logs the client in as `app` (trust) with start-up `parameters`. The login's server, the first
    /// connection to `main`, has answered its start-up; what the client was sent is returned (through
    /// ReadyForQuery, unless the server must first be set to the client's parameters).
    @discardableResult
    func logIn(_ parameters: [(String, String)] = []) throws -> [Frame] {
        var startup = ByteBuffer()
        StartupMessage(parameters: [("user", "app"), ("database", "app")] + parameters).encode(into: &startup)
        try client.writeInbound(startup)
        try server("main").acceptStartup()
        return try clientReceived()
    }

    /// The client's relay handler, for what only it knows (a PAUSE hold, say).
    func session() throws -> ClientSession {
        try client.pipeline.syncOperations.handler(type: ClientSession.self)
    }

    /// Client bytes in, as one read; then the loop runs what became due.
    func clientSends(_ write: (inout ByteBuffer) -> Void) throws {
        var buffer = ByteBuffer()
        write(&buffer)
        try client.writeInbound(buffer)
        // What the relay queued on the loop runs now, as a real loop would run it next.
        loop.run()
    }

    /// Every message the client was sent since the last call.
    /// Bytes are gathered across writes first: the relay forwards a server's reads as they come, so a
    /// message may span two of them.
    func clientReceived() throws -> [Frame] {
        while let buffer = try client.readOutbound(as: ByteBuffer.self) { clientBytes.writeImmutableBuffer(buffer) }
        var frames: [Frame] = []
        while let frame = try clientDecoder.decode(buffer: &clientBytes) { frames.append(frame) }
        return frames
    }
}

/// One server connection the relay opened, answered by the test as Postgres would.
final class ScriptedServer: @unchecked Sendable {
    let name: String
    let channel: EmbeddedChannel
    private var decoder = FrameDecoder(maximumLength: 1 << 20)
    /// What the relay sent and no whole message of yet.
    private var bytes = ByteBuffer()

    /// The process ID this server told the relay at start-up (its cancel key carries it).
    private(set) var processID: Int32 = 0

    init(name: String, channel: EmbeddedChannel) {
        self.name = name
        self.channel = channel
    }

    /// Answers the StartupMessage: trust, a few reported parameters, a key, ReadyForQuery.
    func acceptStartup() throws {
        var raw = ByteBuffer()
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { raw.writeImmutableBuffer(buffer) }
        guard raw.readableBytes >= 8, let length = raw.getInteger(at: raw.readerIndex, as: Int32.self), Int(length) <= raw.readableBytes else {
            throw HarnessError("\(name) was sent no StartupMessage")
        }
        raw.moveReaderIndex(forwardBy: Int(length))
        if raw.readableBytes > 0 { throw HarnessError("\(name) was sent more than its StartupMessage") }
        processID = Int32.random(in: 1000...99_999)
        try send { buffer in
            AuthenticationRequest.ok.encode(into: &buffer)
            BackendMessage.parameterStatus(name: "server_version", value: "15.8", into: &buffer)
            BackendMessage.parameterStatus(name: "client_encoding", value: "UTF8", into: &buffer)
            BackendMessage.parameterStatus(name: "DateStyle", value: "ISO, MDY", into: &buffer)
            BackendMessage.parameterStatus(name: "TimeZone", value: "UTC", into: &buffer)
            BackendMessage.parameterStatus(name: "application_name", value: "", into: &buffer)
            BackendMessage.backendKeyData(CancelRequest(processID: processID, secretKey: 7), into: &buffer)
            BackendMessage.readyForQuery(.idle, into: &buffer)
        }
    }

    /// Every message the relay sent this server since the last call.
    func received() throws -> [Frame] {
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes.writeImmutableBuffer(buffer) }
        var frames: [Frame] = []
        while let frame = try decoder.decode(buffer: &bytes) { frames.append(frame) }
        return frames
    }

    /// Server bytes to the relay, as one read (and its read-complete); then the loop runs what became due.
    func send(_ write: (inout ByteBuffer) -> Void) throws {
        var buffer = ByteBuffer()
        write(&buffer)
        try channel.writeInbound(buffer)
        channel.embeddedEventLoop.run()
    }

    /// The answer to a one-column simple query: RowDescription, DataRows, CommandComplete, ReadyForQuery.
    func answer(column: String = "?column?", rows: [String], status: TransactionStatus = .idle) throws {
        try send { Self.writeRows(column: column, rows, into: &$0); BackendMessage.readyForQuery(status, into: &$0) }
    }

    /// The answer to statements without rows: a CommandComplete per tag, then ReadyForQuery.
    func complete(_ tags: String..., status: TransactionStatus = .idle) throws {
        try send { buffer in
            for tag in tags { BackendMessage.commandComplete(tag, into: &buffer) }
            BackendMessage.readyForQuery(status, into: &buffer)
        }
    }

    /// A one-column result: RowDescription, a DataRow per row, CommandComplete.
    static func writeRows(column: String = "?column?", _ rows: [String], into buffer: inout ByteBuffer) {
        BackendMessage.rowDescription(columns: [column], into: &buffer)
        for row in rows { BackendMessage.dataRow([row], into: &buffer) }
        BackendMessage.commandComplete("SELECT \(rows.count)", into: &buffer)
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension Frame {
    /// The SQL of a Query message.
    var queryText: String? {
        guard id == FrontendMessageID.query else { return nil }
        var body = body
        return body.readNullTerminatedString()
    }

    var errorFields: ErrorFields? { id == BackendMessageID.errorResponse ? ErrorFields(decoding: body) : nil }
}
