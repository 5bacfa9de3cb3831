import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresWire

/// Which backend connections a client may share: the same server, logged in as the same user
/// to the same database.
struct PoolKey: Hashable, Sendable {
    var server: String
    var user: String
    var database: String
}

/// Someone waiting for a backend: a client session. A protocol rather than a closure so
/// leasing, which happens once per transaction, allocates nothing.
protocol PoolWaiter: AnyObject {
    func leaseSucceeded(_ connection: BackendConnection, from pool: ConnectionPool)
    func leaseFailed(_ error: ErrorFields)
}

/// Told when a pool's work ends (a lease returned or lost, a queued client gone), so operations
/// waiting for quiet need not poll. The loop's shard; held weakly.
protocol PoolActivityObserver: AnyObject {
    func poolWorkEnded()
}

/// Settings every pool of a loop shares; RELOAD replaces them.
struct PoolSettings: Sendable {
    var maximumConnectionsPerLoop: Int
    var connectTimeout: TimeAmount
    var queryWaitTimeout: TimeAmount?
    var serverIdleTimeout: TimeAmount?
    var tlsPolicy: BackendStartupStateMachine.TLSPolicy
    var tlsContext: NIOSSLContext?
    var saltedPasswordCache: SaltedPasswordCache
    /// How a server connection's transport is opened: TCP, or an in-memory channel in the relay's tests.
    var connector = ServerConnector.tcp
}

/// Opens the transport to a server with `handler` on it (a ``BackendConnection``, or a cancel request's
/// sender), and fails the future when it cannot. A seam so the relay can be tested with scripted servers
/// on `EmbeddedChannel`s, no sockets.
struct ServerConnector: Sendable {
    var connect: @Sendable (_ server: ServerDefinition, _ handler: any ChannelHandler, _ eventLoop: EventLoop,
                            _ timeout: TimeAmount) -> EventLoopFuture<Void>

    static let tcp = ServerConnector { server, handler, eventLoop, timeout in
        let handler = NIOLoopBound(handler, eventLoop: eventLoop)
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler.value) }
            }
            .connect(host: server.host, port: server.port)
            .map { _ in }
    }
}

/// Performs a ``PoolStateMachine``'s actions for one ``PoolKey`` on one event loop: it opens
/// connections, hands them to waiters, runs timers. Confined to its event loop, so no locks.
final class ConnectionPool {
    let key: PoolKey
    let server: ServerDefinition
    let eventLoop: EventLoop
    private var settings: PoolSettings
    private var credentials: BackendStartupStateMachine.Credentials
    private let logger: Logger
    private var machine: PoolStateMachine
    private var connections: [Int: BackendConnection] = [:]
    private var waiters: [Int: (waiter: PoolWaiter, timeout: Scheduled<Void>?, since: NIODeadline)] = [:]
    private var nextWaiterID = 0
    /// Why the latest connection attempt failed, told to the waiter that loses out.
    private var lastConnectError: ErrorFields?
    private var idleSweep: RepeatedTask?
    /// Removed or changed by RELOAD: connections close as they come back instead of being reused.
    private var isRetired = false
    /// What logins with these start-up parameters were told (ParameterStatus names and values, in order),
    /// so a transaction-mode login need not wait for a server connection when all are in use.
    private var logins: [String: [(name: String, value: String)]] = [:]
    private static let loginCacheLimit = 64
    /// What this pool's clients did (SHOW STATS, /metrics), and how much of it /metrics has seen.
    var traffic = PoolTraffic()
    private var publishedTraffic = PoolTraffic()
    let metrics: ServerMetrics
    weak var activityObserver: PoolActivityObserver?

    init(key: PoolKey, server: ServerDefinition, credentials: BackendStartupStateMachine.Credentials,
         settings: PoolSettings, metrics: ServerMetrics, eventLoop: EventLoop, logger: Logger) {
        self.key = key
        self.server = server
        self.credentials = credentials
        self.settings = settings
        self.metrics = metrics
        self.eventLoop = eventLoop
        self.logger = logger
        self.machine = PoolStateMachine(maximumConnections: settings.maximumConnectionsPerLoop)
        scheduleIdleSweep()
    }

    var idleCount: Int { machine.idleCount }
    /// A lease now would queue behind every connection in use: none idle and no room to open one.
    var isExhausted: Bool { machine.idleCount == 0 && machine.leasedCount + machine.connectingCount >= machine.maximumConnections }
    var leasedCount: Int { machine.leasedCount }
    var waiterCount: Int { machine.waiterCount }
    var connectingCount: Int { machine.connectingCount }

