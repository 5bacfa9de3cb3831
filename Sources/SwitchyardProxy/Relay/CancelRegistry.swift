import Logging
import NIOCore
import NIOPosix
import PostgresWire
import Synchronization

/// Maps the cancel keys Switchyard handed to clients to their sessions. A CancelRequest arrives
/// on a fresh connection, possibly on another event loop, so this is the one structure the
/// sessions share, behind a lock; it is touched only at login, logout and cancel.
final class CancelRegistry: Sendable {
    /// @unchecked: `session` is only dereferenced on `eventLoop`.
    private struct Entry: @unchecked Sendable {
        weak var session: ClientSession?
        let eventLoop: EventLoop
    }

    private let entries = Mutex<[CancelRequest: Entry]>([:])
    private let nextProcessID = Atomic<Int32>(1 << 20)

    /// A process ID for transaction-mode clients, which have no single backend PID to show.
    func nextVirtualProcessID() -> Int32 {
        let value = nextProcessID.add(1, ordering: .relaxed).newValue
        return value & 0x3FFF_FFFF
    }

    func register(_ key: CancelRequest, session: ClientSession, eventLoop: EventLoop) {
        let entry = Entry(session: session, eventLoop: eventLoop)
        entries.withLock { $0[key] = entry }
    }

    func unregister(_ key: CancelRequest) {
        _ = entries.withLock { $0.removeValue(forKey: key) }
    }

    /// Forwards a client's CancelRequest to the backend running its query, if any; unknown keys are ignored, as Postgres does.
    func cancel(_ request: CancelRequest, runtime: ProxyRuntime) {
        guard let entry = entries.withLock({ $0[request] }) else {
            runtime.logger.info("cancel request with unknown key ignored")
            return
        }
        // The session may live on another loop: hop there before touching it.
        entry.eventLoop.execute {
            entry.session?.cancelCurrentQuery()
        }
    }

    /// Opens a connection to `server` (as the pools do, through `connector`) and sends it a CancelRequest
    /// with the backend's own key.
    func sendCancel(_ key: CancelRequest, to server: ServerDefinition, on eventLoop: EventLoop, connector: ServerConnector,
                    timeout: TimeAmount, logger: Logger) {
        connector.connect(server, CancelRequestSender(key: key), eventLoop, timeout).whenFailure { error in
            logger.warning("could not forward cancel request", metadata: ["server": "\(server.name)", "error": "\(error)"])
        }
    }
}

/// Sends one CancelRequest once its connection is up, then closes it: the server answers nothing.
final class CancelRequestSender: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let key: CancelRequest

    init(key: CancelRequest) { self.key = key }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { send(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        send(context)
        context.fireChannelActive()
    }

    private func send(_ context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 16)
        key.encode(into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}
