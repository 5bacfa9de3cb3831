import DequeModule
import Logging
import NIOCore
import NIOSSL
import PostgresWire

/// One client connection, from its first byte to its close: start-up and authentication
/// (delegated to ``ClientStartupStateMachine``), then the relay to whichever server serves it.
///
/// Client messages are framed (zero-copy slices) so a unit of work — an autocommit statement or
/// a transaction — can be routed by its first statement (``RoutePlanner``). Server responses are
/// forwarded as whole buffers; ``MessageBoundaryScanner`` and ``TransactionTracker`` only watch
/// for the ReadyForQuery that ends a unit, which is when the server goes back to its pool.
/// Client and server share an event loop, so there are no locks; backpressure follows
/// swift-nio's GlueHandler: each side reads only while the other can write.
final class ClientSession: ChannelDuplexHandler, RemovableChannelHandler, PoolWaiter, BackendConnectionDelegate {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Never
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Indirect: the start-up payloads (about 250 bytes) live in a box of their own, so a session past its
    /// login keeps a pointer where they were, not their size (measured: idle clients cost less).
    indirect enum Phase {
        case startup(NIOSingleStepByteToMessageProcessor<StartupPacketDecoder>, ClientStartupStateMachine)
        case authenticating(NIOSingleStepByteToMessageProcessor<FrameDecoder>, ClientStartupStateMachine)
        /// Authenticated; waiting for a first backend, whose parameters the client must see.
        case loggingIn(ClientIdentity)
        case relaying
        case closed
    }

    /// Bytes a client may have sent ahead during start-up and authentication.
    static let loginBufferLimit = 64 * 1024
    let runtime: ProxyRuntime
    let shard: PoolShard
    /// Where logins to the database `switchyard` go; nil where there is none (handler tests).
    let console: AdminConsole?
    /// The process's logger, without this client's metadata: ``logger`` adds it when something is logged,
    /// so an idle client holds no metadata dictionary and its strings (about 0.5 KB each).
    private let baseLogger: Logger
    var logger: Logger {
        var logger = baseLogger
        logger[metadataKey: "client"] = "\(context?.channel.remoteAddress.map { "\($0)" } ?? "?")"
        if let identity {
            logger[metadataKey: "user"] = "\(identity.user)"
            logger[metadataKey: "database"] = "\(identity.database)"
        }
        return logger
    }
    var phase: Phase
    var context: ChannelHandlerContext!

    var identity: ClientIdentity?
    /// The pool `backend` came from (or is being leased from).
    var pool: ConnectionPool?
    /// The server connection serving the client, or what it waits for instead.
    var link = ServerLink.none
    var backend: BackendConnection? { link.connection }
    /// Bytes that arrived before login completed, replayed into the relay afterwards.
    var pendingClientBytes: [ByteBuffer] = []
    /// Client messages not yet sent to a server: waiting for a lease, or for the current unit to end.
    var pending: Deque<ClientRequest> = []
    /// Client messages from a local command on, while answers to the messages before it are owed
    /// (a pipeline): Postgres answers in order, so the command waits for those answers.
    var deferred: Deque<ClientRequest> = []
    /// Set while `deferred` replays, so a replay that ends a unit at once does not recurse.
    var isReplayingDeferred = false
    /// Terminate, end of input or a refusal's FATAL: the client is closed once what it sent before is
    /// answered (``closeIfTerminated()``).
    var ending = SessionEnding()
    /// The server sent CopyInResponse and waits for the client's COPY data (until ReadyForQuery).
    var copyInProgress = false
    var inbound: ClientMessageStream
    /// Inside ``relayFromClient(_:)``: what goes to the server now is written and flushed once the read
    /// is done (as one write, the read's own buffer when it all goes through), not message by message.
    var readingClient = false
    var tracker = TransactionTracker()
    var backendScanner: MessageBoundaryScanner
    var planner: RoutePlanner
    var unit = UnitOfWork()
    /// Classifications of the client's named prepared statements, for routing their Binds.
    var statementClasses: [String: StatementClassification] = [:]
    var unnamedStatementClass: StatementClassification?
    /// Who answers the client's extended-protocol batch up to its next Sync.
    var batch = ClientBatch.relayed
    /// Answers local commands (``LocalCommand``) as Postgres would; holds the statements prepared of them.
    var localAnswers = LocalResponder<LocalCommand>()
    /// Database-level DDL waits until Switchyard's idle connections to its database are closed.
    var closingIdleConnections = false
    /// The client's view of the tracked session parameters (lower-cased names).
    var clientParameters: [String: String] = [:]
    /// Answers still owed to the parameter-synchronisation queries Switchyard injected (and whether
    /// the client's login waits for them: it must see the parameters it asked for).
    var parameterSyncAnswer = ParameterSyncAnswer()
    /// Transaction mode: the client's statements, re-created on whichever server runs them, and the
    /// answers to cut out or make up for that.
    var statementMap = StatementMap()
    /// The attached server sent the client a FATAL (or PANIC) error: it closes next, and Postgres
    /// sends nothing after it, so neither does Switchyard.
    var serverEndedWithFatal = false
    /// State on the attached server connection that keeps this transaction-mode client on it.
    var pin = ServerPin()
    /// Read-your-writes: what a replica must have replayed to serve this client's reads.
    var readFloor = ReadFloor(level: .session)
    /// This client's database's watermark (``ReadConsistency/database``), looked up once at login.
    var databaseWatermark: DatabaseWatermark?
    /// The write position query behind a unit of work on the primary, while its answer is owed.
    var watermarkProbe = WatermarkProbe()
    /// Messages forwarded unchanged during one read, written together: when they are the whole
    /// read, the read's own buffer goes out in one write.
    var verbatim: [ByteBuffer] = []
    var verbatimBytes = 0
    private weak var verbatimTarget: BackendConnection?

    var readHeld = false
    /// The memory budget's charge for the large message `inbound` is assembling, until it is complete.
    var inboundClaim: BudgetClaim?
    /// While `inboundClaim` is held: when the message last grew, and the check for a client that stalled.
    var stallWatch: (check: Scheduled<Void>, lastProgress: NIODeadline)?
    /// Whether the message at the front of `inbound` waits for room in the memory budget.
    var budgetWait = BudgetWait.none
    /// Charges for large messages collected in `verbatim`, given back once written to the server.
    var verbatimClaims: [BudgetClaim] = []
    /// The server whose PAUSE holds this client's next transaction (or its login), if any.
    var heldFor: String? { link.heldBy }
    /// For SHOW STATS and /metrics: when the query and transaction in flight started.
    var queryStartedAt: NIODeadline?
    var transactionStartedAt: NIODeadline?
    let connectedAt = NIODeadline.now()
    var idleTransactionTimer: Scheduled<Void>?
    var loginTimer: Scheduled<Void>?
    /// The key this client was given in BackendKeyData, which its CancelRequests carry.
    private(set) var cancelKey: CancelRequest?

