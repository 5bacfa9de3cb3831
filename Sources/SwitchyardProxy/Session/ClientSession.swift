import Logging
import NIOCore
import NIOSSL
import PostgresWire

/// One client connection, from its first byte to its close: start-up and authentication
/// (delegated to ``ClientStartupStateMachine``), then the relay to whichever backend serves it.
///
/// The relay forwards each received `ByteBuffer` whole and uses ``MessageBoundaryScanner`` and
/// ``TransactionTracker`` only to learn when a transaction ends, which is when a backend goes
/// back to the pool in transaction mode. Client and backend share an event loop, so there are no
/// locks; backpressure follows swift-nio's GlueHandler: each side reads only while the other can write.
final class ClientSession: ChannelDuplexHandler, PoolWaiter, BackendConnectionDelegate {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Never
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        case startup(NIOSingleStepByteToMessageProcessor<StartupPacketDecoder>, ClientStartupStateMachine)
        case authenticating(NIOSingleStepByteToMessageProcessor<FrameDecoder>, ClientStartupStateMachine)
        /// Authenticated; waiting for a first backend, whose parameters the client must see.
        case loggingIn(ClientIdentity)
        case relaying
        case closed
    }

    private let runtime: ProxyRuntime
    private let shard: PoolShard
    private var logger: Logger
    private var phase: Phase
    private var context: ChannelHandlerContext!

    private var identity: ClientIdentity?
    private var pool: ConnectionPool?
    private var backend: BackendConnection?
    private var waitID: Int?
    /// Client bytes that arrived while no backend was attached, forwarded once one is.
    private var pendingClientBytes: [ByteBuffer] = []
    private var tracker = TransactionTracker()
    private var clientScanner: MessageBoundaryScanner
    private var backendScanner: MessageBoundaryScanner
    private var readHeld = false
    private var idleTransactionTimer: Scheduled<Void>?
    private var loginTimer: Scheduled<Void>?
    /// The key this client was given in BackendKeyData, which its CancelRequests carry.
    private(set) var cancelKey: CancelRequest?

    init(runtime: ProxyRuntime, shard: PoolShard, logger: Logger) {
        self.runtime = runtime
        self.shard = shard
        self.logger = logger
        let machine = ClientStartupStateMachine(credentials: runtime.credentials, tlsMode: runtime.configuration.clientTLS.mode)
        self.phase = .startup(NIOSingleStepByteToMessageProcessor(StartupPacketDecoder()), machine)
        self.clientScanner = MessageBoundaryScanner(maximumLength: runtime.configuration.maxMessageSize)
        // Rows from the server are limited by Postgres itself (1 GB per field); we only count them.
        self.backendScanner = MessageBoundaryScanner(maximumLength: Int(Int32.max))
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        logger[metadataKey: "client"] = "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")"
        loginTimer = context.eventLoop.assumeIsolated().scheduleTask(in: ProxyRuntime.loginTimeout) { [self] in
            if case .relaying = phase { return }
            fail(ErrorFields(severity: .fatal, code: SQLState.protocolViolation, message: "canceling authentication due to timeout"))
        }
        shard.sessionOpened(self)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        switch phase {
        case .relaying:
            relayFromClient(buffer)
        case .startup(var processor, var machine):
            do {
                try processor.process(buffer: buffer) { packet in
                    let action = machine.packetReceived(packet)
                    phase = .startup(processor, machine)
                    run(action)
                }
                if case .startup = phase { phase = .startup(processor, machine) }
            } catch {
                fail(ErrorFields(severity: .fatal, code: SQLState.protocolViolation, message: "\(error)"))
            }
        case .authenticating(var processor, var machine):
            do {
                try processor.process(buffer: buffer) { frame in
                    guard case .authenticating = phase else { return }
                    guard frame.id == FrontendMessageID.password else {
                        if frame.id == FrontendMessageID.terminate { return close() }
                        return fail(ErrorFields(severity: .fatal, code: SQLState.protocolViolation,
                                                message: "expected password response, got message type \(frame.id)"))
                    }
                    let action = machine.passwordMessageReceived(frame.body)
                    phase = .authenticating(processor, machine)
                    if case .fail(let error) = action, error.code == SQLState.invalidPassword {
                        logger.notice("client authentication failed", metadata: ["user": "\(machine.user ?? "?")"])
                    }
                    run(action)
                }
            } catch {
                fail(ErrorFields(severity: .fatal, code: SQLState.protocolViolation, message: "\(error)"))
            }
        case .loggingIn:
            // The client may not speak before ReadyForQuery; keep what it sent for the relay.
            pendingClientBytes.append(buffer)
        case .closed:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        backend?.flush()
    }

    func read(context: ChannelHandlerContext) {
        if shouldHoldClientReads {
            readHeld = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        backend?.clientWritabilityChanged(isWritable: context.channel.isWritable)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is NIOSSLError || error is BoringSSLError {
            logger.info("client TLS error", metadata: ["error": "\(error)"])
        } else {
            logger.debug("client connection error", metadata: ["error": "\(error)"])
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let wasRelaying: Bool
        if case .relaying = phase { wasRelaying = true } else { wasRelaying = false }
        phase = .closed
        loginTimer?.cancel()
        idleTransactionTimer?.cancel()
        if let waitID { pool?.cancelWait(waitID) }
        waitID = nil
        if let backend { returnOrDiscard(backend) }
        backend = nil
        pendingClientBytes.removeAll()
        if let cancelKey { runtime.cancelRegistry.unregister(cancelKey) }
        shard.sessionClosed(self)
        if wasRelaying { logger.debug("client disconnected") }
    }

    // MARK: Start-up

    private func run(_ action: ClientStartupStateMachine.Action) {
        switch action {
        case .sendSSLResponse(let accepted):
            var buffer = context.channel.allocator.buffer(capacity: 1)
            buffer.writeInteger(UInt8(ascii: accepted ? "S" : "N"))
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            if accepted, let tls = runtime.clientTLSContext {
                do {
                    try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
                } catch {
                    fail(ErrorFields(severity: .fatal, code: SQLState.internalError, message: "could not start TLS"))
                }
            }
        case .rejectGSSEncryption:
            var buffer = context.channel.allocator.buffer(capacity: 1)
            buffer.writeInteger(UInt8(ascii: "N"))
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .cancel(let request):
            runtime.cancelRegistry.cancel(request, runtime: runtime)
            close()
        case .sendAuthenticationRequest(let request):
            if case .startup(_, let machine) = phase {
                phase = .authenticating(NIOSingleStepByteToMessageProcessor(FrameDecoder(maximumLength: 16 * 1024)), machine)
            }
            var buffer = context.channel.allocator.buffer(capacity: 64)
            request.encode(into: &buffer)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .authenticated(let identity, let saslFinal):
            guard runtime.admitClient() else {
                return fail(ErrorFields(severity: .fatal, code: SQLState.tooManyConnections,
                                        message: "sorry, too many clients already (max_client_conn is \(runtime.configuration.maxClientConnections))"))
            }
            shard.clientAdmitted(self)
            var buffer = context.channel.allocator.buffer(capacity: 64)
            if let saslFinal { AuthenticationRequest.saslFinal(data: saslFinal).encode(into: &buffer) }
            AuthenticationRequest.ok.encode(into: &buffer)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            logIn(identity)
        case .fail(let error):
            fail(error)
        case .wait:
            break
        }
    }

    private func logIn(_ identity: ClientIdentity) {
        self.identity = identity
        logger[metadataKey: "user"] = "\(identity.user)"
        logger[metadataKey: "database"] = "\(identity.database)"
        if runtime.isDraining {
            return fail(ErrorFields(severity: .fatal, code: SQLState.cannotConnectNow, message: "Switchyard is shutting down"))
        }
        phase = .loggingIn(identity)
        pool = shard.pool(for: identity, server: runtime.configuration.primary)
        waitID = pool!.lease(for: self)
    }

    private func finishLogin(with connection: BackendConnection) {
        var buffer = context.channel.allocator.buffer(capacity: 512)
        for (name, value) in connection.parameters {
            BackendMessage.parameterStatus(name: name, value: value, into: &buffer)
        }
        let secret = Int32.random(in: .min ... .max)
        // Session mode shows the real backend PID, which operators look up in pg_stat_activity.
        let pid = runtime.configuration.poolMode == .session ? connection.cancelKey.processID : runtime.cancelRegistry.nextVirtualProcessID()
        let key = CancelRequest(processID: pid, secretKey: secret)
        cancelKey = key
        runtime.cancelRegistry.register(key, session: self, eventLoop: context.eventLoop)
        BackendMessage.backendKeyData(key, into: &buffer)
        BackendMessage.readyForQuery(.idle, into: &buffer)
        loginTimer?.cancel()
        phase = .relaying
        if runtime.configuration.poolMode == .session {
            attach(connection)
        } else {
            pool!.release(connection, resetQuery: nil)
        }
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        let early = pendingClientBytes
        pendingClientBytes.removeAll()
        for bytes in early { relayFromClient(bytes) }
        backend?.flush()
    }

    // MARK: Relay

    private func relayFromClient(_ buffer: ByteBuffer) {
        idleTransactionTimer?.cancel()
        idleTransactionTimer = nil
        var terminateAt: Int?
        var namedStatement = false
        let transactionMode = runtime.configuration.poolMode == .transaction
        do {
            try clientScanner.scan(buffer) { message in
                if message.id == FrontendMessageID.terminate {
                    terminateAt = message.startedInThisBuffer ? message.endOffset - 5 : 0
                } else {
                    tracker.clientSent(message.id)
                    // A Parse body starts with the statement name; a non-empty one outlives the transaction.
                    if transactionMode, message.id == FrontendMessageID.parse, message.firstBodyByte != 0 { namedStatement = true }
                }
            }
        } catch {
            return fail(ErrorFields(severity: .fatal, code: SQLState.protocolViolation, message: "invalid message from client: \(error)"))
        }
        if namedStatement {
            // The next transaction may run on another server, where the statement does not exist.
            return fail(ErrorFields(
                severity: .fatal, code: SQLState.featureNotSupported,
                message: "named prepared statements are not supported with pool_mode = transaction",
                hint: "Use unnamed statements (psycopg: prepare_threshold=None; pgbench: -M extended) or pool_mode = session."))
        }
        if let terminateAt {
            if terminateAt > 0, let backend {
                backend.write(buffer.getSlice(at: buffer.readerIndex, length: terminateAt)!)
                backend.flush()
            }
            return close()
        }
        if let backend {
            backend.write(buffer)
            return
        }
        if runtime.isDraining {
            return fail(ErrorFields(severity: .fatal, code: SQLState.adminShutdown,
                                    message: "terminating connection because Switchyard is shutting down"))
        }
        pendingClientBytes.append(buffer)
        if waitID == nil, let pool {
            waitID = pool.lease(for: self)
        }
    }

    func leaseSucceeded(_ connection: BackendConnection, from pool: ConnectionPool) {
        waitID = nil
        switch phase {
        case .loggingIn:
            finishLogin(with: connection)
        case .relaying:
            attach(connection)
            for bytes in pendingClientBytes { connection.write(bytes) }
            pendingClientBytes.removeAll(keepingCapacity: true)
            connection.flush()
            resumeHeldRead()
        case .startup, .authenticating, .closed:
            pool.release(connection, resetQuery: nil)
        }
    }

    func leaseFailed(_ error: ErrorFields) {
        waitID = nil
        logger.warning("no server connection for client", metadata: ["error": "\(error)"])
        fail(ErrorFields(severity: .fatal, code: error.code, message: error.message, detail: error.detail, hint: error.hint))
    }

    private func attach(_ connection: BackendConnection) {
        backend = connection
        connection.attach(to: self)
        connection.clientWritabilityChanged(isWritable: context.channel.isWritable)
    }

    func backendReceived(_ buffer: ByteBuffer) {
        do {
            try backendScanner.scan(buffer) { message in
                if message.id == BackendMessageID.readyForQuery {
                    tracker.backendSentReadyForQuery(message.firstBodyByte)
                }
            }
        } catch {
            logger.error("invalid message from server", metadata: ["error": "\(error)"])
            if let backend { pool?.discard(backend) }
            return fail(ErrorFields(severity: .fatal, code: SQLState.protocolViolation, message: "invalid message from server"))
        }
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    func backendReadComplete() {
        context.flush()
        guard let backend, tracker.awaitedReadyForQuery == 0, !tracker.extendedBatchOpen,
              clientScanner.isAtMessageBoundary, backendScanner.isAtMessageBoundary else { return }
        if tracker.status == .idle {
            if runtime.configuration.poolMode == .transaction {
                self.backend = nil
                pool?.release(backend, resetQuery: nil)
            }
            if runtime.isDraining {
                fail(ErrorFields(severity: .fatal, code: SQLState.adminShutdown,
                                 message: "terminating connection because Switchyard is shutting down"))
            }
        } else if let timeout = runtime.idleTransactionTimeout {
            idleTransactionTimer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
                logger.notice("closing client idle in transaction")
                fail(ErrorFields(severity: .fatal, code: SQLState.idleInTransactionTimeout,
                                 message: "terminating connection due to idle-in-transaction timeout"))
            }
        }
    }

    func backendWritabilityChanged(isWritable: Bool) {
        if isWritable { resumeHeldRead() }
    }

    func backendClosed(_ connection: BackendConnection) {
        guard connection === backend else { return }
        backend = nil
        logger.warning("server connection lost while serving client")
        fail(ErrorFields(severity: .fatal, code: SQLState.connectionFailure,
                         message: "server connection to \"\(connection.server.name)\" was lost",
                         hint: "The transaction in progress, if any, was rolled back by the server."))
    }

    /// Called on this session's event loop when a CancelRequest carrying its key arrived.
    func cancelCurrentQuery() {
        guard let backend else { return }
        runtime.cancelRegistry.sendCancel(backend.cancelKey, to: backend.server, on: context.eventLoop, logger: logger)
    }

    /// Shutdown: a client with no transaction in flight is closed now; others at their next idle point.
    func closeIfIdle() {
        guard case .relaying = phase else { return }
        if backend == nil || tracker.isIdle, pendingClientBytes.isEmpty {
            fail(ErrorFields(severity: .fatal, code: SQLState.adminShutdown,
                             message: "terminating connection because Switchyard is shutting down"))
        }
    }

    func forceClose() {
        fail(ErrorFields(severity: .fatal, code: SQLState.adminShutdown, message: "terminating connection due to administrator command"))
    }

    // MARK: Helpers

    private var shouldHoldClientReads: Bool {
        guard case .relaying = phase else { return false }
        if waitID != nil { return true }
        if let backend { return !backend.isWritable }
        return false
    }

    private func resumeHeldRead() {
        if readHeld, !shouldHoldClientReads {
            readHeld = false
            context.read()
        }
    }

    private func returnOrDiscard(_ connection: BackendConnection) {
        guard let pool else { return connection.close() }
        if tracker.isIdle, clientScanner.isAtMessageBoundary, backendScanner.isAtMessageBoundary {
            let reset = runtime.configuration.poolMode == .session ? runtime.configuration.serverResetQuery : nil
            pool.release(connection, resetQuery: reset)
        } else {
            // Mid-transaction or mid-message: the server must not be reused; closing it rolls back.
            pool.discard(connection)
        }
    }

    /// Sends a FATAL error and closes the client.
    private func fail(_ error: ErrorFields) {
        guard let context, context.channel.isActive else { return }
        if case .closed = phase { return }
        var buffer = context.channel.allocator.buffer(capacity: 128)
        error.encode(into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        close()
    }

    private func close() {
        guard let context else { return }
        context.close(promise: nil)
    }
}