    /// Records what a login with `startup` parameters was told by a server of this pool.
    func rememberLogin(startup: [(String, String)], parameters: [(name: String, value: String)]) {
        if logins.count >= Self.loginCacheLimit { logins.removeAll(keepingCapacity: true) }
        logins[Self.loginKey(startup)] = parameters
    }

    /// What the last login with `startup` parameters was told, if one was.
    func rememberedLogin(startup: [(String, String)]) -> [(name: String, value: String)]? {
        logins[Self.loginKey(startup)]
    }

    private static func loginKey(_ startup: [(String, String)]) -> String {
        startup.map { "\($0.0)\u{0}\($0.1)" }.joined(separator: "\u{0}\u{0}")
    }

    /// How long the longest-waiting client has waited.
    func longestWait(now: NIODeadline) -> TimeAmount {
        waiters.values.map { now - $0.since }.max() ?? .zero
    }

    /// auth_query roles: a client authenticated against a newer secret than the one this pool logs
    /// in with (the password changed), so new connections use that one.
    func adoptPassThrough(_ passThrough: PassThroughCredential) {
        if let current = credentials.passThrough, current.fetchedAt >= passThrough.fetchedAt { return }
        credentials.passThrough = passThrough
    }

    /// Takes new settings (RELOAD): a changed share of pool_size applies at once.
    func update(_ settings: PoolSettings) {
        eventLoop.assertInEventLoop()
        let idleTimeoutChanged = settings.serverIdleTimeout != self.settings.serverIdleTimeout
        self.settings = settings
        if idleTimeoutChanged { scheduleIdleSweep() }
        guard settings.maximumConnectionsPerLoop != machine.maximumConnections else { return }
        for action in machine.resized(to: settings.maximumConnectionsPerLoop, now: .now) { run(action) }
    }

    /// Takes the pool out of service (its server was removed or changed by RELOAD): idle
    /// connections close now, leased ones when their transaction ends.
    func retire() {
        eventLoop.assertInEventLoop()
        isRetired = true
        idleSweep?.cancel()
        closeIdleConnections()
        publishMetrics()
    }

    /// Closes every connection, leased ones too (KILL); returns how many.
    func closeAllConnections() -> Int {
        let all = Array(connections.values)
        for connection in all { connection.close() }
        return all.count
    }

    /// Adds what was counted since the last scrape to the Prometheus counters.
    func publishMetrics() {
        metrics.publish(traffic, since: publishedTraffic)
        publishedTraffic = traffic
    }