    init(runtime: ProxyRuntime, shard: PoolShard, console: AdminConsole? = nil, logger: Logger) {
        self.runtime = runtime
        self.shard = shard
        self.console = console
        self.baseLogger = logger
        let machine = ClientStartupStateMachine(credentials: runtime.credentials, tlsMode: shard.configuration.clientTLS.mode,
                                                tlsServerEndPoint: runtime.clientTLSServerEndPoint)
        self.phase = .startup(NIOSingleStepByteToMessageProcessor(StartupPacketDecoder(), maximumBufferSize: Self.loginBufferLimit), machine)
        self.inbound = ClientMessageStream(maximumLength: shard.configuration.maxMessageSize)
        // Rows from the server are limited by Postgres itself (1 GB per field); we only count them.
        self.backendScanner = MessageBoundaryScanner(maximumLength: Int(Int32.max))
        self.backendScanner.capturedIDs = ClientSession.capturedBackendIDs
        self.planner = RoutePlanner(setting: shard.configuration.routing.defaultRoute)
        self.statementMap.budget = runtime.memoryBudget
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        loginTimer = context.eventLoop.assumeIsolated().scheduleTask(in: ProxyRuntime.loginTimeout) { [self] in
            if case .relaying = phase { return }
            fail(ErrorFields(severity: .fatal, code: SQLState.protocolViolation, message: "canceling authentication due to timeout"))
        }
        shard.sessionOpened(self)
    }

