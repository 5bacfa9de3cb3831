import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import PostgresWire

/// The client session a backend is currently serving. Both live on the same event loop, so
/// these calls are plain method calls with no locks or hops.
protocol BackendConnectionDelegate: AnyObject {
    func backendReceived(_ buffer: ByteBuffer)
    func backendReadComplete()
    func backendWritabilityChanged(isWritable: Bool)
    func backendClosed(_ connection: BackendConnection)
}

/// One connection to a PostgreSQL server: it logs in, then sits idle in its pool or relays
/// bytes for the client session it is leased to.
final class BackendConnection: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Never
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum State {
        case starting(BackendStartupStateMachine, EventLoopPromise<Void>)
        case awaitingSSLByte(BackendStartupStateMachine, EventLoopPromise<Void>)
        case idle
        case attached(BackendConnectionDelegate)
        /// Running the reset query before going back to the pool.
        case resetting(EventLoopPromise<Void>)
        case closed
    }

    let id: Int
    let server: ServerDefinition
    private let tlsContext: NIOSSLContext?
    private let logger: Logger
    private var state: State
    private var context: ChannelHandlerContext!
    private var frames: NIOSingleStepByteToMessageProcessor<FrameDecoder>
    /// A `read()` held back because the attached client cannot take more bytes.
    private var readHeld = false
    private var clientWritable = true

    /// The server's ParameterStatus values from login, in order.
    private(set) var parameters: [(String, String)] = []
    /// Current values of the session parameters, by lower-cased name. For the parameters the server
    /// reports (``reportedParameterNames``) only what it last reported, in every state: relaying,
    /// resetting and idle. The server is the truth; a client's spelling (`utf-8`) is not (`UTF8`).
    /// Unreported ones (search_path, tracked extras) hold what Switchyard set on it for its clients.
    var parameterValues: [String: String] = [:]
    /// Lower-cased names of the parameters this server reports in ParameterStatus messages.
    private(set) var reportedParameterNames: Set<String> = []
    /// Statements Switchyard prepared on this server for transaction-mode clients.
    var statements = ServerStatements()
    /// The key the server gave us, which a CancelRequest to it must carry.
    private(set) var cancelKey = CancelRequest(processID: 0, secretKey: 0)

    var channel: Channel { context.channel }
    var isWritable: Bool { context?.channel.isWritable ?? false }

    init(id: Int, server: ServerDefinition, startup: BackendStartupStateMachine, tlsContext: NIOSSLContext?,
         ready: EventLoopPromise<Void>, logger: Logger) {
        self.id = id
        self.server = server
        self.tlsContext = tlsContext
        self.logger = logger
        self.state = .starting(startup, ready)
        self.frames = NIOSingleStepByteToMessageProcessor(FrameDecoder(maximumLength: 1 << 20))
    }

    // MARK: Relay API, used by the session it is attached to.

    func attach(to delegate: BackendConnectionDelegate) {
        precondition(isIdle, "attaching a backend that is not idle")
        state = .attached(delegate)
        clientWritable = true
    }

    func detach() {
        if case .attached = state { state = .idle }
        resumeHeldRead()
    }

    var isIdle: Bool { if case .idle = state { return true } else { return false } }

    func write(_ buffer: ByteBuffer, promise: EventLoopPromise<Void>? = nil) {
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    func flush() {
        context.flush()
    }

    /// Backpressure: while the client cannot take more, stop reading from the server.
    func clientWritabilityChanged(isWritable: Bool) {
        clientWritable = isWritable
        if isWritable { resumeHeldRead() }
    }

    /// Runs `query` (the reset query) and completes when the server is idle again.
    func reset(with query: String) -> EventLoopFuture<Void> {
        let promise = context.eventLoop.makePromise(of: Void.self)
        state = .resetting(promise)
        var buffer = context.channel.allocator.buffer(capacity: query.utf8.count + 6)
        FrontendMessage.query(query, into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        return promise.futureResult
    }

    func close() {
        guard let context, context.channel.isActive else { return }
        var buffer = context.channel.allocator.buffer(capacity: 5)
        FrontendMessage.terminate(into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        context.close(promise: nil)
    }

    // MARK: ChannelHandler

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { channelActive(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        guard case .starting(var machine, let promise) = state else { return }
        let action = machine.connected()
        state = .starting(machine, promise)
        run(action)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        switch state {
        case .attached(let delegate):
            delegate.backendReceived(buffer)
        case .awaitingSSLByte(var machine, let promise):
            let byte = buffer.readInteger(as: UInt8.self)!
            guard buffer.readableBytes == 0 else {
                return failStartup(ErrorFields(severity: .fatal, code: SQLState.protocolViolation,
                                               message: "server sent unencrypted data after SSL response"))
            }
            let action = machine.sslResponseReceived(byte)
            state = .starting(machine, promise)
            run(action)
        case .starting, .idle, .resetting:
            do {
                try frames.process(buffer: buffer) { frame in self.frameReceived(frame) }
            } catch {
                logger.warning("malformed data from server", metadata: ["server": "\(server.name)", "error": "\(error)"])
                failStartup(ErrorFields(severity: .fatal, code: SQLState.protocolViolation, message: "malformed message from server: \(error)"))
                context.close(promise: nil)
            }
        case .closed:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if case .attached(let delegate) = state { delegate.backendReadComplete() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .attached(let delegate) = state { delegate.backendWritabilityChanged(isWritable: context.channel.isWritable) }
    }

    func read(context: ChannelHandlerContext) {
        if case .attached = state, !clientWritable {
            readHeld = true
            return
        }
        context.read()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event, case .starting(var machine, let promise) = state {
            let action = machine.tlsEstablished()
            state = .starting(machine, promise)
            run(action)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.warning("server connection error", metadata: ["server": "\(server.name)", "error": "\(error)"])
        failStartup(ErrorFields(severity: .fatal, code: SQLState.connectionFailure,
                                message: "connection to server \"\(server.name)\" failed: \(error)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let previous = state
        state = .closed
        switch previous {
        case .starting(_, let promise), .awaitingSSLByte(_, let promise):
            promise.fail(ErrorFields(severity: .fatal, code: SQLState.connectionFailure,
                                     message: "server \"\(server.name)\" closed the connection during login"))
        case .resetting(let promise):
            promise.fail(ErrorFields(severity: .fatal, code: SQLState.connectionFailure, message: "server closed the connection during reset"))
        case .attached(let delegate):
            delegate.backendClosed(self)
        case .idle, .closed:
            break
        }
        onClose?(self)
        onClose = nil
    }

    /// Set by the pool: told once when the connection is gone, whatever the state.
    var onClose: ((BackendConnection) -> Void)?

    // MARK: Start-up and idle frames

    private func frameReceived(_ frame: Frame) {
        switch state {
        case .starting(var machine, let promise):
            let action = machine.messageReceived(frame)
            state = .starting(machine, promise)
            run(action)
        case .idle:
            // A server speaks unprompted only to report a parameter change, a notice or its own shutdown.
            if frame.id == BackendMessageID.parameterStatus {
                parameterStatusReceived(frame.body)
            } else if frame.id == BackendMessageID.errorResponse {
                let error = ErrorFields(decoding: frame.body)
                logger.notice("idle server connection reported an error, closing it",
                              metadata: ["server": "\(server.name)", "error": "\(error.map(String.init(describing:)) ?? "?")"])
                context.close(promise: nil)
            }
        case .resetting(let promise):
            if frame.id == BackendMessageID.parameterStatus {
                // DISCARD ALL / RESET ALL report the values they restore: the next client is told these.
                parameterStatusReceived(frame.body)
            } else if frame.id == BackendMessageID.readyForQuery {
                state = .idle
                if frame.body.getInteger(at: frame.body.readerIndex, as: UInt8.self) == TransactionStatus.idle.rawValue {
                    promise.succeed()
                } else {
                    promise.fail(ErrorFields(severity: .error, code: SQLState.internalError, message: "reset query left a transaction open"))
                }
            } else if frame.id == BackendMessageID.errorResponse {
                logger.warning("reset query failed", metadata: ["server": "\(server.name)"])
            }
        case .awaitingSSLByte, .attached, .closed:
            break
        }
    }

    private func run(_ action: BackendStartupStateMachine.Action) {
        switch action {
        case .sendSSLRequest:
            guard case .starting(let machine, let promise) = state else { return }
            state = .awaitingSSLByte(machine, promise)
            var buffer = context.channel.allocator.buffer(capacity: 8)
            buffer.writeInteger(Int32(8))
            buffer.writeInteger(Int32(80_877_103))
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .startTLS:
            guard let tlsContext else {
                return failStartup(ErrorFields(severity: .fatal, code: SQLState.internalError, message: "TLS to servers is not configured"))
            }
            do {
                let handler = try NIOSSLClientHandler(context: tlsContext, serverHostname: server.host.isIPAddress ? nil : server.host)
                try context.pipeline.syncOperations.addHandler(handler, position: .first)
            } catch {
                failStartup(ErrorFields(severity: .fatal, code: SQLState.connectionFailure, message: "could not start TLS: \(error)"))
            }
        case .sendStartup(let message):
            var buffer = context.channel.allocator.buffer(capacity: 64)
            message.encode(into: &buffer)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .sendPassword(let password):
            var buffer = context.channel.allocator.buffer(capacity: 64)
            FrontendMessage.password(password, into: &buffer)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .sendSASLInitialResponse(let mechanism, let data):
            var buffer = context.channel.allocator.buffer(capacity: 64)
            FrontendMessage.saslInitialResponse(mechanism: mechanism, data: data, into: &buffer)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .sendSASLResponse(let data):
            var buffer = context.channel.allocator.buffer(capacity: 128)
            FrontendMessage.saslResponse(data: data, into: &buffer)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .wait:
            break
        case .ready(let parameters, let key):
            guard case .starting(_, let promise) = state else { return }
            self.parameters = parameters
            for (name, value) in parameters { parameterValues[name.lowercased()] = value }
            reportedParameterNames = Set(parameters.map { $0.0.lowercased() })
            self.cancelKey = key
            state = .idle
            promise.succeed()
        case .fail(let error):
            failStartup(error)
            context.close(promise: nil)
        }
    }

    /// Records a ParameterStatus body: the server's current value of a reported parameter.
    func parameterStatusReceived(_ body: ByteBuffer) {
        guard let (name, value) = BackendMessage.decodeParameterStatus(body) else { return }
        let key = name.lowercased()
        parameterValues[key] = value
        reportedParameterNames.insert(key)
    }

    private func failStartup(_ error: ErrorFields) {
        switch state {
        case .starting(_, let promise), .awaitingSSLByte(_, let promise):
            state = .closed
            promise.fail(error)
        default:
            break
        }
    }

    private func resumeHeldRead() {
        if readHeld {
            readHeld = false
            context.read()
        }
    }
}

extension String {
    var isIPAddress: Bool { (try? SocketAddress(ipAddress: self, port: 0)) != nil }
}