    private func scheduleIdleSweep() {
        idleSweep?.cancel()
        idleSweep = nil
        guard let idleTimeout = settings.serverIdleTimeout else { return }
        let interval = TimeAmount.nanoseconds(max(idleTimeout.nanoseconds / 4, TimeAmount.milliseconds(100).nanoseconds))
        idleSweep = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
            self?.closeIdleConnections(unusedFor: idleTimeout)
        }
    }

    /// Asks for a connection. The waiter hears back exactly once, possibly before this returns
    /// (then the result is nil); otherwise the result is an ID to cancel the wait with.
    func lease(for waiter: PoolWaiter) -> Int? {
        eventLoop.assertInEventLoop()
        let id = nextWaiterID
        nextWaiterID += 1
        let action = machine.leaseRequested(by: id)
        if case .lease(let connection, _) = action {
            waiter.leaseSucceeded(connections[connection]!, from: self)
            return nil
        }
        let timeout: Scheduled<Void>? = settings.queryWaitTimeout.map { wait in
            eventLoop.assumeIsolated().scheduleTask(in: wait) { [weak self] in self?.waiterTimedOut(id) }
        }
        waiters[id] = (waiter, timeout, .now())
        run(action)
        return id
    }

    func cancelWait(_ id: Int) {
        guard let entry = waiters.removeValue(forKey: id) else { return }
        entry.timeout?.cancel()
        machine.waiterCancelled(id)
        activityObserver?.poolWorkEnded()
    }

    /// Takes a connection back. `resetQuery` runs first, for session pooling.
    func release(_ connection: BackendConnection, resetQuery: String?) {
        eventLoop.assertInEventLoop()
        connection.detach()
        if isRetired { return discard(connection) }
        guard let resetQuery else { return connectionReleased(connection) }
        connection.reset(with: resetQuery).whenComplete { [self] result in
            switch result {
            case .success: connectionReleased(connection)
            case .failure(let error):
                logger.warning("discarding server connection after failed reset", metadata: ["server": "\(server.name)", "error": "\(error)"])
                discard(connection)
            }
        }
    }

    private func connectionReleased(_ connection: BackendConnection) {
        run(machine.connectionReleased(connection.id, now: .now))
        activityObserver?.poolWorkEnded()
    }

    /// Closes a connection that must not be reused (its client left mid-transaction, say).
    func discard(_ connection: BackendConnection) {
        connection.close()
    }

    /// Closes every idle connection (shutdown, KILL, database DDL); returns how many.
    @discardableResult
    func closeIdleConnections() -> Int {
        let idle = machine.drainIdleConnections()
        for id in idle { connections[id]?.close() }
        return idle.count
    }

    func shutdown() {
        idleSweep?.cancel()
        closeIdleConnections()
        for (id, entry) in waiters {
            entry.timeout?.cancel()
            machine.waiterCancelled(id)
            entry.waiter.leaseFailed(ErrorFields(severity: .fatal, code: SQLState.adminShutdown, message: "Switchyard is shutting down"))
        }
        waiters.removeAll()
    }

    private func closeIdleConnections(unusedFor timeout: TimeAmount) {
        let deadline = ContinuousClock.now - .nanoseconds(timeout.nanoseconds)
        for id in machine.expireIdleConnections(idleSince: deadline) {
            logger.debug("closing idle server connection", metadata: ["server": "\(server.name)"])
            connections[id]?.close()
        }
    }

    private func waiterTimedOut(_ id: Int) {
        run(machine.waiterTimedOut(id), timedOut: true)
    }

    private func run(_ action: PoolStateMachine.Action, timedOut: Bool = false) {
        switch action {
        case .none:
            break
        case .createConnection(let id):
            connect(id)
        case .lease(let connectionID, let waiterID):
            guard let entry = waiters.removeValue(forKey: waiterID), let connection = connections[connectionID] else { return }
            entry.timeout?.cancel()
            let waited = NIODeadline.now() - entry.since
            traffic.recordWait(waited)
            metrics.poolWait.recordNanoseconds(waited.nanoseconds)
            entry.waiter.leaseSucceeded(connection, from: self)
        case .failWaiter(let waiterID):
            guard let entry = waiters.removeValue(forKey: waiterID) else { return }
            entry.timeout?.cancel()
            let error: ErrorFields
            if timedOut {
                error = ErrorFields(severity: .fatal, code: SQLState.tooManyConnections,
                                    message: "query_wait_timeout: no connection to server \"\(server.name)\" became free in time",
                                    hint: "Raise pool_size or query_wait_timeout, or look for long transactions.")
            } else {
                error = lastConnectError ?? ErrorFields(severity: .fatal, code: SQLState.sqlclientUnableToEstablishConnection,
                                                        message: "could not connect to server \"\(server.name)\"")
            }
            entry.waiter.leaseFailed(error)
            activityObserver?.poolWorkEnded()
        case .closeConnection(let id):
            connections[id]?.close()
        }
    }

    private func connect(_ id: Int) {
        let ready = eventLoop.makePromise(of: Void.self)
        let startup = BackendStartupStateMachine(credentials: credentials, tlsPolicy: settings.tlsPolicy,
                                                 saltedPasswordCache: settings.saltedPasswordCache)
        let handler = BackendConnection(id: id, server: server, startup: startup, tlsContext: settings.tlsContext,
                                        ready: ready, logger: logger)
        connections[id] = handler
        let server = self.server
        settings.connector.connect(server, handler, eventLoop, settings.connectTimeout)
            .whenFailure { error in
                ready.fail(ErrorFields(severity: .fatal, code: SQLState.sqlclientUnableToEstablishConnection,
                                       message: "could not connect to server \"\(server.name)\" at \(server.host):\(server.port): \(error)"))
            }
        let loginTimeout = eventLoop.scheduleTask(in: settings.connectTimeout) {
            ready.fail(ErrorFields(severity: .fatal, code: SQLState.sqlclientUnableToEstablishConnection,
                                   message: "timed out logging in to server \"\(server.name)\""))
            handler.close()
        }
        ready.futureResult.whenComplete { [self] result in
            loginTimeout.cancel()
            switch result {
            case .success:
                lastConnectError = nil
                handler.onClose = { [weak self] connection in self?.connectionClosed(connection.id) }
                run(machine.connectionEstablished(id, now: .now))
            case .failure(let error):
                let fields = error as? ErrorFields ?? ErrorFields(severity: .fatal, code: SQLState.connectionFailure, message: "\(error)")
                logger.warning("could not open server connection", metadata: ["server": "\(server.name)", "user": "\(key.user)",
                                                                               "database": "\(key.database)", "error": "\(fields)"])
                lastConnectError = fields
                connections[id] = nil
                handler.close()
                for action in machine.connectionFailed(id) { run(action) }
            }
        }
    }

    private func connectionClosed(_ id: Int) {
        guard connections.removeValue(forKey: id) != nil else { return }
        run(machine.connectionClosed(id))
        activityObserver?.poolWorkEnded()
    }
}