    /// A channel that closes before it ever became active never sees channelInactive: forget it here too.
    func handlerRemoved(context: ChannelHandlerContext) {
        shard.sessionClosed(self)
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
        if let error = error as? NIOSSLError, case .uncleanShutdown = error {
            // TLS ended without close_notify, as libpq ends it; the inputClosed that follows handles it.
            return logger.debug("client closed TLS without close_notify")
        }
        if error is NIOSSLError || error is BoringSSLError {
            logger.info("client TLS error", metadata: ["error": "\(error)"])
        } else {
            logger.info("client connection error", metadata: ["error": "\(error)"])
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let wasRelaying: Bool
        if case .relaying = phase { wasRelaying = true } else { wasRelaying = false }
        phase = .closed
        loginTimer?.cancel()
        loginTimer = nil
        idleTransactionTimer?.cancel()
        // Forget the backend first: closing it below reports back through backendClosed, which must not
        // take an ordinary client exit for a lost server.
        let link = self.link
        self.link = .none
        switch link {
        case .awaitingReplay(let timer, _): timer.cancel()
        case .leasing(let waitID): pool?.cancelWait(waitID)
        case .attached(let connection): returnOrDiscard(connection)
        case .none, .heldByPause: break
        }
        pendingClientBytes.removeAll()
        deferred.removeAll()
        // Charges go now, not when the last reference to the session does.
        pending.removeAll()
        inboundClaim = nil
        stallWatch?.check.cancel()
        stallWatch = nil
        verbatimClaims.removeAll()
        budgetWait.end()
        // Statement copies are charged until their map goes: now, whoever still holds the session.
        statementMap = StatementMap()
        if let cancelKey { runtime.cancelRegistry.unregister(cancelKey) }
        shard.sessionClosed(self)
        if wasRelaying { logger.debug("client disconnected") }
    }

    // MARK: Start-up

    func run(_ action: ClientStartupStateMachine.Action) {
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
                phase = .authenticating(
                    NIOSingleStepByteToMessageProcessor(FrameDecoder(maximumLength: 16 * 1024), maximumBufferSize: Self.loginBufferLimit), machine)
            }
            var buffer = context.channel.allocator.buffer(capacity: 64)
            request.encode(into: &buffer)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case .authenticated(let identity, let saslFinal) where identity.database == AdminCommand.databaseName:
            // Operators get in even when max_client_conn is reached: that is when they are needed.
            guard shard.configuration.adminUsers.contains(identity.user), let console else {
                logger.notice("admin console login refused", metadata: ["user": "\(identity.user)"])
                return fail(ErrorFields(severity: .fatal, code: SQLState.insufficientPrivilege,
                                        message: "user \"\(identity.user)\" may not use the admin console",
                                        hint: "Add the user to admin_users in the configuration."))
            }
            sendAuthenticationOk(saslFinal: saslFinal)
            loginTimer?.cancel()
            loginTimer = nil
            phase = .closed
            // The console takes over the connection; this handler steps aside.
            let admin = AdminSession(console: console, user: identity.user, maximumMessageSize: shard.configuration.maxMessageSize,
                                     logger: logger)
            do {
                try context.pipeline.syncOperations.addHandler(admin, position: .after(self))
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            } catch {
                fail(ErrorFields(severity: .fatal, code: SQLState.internalError, message: "could not start the admin console"))
            }
        case .authenticated(let identity, let saslFinal):
            guard runtime.admitClient() else {
                return fail(ErrorFields(severity: .fatal, code: SQLState.tooManyConnections,
                                        message: "sorry, too many clients already (max_client_conn is \(shard.configuration.maxClientConnections))"))
            }
            shard.clientAdmitted(self)
            sendAuthenticationOk(saslFinal: saslFinal)
            logIn(identity)
        case .lookUpRoleSecret(let user, let database):
            lookUpRoleSecret(user: user, database: database)
        case .failForgettingRoleSecret(let user, let database, let error):
            runtime.roleSecrets.forget(user: user, database: database, configuration: shard.configuration)
            logger.notice("client authentication failed", metadata: ["user": "\(user)"])
            fail(error)
        case .fail(let error):
            fail(error)
        case .wait:
            break
        }
    }

    /// auth_query: the lookup runs off this loop; its answer comes back here and the start-up resumes.
    func lookUpRoleSecret(user: String, database: String) {
        runtime.roleSecrets.lookUp(user: user, database: database, configuration: shard.configuration, on: context.eventLoop)
            .assumeIsolated().whenSuccess { [self] result in
                guard case .startup(let processor, var machine) = phase else { return }
                let action = machine.roleSecretLookedUp(result)
                phase = .startup(processor, machine)
                run(action)
            }
    }

    /// AuthenticationOk, after SCRAM's final server message when the exchange had one.
    func sendAuthenticationOk(saslFinal: [UInt8]?) {
        var buffer = context.channel.allocator.buffer(capacity: 64)
        if let saslFinal { AuthenticationRequest.saslFinal(data: saslFinal).encode(into: &buffer) }
        AuthenticationRequest.ok.encode(into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func logIn(_ identity: ClientIdentity) {
        self.identity = identity
        if runtime.isDraining {
            return fail(ErrorFields(severity: .fatal, code: SQLState.cannotConnectNow, message: "Switchyard is shutting down"))
        }
        phase = .loggingIn(identity)
        planner.setting = shard.configuration.users[identity.user]?.route ?? shard.configuration.routing.defaultRoute
        readFloor.level = shard.configuration.users[identity.user]?.readConsistency ?? shard.configuration.routing.readConsistency
        databaseWatermark = runtime.databaseWatermarks.watermark(for: identity.database)
        clientParameters = runtime.parameterSync.startupValues(identity.startup.parameters)
        let pool = shard.pool(for: identity, server: shard.topology.primary)
        // Every connection is in use: a login waiting for one could wait on the very transactions it
        // holds up (pgbench -C blocks a whole thread in connect). Transaction mode tells the client what
        // the last same login was told; its first transaction's server is set to match (ParameterSync).
        if runtime.poolMode == .transaction, pool.isExhausted, !shard.isPaused(pool.server.name),
           let parameters = pool.rememberedLogin(startup: identity.startup.parameters) {
            self.pool = pool
            return finishLogin(parameters: parameters, connection: nil)
        }
        lease(from: pool)
    }

    /// Leases a server from `pool`, unless PAUSE holds new work for it.
    func lease(from pool: ConnectionPool) {
        self.pool = pool
        if shard.isPaused(pool.server.name) {
            link = .heldByPause(server: pool.server.name)
            shard.hold(self)
            return
        }
        // nil: granted at once, and `link` is already the connection.
        if let waitID = pool.lease(for: self) { link = .leasing(waitID: waitID) }
    }

    /// RESUME (or a narrower PAUSE): the held login or transaction tries again.
    func pauseLifted() {
        guard case .heldByPause = link else { return }
        link = .none
        switch phase {
        case .loggingIn(let identity):
            lease(from: shard.pool(for: identity, server: shard.topology.primary))
        case .relaying:
            if !pending.isEmpty { startUnit() }
        case .startup, .authenticating, .closed:
            break
        }
    }

    func finishLogin(with connection: BackendConnection) {
        let parameters = connection.parameters.map { name, _ in (name: name, value: connection.parameterValues[name.lowercased()] ?? "") }
        if runtime.poolMode == .transaction, let identity { pool?.rememberLogin(startup: identity.startup.parameters, parameters: parameters) }
        finishLogin(parameters: parameters, connection: connection)
    }

    /// Ends the login with what the server said (`connection`), or with what an earlier same login was
    /// told when no server connection was free (transaction mode only: the key is virtual anyway).
    func finishLogin(parameters: [(name: String, value: String)], connection: BackendConnection?) {
        var buffer = context.channel.allocator.buffer(capacity: 512)
        for (name, value) in parameters {
            BackendMessage.parameterStatus(name: name, value: value, into: &buffer)
            if runtime.parameterSync.isTracked(name) { clientParameters[name.lowercased()] = value }
        }
        // Most clients of a loop log in with the same parameters: share one copy until one SETs its own.
        clientParameters = shard.shared(clientParameters)
        let secret = Int32.random(in: .min ... .max)
        // Session mode shows the real backend PID, which operators look up in pg_stat_activity.
        let pid = runtime.poolMode == .session ? connection?.cancelKey.processID ?? 0 : runtime.cancelRegistry.nextVirtualProcessID()
        let key = CancelRequest(processID: pid, secretKey: secret)
        cancelKey = key
        runtime.cancelRegistry.register(key, session: self, eventLoop: context.eventLoop)
        BackendMessage.backendKeyData(key, into: &buffer)
        BackendMessage.readyForQuery(.idle, into: &buffer)
        loginTimer?.cancel()
        loginTimer = nil
        phase = .relaying
        if runtime.poolMode == .transaction, let connection {
            link = .none
            pool!.release(connection, resetQuery: nil)
        }
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        let early = pendingClientBytes
        pendingClientBytes.removeAll()
        for bytes in early { relayFromClient(bytes) }
        backend?.flush()
        resumeHeldRead()
    }

    // MARK: Relay: client to server

    func relayFromClient(_ buffer: ByteBuffer) {
        idleTransactionTimer?.cancel()
        idleTransactionTimer = nil
        let startedAtBoundary = inbound.bufferedBytes == 0
        let wasReading = readingClient
        readingClient = true
        defer {
            flushVerbatim(wholeRead: startedAtBoundary && inbound.bufferedBytes == 0 ? buffer : nil)
            readingClient = wasReading
        }
        do {
            try inbound.process(buffer, admit: admit) { event in
                // Postgres reads nothing after Terminate.
                guard case .relaying = phase, ending.isOpen else { return }
                switch event {
                case .message(let message):
                    clientMessageReceived(message, claim: takeInboundClaim(for: message))
                case .refused(let id, let length):
                    refuseOversizedMessage(id: id, length: length)
                case .streamStart(let id, let bytes):
                    // A large message nobody needs to look into: it goes through as it arrives.
                    tracker.clientSent(id)
                    unit.mayHaveWritten = true
                    noteRequestStarted()
                    if runtime.poolMode == .transaction { sendSynthesized(statementMap.clientStartedStreaming(id)) }
                    send(bytes)
                case .streamBody(let bytes, _):
                    send(bytes)
                }
            }
        } catch {
            fail(ErrorFields(severity: .fatal, code: SQLState.protocolViolation, message: "invalid message from client: \(error)"))
        }
        watchForStall()
        if !ending.isOpen { closeIfTerminated() }
    }

    /// Whether a large message of type `id` may be streamed to the attached server unread:
    /// only when nothing waits before it and routing, retries and statement names don't need it.
    func mayStream(_ id: UInt8) -> Bool {
        guard backend != nil, pending.isEmpty, deferred.isEmpty, !unit.hold.isHolding, !watermarkProbe.isAwaiting, case .relayed = batch else { return false }
        if runtime.poolMode == .session { return id != FrontendMessageID.terminate }
        switch id {
        case FrontendMessageID.copyData: return true
        case FrontendMessageID.query, FrontendMessageID.functionCall: return unit.role == .primary
        default: return false
        }
    }

    func clientMessageReceived(_ message: WireMessage, claim: BudgetClaim? = nil) {
        if message.id == FrontendMessageID.terminate {
            ending.terminateReceived()
            return closeIfTerminated()
        }
        // On arrival, not when a deferred message is replayed: a FATAL refusal must come before anything sent after it runs.
        if refusesStatementCopy(message) { return }
        let request = ClientRequest(message, claim: claim)
        guard deferred.isEmpty else { return deferred.append(request) }
        receive(request)
    }

    /// Handles one client message, in order. Returns false for a local command that must wait for the
    /// answers ahead of it: it is then first in `deferred`.
    @discardableResult
    func receive(_ request: ClientRequest) -> Bool {
        var request = request
        let message = request.message
        if case .discardingUntilSync = batch {
            if message.id == FrontendMessageID.sync {
                batch = .relayed
                writeToClient { BackendMessage.readyForQuery(tracker.status, into: &$0) }
            }
            return true
        }
        if case .local = batch, answerLocallyInBatch(message) { return true }
        switch answerIfLocal(&request) {
        case .answered: return true
        case .deferred:
            deferred.prepend(request)
            return false
        case .relayed: noteRelayedStatement(request)
        }
        if pending.isEmpty, !link.isLeasing, !closingIdleConnections, let database = databaseDDLTarget(&request) {
            pending.append(request)
            closeIdleConnections(to: database)
            return true
        }
        if backend == nil, pending.isEmpty, !link.isLeasing, !closingIdleConnections {
            pending.append(request)
            startUnit()
            return true
        }
        if let backend, pending.isEmpty, !closingIdleConnections, mayForwardBehindProbe(&request, on: backend), canForward(&request) {
            forward(&request, to: backend)
        } else {
            pending.append(request)
            if let backend { endReplicaBatchEarlyIfBlocked(backend) }
        }
        return true
    }

    /// Routes the unit that starts with `pending.first` and leases a server for it. A replica read that
    /// must see a write no replica is known to have replayed waits for one (`mayWait`), or goes to the primary.
    func startUnit(target forced: RoutePlanner.Target? = nil, excluding excluded: String? = nil, mayWait: Bool = true) {
        guard let identity, !pending.isEmpty, !closingIdleConnections else { return }
        refreshSessionReadOnly()
        let classification = runtime.poolMode == .transaction ? routingClass(of: &pending[pending.startIndex]) : nil
        let facts = UnitPlacement.Facts(
            draining: runtime.isDraining,
            target: forced ?? classification.map(planner.target(for:)) ?? .primary,
            primaryInRecovery: shard.topology.primaryState == .inRecovery ? shard.topology.primary.name : nil,
            mayWrite: classification.map { $0.route == .primary && $0.transactionControl == nil }
                ?? (pending[pending.startIndex].id == FrontendMessageID.query))
        var placement = UnitPlacement.decide(facts) { placeRead(excluding: excluded, mayWait: mayWait) }
        while true {
            switch placement {
            case .terminate(let error): return fail(error)
            case .refuse(let error): return refusePending(error)
            case .waitForReplay(let position): return waitForReplay(position)
            case .lease(let target, let replayed):
                guard let pool = shard.pool(for: identity, target: target, excluding: excluded, replayed: replayed) else {
                    placement = UnitPlacement.noReplicaEligible(fallbackToPrimary: shard.configuration.routing.fallbackToPrimary)
                    if case .lease = placement { runtime.metrics.replicaFallbacks.increment() }
                    continue
                }
                unit = UnitOfWork(role: pool.server.role, holdsAnswer: target == .replica && tracker.status == .idle)
                return lease(from: pool)
            }
        }
    }

    /// Postgres reports default_transaction_read_only, so the client's view of it is always current.
    func refreshSessionReadOnly() {
        if let readOnly = clientParameters["default_transaction_read_only"] { planner.sessionReadOnly = readOnly == "on" }
    }

    /// The classification that routes a unit starting with `message`, if it carries or names a statement.
    func routingClass(of request: inout ClientRequest) -> StatementClassification? {
        switch request.id {
        case FrontendMessageID.query, FrontendMessageID.parse:
            return request.classification(by: shard)
        case FrontendMessageID.bind:
            guard let bind = BindMessage(request.message) else { return nil }
            return bind.statement.isEmpty ? unnamedStatementClass : statementClasses[bind.statement]
        default:
            return nil
        }
    }

    /// Whether `message` may go to the attached server, or must wait for the unit to end because
    /// it needs the primary while a replica is attached (pipelined autocommit statements).
    func canForward(_ request: inout ClientRequest) -> Bool {
        guard unit.role == .replica, !unit.explicitTransaction, runtime.poolMode == .transaction,
              let classification = routingClass(of: &request) else { return true }
        return planner.target(for: classification) == .replica
    }

    func forward(_ request: inout ClientRequest, to backend: BackendConnection) {
        let message = request.message
        tracker.clientSent(message.id)
        noteRequestStarted()
        let transactionMode = runtime.poolMode == .transaction
        let carriesSQL = message.id == FrontendMessageID.query || message.id == FrontendMessageID.parse
        // Classification matters here only on a replica (a BEGIN pins the unit there), to route a named
        // statement's later Binds, or for session effects (LISTEN, CREATE TEMP, DISCARD: a first-word
        // check); on the primary everything may run anyway.
        let needsClass = carriesSQL && (unit.role == .replica
            || ParseMessage.namesStatement(message)
            || (transactionMode && message.statementText.map(SessionEffect.mayBeginStatement) == true))
        if needsClass, let classification = request.classification(by: shard) {
            if case .begin? = classification.transactionControl { unit.explicitTransaction = true }
            planner.observe(classification)
            if let parse = ParseMessage(message) {
                if parse.statement.isEmpty { unnamedStatementClass = classification } else { statementClasses[parse.statement] = classification }
            }
            if transactionMode { noteSessionEffects(classification, on: backend) }
        } else if message.id == FrontendMessageID.close, let target = TargetMessage(message), target.kind == .statement {
            statementClasses[target.name] = nil
        }
        if unit.hold.isHolding { unit.sent.append(message) }
        guard transactionMode else { return sendVerbatim(message, to: backend, claim: request.claim) }
        if !unit.mayHaveWritten, unit.role == .primary, readFloor.tracksWrites { noteWhetherItMayWrite(&request) }
        let forwarding = statementMap.clientSent(message, server: &backend.statements, allocator: context.channel.allocator)
        sendSynthesized(forwarding.madeUpAnswers)
        if let composed = forwarding.composed { send(composed, to: backend) }
        // Rewritten instead (a named Parse), the message goes with its request; the copy is charged apart.
        if forwarding.forwardsMessage { sendVerbatim(message, to: backend, claim: request.claim) }
    }

    /// Starts the clocks of a query (and transaction) when the server had nothing in flight.
    func noteRequestStarted() {
        guard queryStartedAt == nil else { return }
        let now = NIODeadline.now()
        queryStartedAt = now
        if transactionStartedAt == nil { transactionStartedAt = now }
    }

    func sendVerbatim(_ message: WireMessage, to backend: BackendConnection, claim: BudgetClaim? = nil) {
        if verbatimTarget !== backend {
            flushVerbatim(wholeRead: nil)
            verbatimTarget?.flush()
        }
        verbatimTarget = backend
        verbatim.append(message.bytes)
        verbatimBytes += message.bytes.readableBytes
        if let claim { verbatimClaims.append(claim) }
    }

    /// Writes what `sendVerbatim` collected, as the read's own buffer when that is all of it.
    func flushVerbatim(wholeRead: ByteBuffer?) {
        guard let target = verbatimTarget, !verbatim.isEmpty else { return }
        // Counted once per write, not per message.
        pool?.traffic.bytesReceived += verbatimBytes
        // Written last, after the large messages charged: their charges go when the write is done.
        let written = verbatimClaims.isEmpty ? nil : releasingWhenWritten()
        if let wholeRead, verbatimBytes == wholeRead.readableBytes {
            target.write(wholeRead, promise: written)
        } else {
            for (index, bytes) in verbatim.enumerated() { target.write(bytes, promise: index == verbatim.count - 1 ? written : nil) }
        }
        verbatim.removeAll(keepingCapacity: true)
        verbatimBytes = 0
    }

    /// Writes bytes Switchyard composed (or streams), after anything collected before them.
    func send(_ bytes: ByteBuffer, to target: BackendConnection? = nil) {
        pool?.traffic.bytesReceived += bytes.readableBytes
        flushVerbatim(wholeRead: nil)
        (target ?? backend)?.write(bytes)
    }

    /// A message Switchyard composes for a server.
    func composed(capacity: Int = 64, _ write: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var buffer = context.channel.allocator.buffer(capacity: capacity)
        write(&buffer)
        return buffer
    }

    /// Writes made-up answers (ParseComplete, CloseComplete) to the client.
    func sendSynthesized(_ ids: [UInt8]) {
        guard !ids.isEmpty else { return }
        var buffer = context.channel.allocator.buffer(capacity: ids.count * 5)
        for id in ids { buffer.writeMessage(id: id) { _ in } }
        if unit.hold.isHolding {
            // The client now gets more than the bytes held (releasing only those would drop this made-up
            // answer, e.g. the ParseComplete of an absorbed Parse, and leave it a lone ReadyForQuery).
            unit.hold.madeUpAnswersAdded(ids)
        } else {
            context.write(wrapOutboundOut(buffer), promise: nil)
        }
    }

    /// Applies the statement map's verdict on one server message (``StatementMap/serverSent(_:error:server:)``).
    func sequence(_ id: UInt8, error: ErrorFields?) -> StatementMap.Verdict {
        guard !statementMap.isSettled, let backend else { return StatementMap.Verdict() }
        let verdict = statementMap.serverSent(id, error: error, server: &backend.statements)
        if verdict.endsFailedBatch, unit.endedEarly { unit.endedEarlyAfterError = true }
        for name in verdict.wentStale {
            logger.info("prepared statement's plan went stale after DDL; it is prepared again on next use",
                        metadata: ["server": "\(backend.server.name)", "statement": "\(name)"])
        }
        return verdict
    }

    /// Server messages whose bodies the relay reads: parameter changes, and errors (FATAL, stale plans).
    static let capturedBackendIDs = [BackendMessageID.parameterStatus, BackendMessageID.errorResponse]

    /// Sends pending messages to the attached server, up to one that must wait for another server.
    func drainPending() {
        guard let backend else { return }
        guard !closingIdleConnections else { return }
        // Behind a position query still owed, only a unit already started there goes on; the rest waits
        // for the answer (then it is handled afresh).
        guard !watermarkProbe.isAwaiting || unit.startedBehindProbe else { return }
        while !pending.isEmpty, canForward(&pending[pending.startIndex]) {
            var request = pending.removeFirst()
            forward(&request, to: backend)
        }
        if !pending.isEmpty { endReplicaBatchEarlyIfBlocked(backend) }
        // A lease granted at once, inside the client's read: the read's end writes and flushes it all.
        if !readingClient {
            flushVerbatim(wholeRead: nil)
            backend.flush()
        }
        resumeHeldRead()
        closeIfTerminated()
    }

    /// After an error in a replica's part of a pipeline (ended early), Postgres would skip the
    /// client's messages up to its Sync and answer that Sync: so does this, for the pending ones.
    func skipPendingToSync() {
        while let request = pending.popFirst() {
            if request.id == FrontendMessageID.sync {
                writeToClient { BackendMessage.readyForQuery(.idle, into: &$0) }
                return resumeHeldRead()
            }
        }
        batch = .discardingUntilSync
        resumeHeldRead()
    }

    /// Answers every pending message with `error` the way Postgres would: one error per Query, one
    /// per extended-protocol batch (the rest of which is skipped up to its Sync).
    func refusePending(_ error: ErrorFields) {
        logger.warning("refusing statement", metadata: ["error": "\(error)"])
        var skipping = false
        while let request = pending.popFirst() {
            switch request.id {
            case FrontendMessageID.query:
                writeToClient { error.encode(into: &$0); BackendMessage.readyForQuery(.idle, into: &$0) }
            case FrontendMessageID.sync:
                if !skipping { writeToClient { error.encode(into: &$0) } }
                skipping = false
                writeToClient { BackendMessage.readyForQuery(.idle, into: &$0) }
            default:
                if !skipping { writeToClient { error.encode(into: &$0) } }
                skipping = true
            }
        }
        if skipping { batch = .discardingUntilSync } else if case .discardingUntilSync = batch { batch = .relayed }
        resumeHeldRead()
        replayDeferred()
        closeIfTerminated()
    }

    func leaseSucceeded(_ connection: BackendConnection, from pool: ConnectionPool) {
        switch phase {
        case .loggingIn:
            attach(connection)
            // A new session starts from the server's defaults (what a fresh backend reported at its own
            // login, Switchyard's backends ask for nothing but user and database) with the client's
            // start-up values over them, not from what an earlier client left on this connection.
            for (name, value) in connection.parameters where runtime.parameterSync.isTracked(name) {
                let key = name.lowercased()
                if clientParameters[key] == nil { clientParameters[key] = value }
            }
            if synchronizeParameters(on: connection, completingLogin: true) {
                connection.flush()
            } else {
                finishLogin(with: connection)
            }
        case .relaying:
            attach(connection)
            synchronizeParameters(on: connection)
            drainPending()
        case .startup, .authenticating, .closed:
            pool.release(connection, resetQuery: nil)
        }
    }

    func leaseFailed(_ error: ErrorFields) {
        link = .none
        if case .relaying = phase, unit.role == .replica, unit.retries < 2, let failed = pool?.server.name {
            // Nothing was sent yet: read from another replica, or the primary.
            logger.warning("could not reach replica; reading elsewhere", metadata: ["server": "\(failed)", "error": "\(error)"])
            runtime.metrics.replicaFailureRetries.increment()
            let retries = unit.retries + 1
            startUnit(target: .replica, excluding: failed, mayWait: false)
            unit.retries = retries
            return
        }
        logger.warning("no server connection for client", metadata: ["error": "\(error)"])
        fail(ErrorFields(severity: .fatal, code: error.code, message: error.message, detail: error.detail, hint: error.hint))
    }

    func attach(_ connection: BackendConnection) {
        link = .attached(connection)
        statementMap.serverAttached()
        connection.attach(to: self)
        connection.clientWritabilityChanged(isWritable: context.channel.isWritable)
    }

    /// Sets the client's session parameters on `connection` where they differ, ahead of the client's
    /// own messages (the answer is swallowed). Returns whether a query was sent.
    @discardableResult
    func synchronizeParameters(on connection: BackendConnection, completingLogin: Bool = false) -> Bool {
        guard let query = runtime.parameterSync.synchronization(client: clientParameters, server: connection.parameterValues) else {
            return false
        }
        var buffer = context.channel.allocator.buffer(capacity: query.utf8.count + 6)
        FrontendMessage.query(query, into: &buffer)
        send(buffer, to: connection)
        parameterSyncAnswer.querySent(completingLogin: completingLogin)
        // Reported parameters are recorded from the server's own ParameterStatus answers, normalized
        // (`utf-8` comes back as `UTF8`); only the ones it never reports are recorded as sent.
        for (name, value) in clientParameters where !connection.reportedParameterNames.contains(name) {
            connection.parameterValues[name] = value
        }
        return true
    }

    /// Consumes the answers to injected synchronisation queries; returns the bytes after them, if any.
    func consumeSynchronizationAnswer(_ buffer: ByteBuffer) throws -> ByteBuffer? {
        let outcome = try parameterSyncAnswer.bytesRead(buffer) { noteParameterStatus($0, clientSeesIt: false) }
        guard case .finished(let error, let completesLogin, let rest) = outcome else { return nil }
        if let error {
            logger.warning("could not set the client's session parameters on the server", metadata: ["error": "\(error)"])
        }
        guard completesLogin, let connection = backend else { return rest }
        if let error {
            // Postgres itself would have refused these start-up parameters.
            fail(ErrorFields(severity: .fatal, code: error.code, message: error.message, detail: error.detail, hint: error.hint))
            return nil
        }
        finishLogin(with: connection)
        return rest
    }

    /// Records a ParameterStatus: the server's value, and the client's view when it is forwarded.
    func noteParameterStatus(_ body: ByteBuffer, clientSeesIt: Bool) {
        backend?.parameterStatusReceived(body)
        guard clientSeesIt, let (name, value) = BackendMessage.decodeParameterStatus(body) else { return }
        if runtime.parameterSync.isTracked(name) { clientParameters[name.lowercased()] = value }
    }

    // MARK: Relay: server to client

    func backendReceived(_ buffer: ByteBuffer) {
        pool?.traffic.bytesSent += buffer.readableBytes
        var buffer = buffer
        var forwardedUpTo = 0
        var splitAnswer = false
        let transactionMode = runtime.poolMode == .transaction
        do {
            if watermarkProbe.isAwaiting {
                guard let rest = try watermarkProbeBytesRead(buffer), rest.readableBytes > 0 else { return }
                buffer = rest
            }
            if parameterSyncAnswer.isAwaiting {
                guard let rest = try consumeSynchronizationAnswer(buffer), rest.readableBytes > 0 else { return }
                buffer = rest
            }
            if unit.hold.isHolding { return try holdResponse(buffer) }
            try backendScanner.scan(buffer) { message in
                var error: ErrorFields? = nil
                if message.id == BackendMessageID.readyForQuery {
                    tracker.backendSentReadyForQuery(message.firstBodyByte)
                    copyInProgress = false
                    queryFinished()
                } else if let body = message.body {
                    if message.id == BackendMessageID.errorResponse {
                        error = ErrorFields(decoding: body)
                    } else {
                        noteParameterStatus(body, clientSeesIt: true)
                    }
                }
                if message.id == BackendMessageID.copyInResponse { copyInProgress = true }
                let verdict = sequence(message.id, error: error)
                var forward = verdict.forward
                if message.id == BackendMessageID.errorResponse, transactionMode, tracker.awaitedReadyForQuery == 0,
                   !tracker.extendedBatchOpen, message.startedInThisBuffer, !pin.isPinned {
                    // An error after the unit's last ReadyForQuery is the server's own (it is shutting down):
                    // the client's work is done and must not be cut off for it. The server closes; the pool copes.
                    // A pinned client (LISTEN, temporary tables) owns this server connection: it is told, as
                    // it would be if connected directly.
                    logger.notice("server reported an error between transactions; not passed to the client")
                    forward = false
                }
                // A FATAL (or PANIC): the server closes next, and the client must get that error alone.
                if error?.isFatal == true, forward { serverEndedWithFatal = true }
                if !forward {
                    guard message.startedInThisBuffer else { splitAnswer = true; return }
                    writeToClient(buffer, from: forwardedUpTo, to: message.endOffset - message.length)
                    forwardedUpTo = message.endOffset
                }
                if !verdict.madeUpAfter.isEmpty {
                    writeToClient(buffer, from: forwardedUpTo, to: message.endOffset)
                    forwardedUpTo = message.endOffset
                    sendSynthesized(verdict.madeUpAfter)
                }
            }
        } catch {
            return backendProtocolViolation(error)
        }
        if splitAnswer {
            return backendProtocolViolation(ResponseSplitError())
        }
        writeToClient(buffer, from: forwardedUpTo, to: buffer.readableBytes)
    }

    /// A ReadyForQuery ended a query: count it, and start the next pipelined one's clock.
    func queryFinished() {
        guard let started = queryStartedAt, let pool else { return }
        let now = NIODeadline.now()
        let duration = now - started
        pool.traffic.recordQuery(duration)
        pool.metrics.queryDuration.recordNanoseconds(duration.nanoseconds)
        queryStartedAt = tracker.awaitedReadyForQuery > 0 ? now : nil
    }

    /// Writes bytes `from..<to` (offsets from the reader index) of a server buffer, zero-copy.
    func writeToClient(_ buffer: ByteBuffer, from start: Int, to end: Int) {
        guard end > start else { return }
        if start == 0, end == buffer.readableBytes {
            context.write(wrapOutboundOut(buffer), promise: nil)
        } else {
            context.write(wrapOutboundOut(buffer.getSlice(at: buffer.readerIndex + start, length: end - start)!), promise: nil)
        }
    }

    /// A replica's first answer in an autocommit unit is held back (``HeldAnswer``); each held message
    /// is judged here as it would be on its way through.
    func holdResponse(_ buffer: ByteBuffer) throws {
        // Taken out of `unit` for the call: the judge reads `unit` (through sequence()), which must not
        // overlap a mutation of it. The hold is this session's only reference, so appending copies nothing.
        var hold = unit.hold
        unit.hold = HeldAnswer(holding: false)
        let decision = try hold.bytesRead(buffer) { message in
            let body = message.body
            let verdict = sequence(message.id, error: message.id == BackendMessageID.errorResponse ? ErrorFields(decoding: body) : nil)
            if message.id == BackendMessageID.parameterStatus { noteParameterStatus(body, clientSeesIt: true) }
            if message.id == BackendMessageID.readyForQuery { tracker.backendSentReadyForQuery(message.firstBodyByte) }
            return HeldAnswer.Verdict(forward: verdict.forward, madeUp: verdict.madeUpAfter)
        }
        switch decision {
        case .wait:
            unit.hold = hold
        case .rerun:
            retryOnPrimary()
        case .release(let toClient, let rest):
            unit.sent.removeAll()
            if let toClient { context.write(wrapOutboundOut(toClient), promise: nil) }
            if rest.readableBytes > 0 { backendReceived(rest) }
        }
    }

    func retryOnPrimary() {
        runtime.metrics.readOnlyRetries.increment()
        logger.notice("replica refused the statement (a write, or a temporary or unlogged table); re-running it on the primary")
        restartUnit(target: .primary, excluding: nil)
    }

    /// Sends the unit's messages again, elsewhere; the client has seen none of the first answer.
    func restartUnit(target: RoutePlanner.Target, excluding excluded: String?) {
        let resend = unit.sent
        // The server may still owe answers to pipelined requests, which are re-sent too: reuse it only if not.
        let serverIsClean = tracker.awaitedReadyForQuery == 0 && !tracker.extendedBatchOpen
            && !unit.hold.hasUnjudgedBytes
        unit = UnitOfWork()
        tracker = TransactionTracker()
        // A SET still owed by the abandoned server is not owed by the next one (it gets its own).
        parameterSyncAnswer = ParameterSyncAnswer()
        statementMap.serverAbandoned()
        backendScanner = MessageBoundaryScanner(maximumLength: Int(Int32.max))
        backendScanner.capturedIDs = ClientSession.capturedBackendIDs
        if let backend {
            link = .none
            if serverIsClean { pool?.release(backend, resetQuery: nil) } else { pool?.discard(backend) }
        }
        for message in resend.reversed() { pending.prepend(ClientRequest(message)) }
        startUnit(target: target, excluding: excluded, mayWait: false)
    }

    func backendReadComplete() {
        defer { closeIfTerminated() }
        // At `read_consistency = database` the commit's ReadyForQuery waits for its write position.
        if watermarkProbe.holdsClientOutput { return }
        guard let backend, case .relaying = phase, !unit.hold.isHolding, !parameterSyncAnswer.isAwaiting, !watermarkProbe.isAwaiting,
              tracker.awaitedReadyForQuery == 0, !tracker.extendedBatchOpen, backendScanner.isAtMessageBoundary else { return context.flush() }
        if tracker.status == .idle, startWatermarkProbe(on: backend) { return }
        context.flush()
        unitEnded(on: backend)
    }

    /// The unit's last answer reached the client: the server goes back to its pool, unless the client
    /// keeps it (session mode, pinned) or is still in a transaction.
    /// `reusable` false: the server said something of its own (a shutdown's warning), so it is closed, not pooled.
    func unitEnded(on backend: BackendConnection, reusable: Bool = true) {
        if tracker.status == .idle {
            if localAnswers.hasPortals { localAnswers.forgetPortal(named: nil) }
            if let started = transactionStartedAt {
                pool?.traffic.recordTransaction(.now() - started)
                transactionStartedAt = nil
            }
            if runtime.poolMode == .transaction, !pin.isPinned {
                let skipToSync = unit.endedEarlyAfterError
                link = .none
                unit = UnitOfWork()
                if reusable { pool?.release(backend, resetQuery: nil) } else { pool?.discard(backend) }
                if skipToSync { skipPendingToSync() }
                if !pending.isEmpty { startUnit() }
            }
            replayDeferred()
            if runtime.isDraining, self.backend == nil || runtime.poolMode == .session || pin.isPinned, pending.isEmpty, deferred.isEmpty {
                fail(.switchyardShuttingDown)
            }
            return
        }
        replayDeferred()
        armIdleTransactionTimer()
    }

    /// A client that holds a server inside a transaction, with nothing owed either way, gets
    /// `idle_transaction_timeout` to send its next statement.
    func armIdleTransactionTimer() {
        guard idleTransactionTimer == nil, let timeout = shard.configuration.idleTransactionTimeout.map(TimeAmount.init),
              backend != nil, tracker.status != .idle, !serverOwesAnswers, deferred.isEmpty else { return }
        idleTransactionTimer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            logger.notice("closing client idle in transaction")
            fail(ErrorFields(severity: .fatal, code: SQLState.idleInTransactionTimeout,
                             message: "terminating connection due to idle-in-transaction timeout"))
        }
    }

    func backendWritabilityChanged(isWritable: Bool) {
        if isWritable { resumeHeldRead() }
    }

    func backendClosed(_ connection: BackendConnection) {
        guard connection === backend else { return }
        link = .none
        if watermarkProbe.isAwaiting {
            guard unit.startedBehindProbe else { return watermarkProbeLost(connection) }
            // A unit went out behind the position query: the client waits for its answers, which are lost.
            _ = watermarkProbe.abandoned()
            writePositionLost()
        }
        if unit.hold.isHolding, unit.retries < 2 {
            // Nothing of the answer reached the client yet: run it on another replica or the primary.
            logger.warning("server \"\(connection.server.name)\" failed before answering; retrying the read elsewhere")
            unit.retries += 1
            runtime.metrics.replicaFailureRetries.increment()
            let retries = unit.retries
            restartUnit(target: unit.role == .replica ? .replica : .primary, excluding: connection.server.name)
            unit.retries = retries
            return
        }
        if serverEndedWithFatal {
            // The server's own FATAL (pg_terminate_backend, a shutdown) already reached the client.
            logger.info("server closed the connection after its own FATAL error; closing the client",
                        metadata: ["server": "\(connection.server.name)"])
            context.flush()
            return close()
        }
        logger.warning("server connection lost while serving client", metadata: ["server": "\(connection.server.name)"])
        fail(ErrorFields(severity: .fatal, code: SQLState.connectionFailure,
                         message: "server connection to \"\(connection.server.name)\" was lost",
                         hint: "The transaction in progress, if any, was rolled back by the server."))
    }

    func backendProtocolViolation(_ error: Error) {
        logger.error("invalid message from server", metadata: ["error": "\(error)"])
        if let backend { pool?.discard(backend) }
        fail(ErrorFields(severity: .fatal, code: SQLState.protocolViolation, message: "invalid message from server"))
    }

    /// Called on this session's event loop when a CancelRequest carrying its key arrived.
    func cancelCurrentQuery() {
        guard let backend else { return }
        let settings = shard.settings
        runtime.cancelRegistry.sendCancel(backend.cancelKey, to: backend.server, on: context.eventLoop, connector: settings.connector,
                                          timeout: settings.connectTimeout, logger: logger)
    }

    /// This client as SHOW CLIENTS shows it.
    func snapshot(now: NIODeadline) -> ClientSnapshot {
        let state: ClientSnapshot.State
        switch phase {
        case .startup, .authenticating, .loggingIn, .closed:
            state = heldFor != nil ? .paused : .login
        case .relaying:
            switch link {
            case .heldByPause: state = .paused
            case .leasing, .awaitingReplay: state = .waiting
            case .attached: state = .active
            case .none: state = .idle
            }
        }
        return ClientSnapshot(
            id: cancelKey?.processID, user: identity?.user, database: identity?.database,
            address: context?.channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?",
            state: state, server: backend?.server.name ?? heldFor,
            applicationName: identity?.startup["application_name"], connectedFor: now - connectedAt,
            readConsistency: identity == nil ? nil : readFloor.level.rawValue, lastWrite: readFloor.lastWrite.shown)
    }

    // MARK: Helpers

    var shouldHoldClientReads: Bool {
        // Until ReadyForQuery the client has no business sending anything: don't buffer what it does.
        if case .loggingIn = phase { return true }
        guard case .relaying = phase else { return false }
        if case .waiting = budgetWait { return true }
        if link.isLeasing || !pending.isEmpty || !deferred.isEmpty { return true }
        if let backend { return !backend.isWritable }
        return false
    }

    func resumeHeldRead() {
        if readHeld, !shouldHoldClientReads {
            readHeld = false
            context.read()
        }
    }

    func writeToClient(_ write: (inout ByteBuffer) -> Void) {
        var buffer = context.channel.allocator.buffer(capacity: 128)
        write(&buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

}

/// Who answers a client's extended-protocol batch, up to its Sync.
enum ClientBatch {
    /// Its servers do.
    case relayed
    /// Switchyard answers it itself (``LocalResponder``), message by message: a local command's.
    case local
    /// A message was refused locally: the rest is dropped up to Sync, as Postgres does after an error.
    case discardingUntilSync
}

/// A server answer arrived split across reads exactly where Switchyard had to cut it.
struct ResponseSplitError: Error, CustomStringConvertible {
    var description: String { "an injected request's answer arrived split across reads" }
}

/// What the session knows about the unit of work in flight: which kind of server runs it,
/// and, for replica reads, what it needs to re-run them elsewhere.
struct UnitOfWork {
    var role: ServerRole?
    /// A BEGIN went out: the unit is a transaction and stays on its server until it ends.
    var explicitTransaction = false
    /// A replica's part of a pipeline was ended with Switchyard's own Sync (the rest needs the primary).
    var endedEarly = false
    /// ... and that part failed: the client's messages up to its own Sync are skipped, as Postgres would.
    var endedEarlyAfterError = false
    /// Messages sent so far, kept while the answer is held so the unit can be re-run.
    var sent: [WireMessage] = []
    /// The replica's answer, held until it shows success (autocommit replica reads only).
    var hold: HeldAnswer
    var retries = 0
    /// A statement not proven read-only ran: the unit's write position must be learnt (read-your-writes).
    var mayHaveWritten = false
    /// The unit went to the primary connection behind the previous unit's position query, still owed.
    var startedBehindProbe = false

    init(role: ServerRole? = nil, holdsAnswer: Bool = false) {
        self.role = role
        self.hold = HeldAnswer(holding: holdsAnswer)
    }
}
