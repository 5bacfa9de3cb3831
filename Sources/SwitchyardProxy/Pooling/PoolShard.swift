import Logging
import NIOCore
import PostgresWire

/// Everything one event loop owns: its pools and its client sessions. Clients and the backends
/// serving them share a loop, so the relay needs no locks; the price is that a client waits for
/// a backend of its own loop's share of `pool_size`.
final class PoolShard: PoolActivityObserver, @unchecked Sendable {
    // @unchecked: all state is touched only on `eventLoop`, asserted below.
    let eventLoop: EventLoop
    /// This loop's copy of the configuration in force: sessions read it without a lock; RELOAD replaces it.
    private(set) var configuration: ProxyConfiguration
    /// This loop's copy of the servers and roles in force (see ``Topology``).
    private(set) var topology: Topology
    private(set) var settings: PoolSettings
    private let logger: Logger
    private var pools: [PoolKey: ConnectionPool] = [:]
    private var sessions: [ObjectIdentifier: ClientSession] = [:]
    private var admitted: Set<ObjectIdentifier> = []
    private weak var runtime: ProxyRuntime?
    /// Replicas currently fit for reads, as last published by the health monitor.
    private(set) var eligibleReplicas: [ServerDefinition] = []
    /// Replicas' replay positions, as this loop's ``ReplayPositionProbe`` last saw them (highest so far).
    private(set) var replayPositions: [String: LSN] = [:]
    /// Sessions whose next read waits for a replica to replay a position (read-your-writes).
    private var replayWaiters: [(session: ClientSession, position: LSN)] = []
    private let replayProbe: ReplayPositionProbe
    private var replayRoundScheduled = false
    /// While reads wait for a lagging replica, rounds are this far apart (bounded load on the replicas).
    static let replayRoundSpacing: TimeAmount = .microseconds(500)
    private var classifier = StatementClassifier()
    /// Classifications by statement text: apps repeat the same few hundred statements.
    private var classifications: [ByteBuffer: StatementClassification] = [:]
    /// Hashes of statements seen once, not yet worth a copy in `classifications`.
    private var sightedOnce: Set<Int> = []
    /// Longer statement text is not classified (``classify(_:)``).
    static let classificationLimit = 1 << 20
    static let classificationCacheLimit = 10_000
    /// Distinct client parameter sets kept for sharing (see ``shared(_:)``).
    private var sharedParameters: Set<[String: String]> = []
    static let sharedParameterSetLimit = 256

    /// What PAUSE holds, and the sessions it holds (in arrival order, released in that order).
    private(set) var pause = PauseScope()
    private var held: [ClientSession] = []
    /// PAUSE waiting for the work it covers to end on this loop.
    private var quietWaits = QuietWaits<EventLoopPromise<QuietWaitOutcome>>()

    private let metrics: ProxyMetrics

    init(eventLoop: EventLoop, configuration: ProxyConfiguration, settings: PoolSettings, runtime: ProxyRuntime, logger: Logger) {
        self.eventLoop = eventLoop
        self.metrics = runtime.metrics
        self.configuration = configuration
        self.topology = runtime.topology
        self.settings = settings
        self.runtime = runtime
        self.logger = logger
        self.replayProbe = ReplayPositionProbe(eventLoop: eventLoop, logger: logger)
        replayProbe.positionReported = { [unowned self] name, position in
            if replayPositions[name].map({ $0 < position }) ?? true { replayPositions[name] = position }
        }
        replayProbe.roundEnded = { [unowned self] in replayRoundEnded() }
    }

    func pool(for identity: ClientIdentity, server: ServerDefinition) -> ConnectionPool {
        eventLoop.assertInEventLoop()
        let key = PoolKey(server: server.name, user: identity.user, database: identity.database)
        if let pool = pools[key] {
            if let passThrough = identity.serverPassThrough { pool.adoptPassThrough(passThrough) }
            return pool
        }
        let credentials = BackendStartupStateMachine.Credentials(
            user: identity.serverUser, database: identity.database, password: identity.serverPassword,
            passThrough: identity.serverPassThrough)
        let pool = ConnectionPool(key: key, server: server, credentials: credentials, settings: settings,
                                  metrics: metrics.server(server), eventLoop: eventLoop, logger: logger)
        pool.activityObserver = self
        pools[key] = pool
        return pool
    }

    /// Picks the pool for `target`: the primary, or the eligible replica with the fewest
    /// outstanding requests per unit of weight, among those known to have replayed `replayed`.
    /// Nil when a replica is wanted and none qualifies.
    func pool(for identity: ClientIdentity, target: RoutePlanner.Target, excluding excluded: String? = nil,
              replayed: LSN? = nil) -> ConnectionPool? {
        switch target {
        case .primary:
            return pool(for: identity, server: topology.primary)
        case .replica:
            var best: (pool: ConnectionPool, load: Double)?
            for replica in eligibleReplicas where replica.name != excluded && hasReplayed(replica.name, replayed) {
                let candidate = pool(for: identity, server: replica)
                let load = Double(candidate.leasedCount + candidate.waiterCount + 1) / Double(replica.weight)
                if best == nil || load < best!.load { best = (candidate, load) }
            }
            return best?.pool
        }
    }

    /// Classifies statement text, from the cache when it was seen before.
    func classify(_ sql: ByteBuffer) -> StatementClassification {
        // Lexing 300 MB would stall every client on this loop for a second: such a statement runs on the
        // primary and, unless the first-word check rules out session state in it, keeps the session there.
        guard sql.readableBytes <= Self.classificationLimit else {
            return StatementClassification(route: .primary, statementCount: 1, pinsServerConnection: SessionEffect.mayBeginStatement(sql))
        }
        if let known = classifications[sql] { return known }
        let classification = sql.withUnsafeReadableBytes { classifier.classify($0) }
        // Admitted on its second sighting: text whose literals never repeat (pgbench -M simple, say)
        // costs a hash here, never a copy and an insert.
        guard !sightedOnce.insert(sql.hashValue).inserted else {
            if sightedOnce.count >= Self.classificationCacheLimit * 4 { sightedOnce.removeAll(keepingCapacity: true) }
            return classification
        }
        if classifications.count >= Self.classificationCacheLimit { classifications.removeAll(keepingCapacity: true) }
        // Copy the key: a slice would pin the whole receive buffer it came from.
        classifications[ByteBuffer(bytes: sql.readableBytesView)] = classification
        return classification
    }

    /// An equal parameter set already held on this loop, or this one, kept for the next login: idle
    /// clients then share one dictionary (copied on write when a client changes a parameter).
    func shared(_ parameters: [String: String]) -> [String: String] {
        if let known = sharedParameters.firstIndex(of: parameters) { return sharedParameters[known] }
        if sharedParameters.count >= Self.sharedParameterSetLimit { sharedParameters.removeAll(keepingCapacity: true) }
        sharedParameters.insert(parameters)
        return parameters
    }

    /// Installs a classifier built from the primary's pg_proc; cached answers may be stale, so drop them.
    func updateClassifier(_ classifier: StatementClassifier) {
        eventLoop.assertInEventLoop()
        self.classifier = classifier
        classifications.removeAll()
        sightedOnce.removeAll()
    }

    func updateEligibleReplicas(_ replicas: [ServerDefinition]) {
        eventLoop.assertInEventLoop()
        eligibleReplicas = replicas
    }

    // MARK: Read-your-writes

    private func hasReplayed(_ replica: String, _ position: LSN?) -> Bool {
        guard let position else { return true }
        return replayPositions[replica]?.covers(insertPosition: position) == true
    }

    /// Whether an eligible replica other than `excluded` is known to have replayed `position`.
    func hasReplicaReplayed(_ position: LSN, excluding excluded: String? = nil) -> Bool {
        eligibleReplicas.contains { $0.name != excluded && hasReplayed($0.name, position) }
    }

    /// Keeps `session` until a replica reports replaying `position` (it times out on its own).
    func awaitReplay(_ session: ClientSession, position: LSN) {
        eventLoop.assertInEventLoop()
        replayWaiters.append((session, position))
        requestReplayRound()
    }

    func stopAwaitingReplay(_ session: ClientSession) {
        replayWaiters.removeAll { $0.session === session }
    }

    private func requestReplayRound() {
        let user = configuration.routing.healthCheckUser.flatMap { configuration.users[$0] }
        replayProbe.requestRound(replicas: eligibleReplicas, user: user, configuration: configuration)
    }

    /// A probe round ended: waiting reads whose position a replica covers go on; the others wait for
    /// another round (at once if one was asked for meanwhile, else after `replayRoundSpacing`).
    private func replayRoundEnded() {
        var ready: [ClientSession] = []
        replayWaiters.removeAll { waiter in
            guard hasReplicaReplayed(waiter.position) else { return false }
            ready.append(waiter.session)
            return true
        }
        if replayProbe.roundRequested {
            requestReplayRound()
        } else if !replayWaiters.isEmpty, !replayRoundScheduled {
            replayRoundScheduled = true
            eventLoop.assumeIsolated().scheduleTask(in: Self.replayRoundSpacing) { [self] in
                replayRoundScheduled = false
                if !replayWaiters.isEmpty { requestReplayRound() }
            }
        }
        for session in ready { session.replicaCaughtUp() }
    }

    func sessionOpened(_ session: ClientSession) {
        sessions[ObjectIdentifier(session)] = session
    }

    func clientAdmitted(_ session: ClientSession) {
        admitted.insert(ObjectIdentifier(session))
    }

    func sessionClosed(_ session: ClientSession) {
        let id = ObjectIdentifier(session)
        sessions[id] = nil
        if admitted.remove(id) != nil { runtime?.clientLeft() }
        held.removeAll { $0 === session }
        stopAwaitingReplay(session)
    }

    var sessionCount: Int { sessions.count }

    // MARK: PAUSE and RESUME

    /// Whether new transactions to `server` must wait.
    func isPaused(_ server: String) -> Bool { pause.covers(server) }

    /// Keeps `session` until RESUME lifts the pause on what it wants.
    func hold(_ session: ClientSession) {
        eventLoop.assertInEventLoop()
        if !held.contains(where: { $0 === session }) { held.append(session) }
    }

    func setPause(_ scope: PauseScope) {
        eventLoop.assertInEventLoop()
        pause = scope
        // Sessions retry in arrival order; one that still wants a paused server comes back to `held`.
        let waiting = held
        held.removeAll()
        for promise in quietWaits.pauseChanged(to: scope) { promise.succeed(.withdrawn) }
        for session in waiting { session.pauseLifted() }
    }

    /// Connections running work on servers `scope` covers, and clients queued for one (they got in
    /// before the pause, so they run): PAUSE waits for these to finish.
    func busyConnections(in scope: PauseScope) -> Int {
        eventLoop.assertInEventLoop()
        return pools.values.reduce(0) { $0 + (scope.covers($1.server.name) ? $1.leasedCount + $1.waiterCount : 0) }
    }

    /// Completes when nothing on this loop runs for `scope` (pushed by the pools as work ends, no
    /// polling), when the pause is withdrawn, or at `deadline`.
    func whenQuiet(_ scope: PauseScope, deadline: NIODeadline) -> EventLoopFuture<QuietWaitOutcome> {
        eventLoop.assertInEventLoop()
        guard busyConnections(in: scope) > 0 else { return eventLoop.makeSucceededFuture(.quiet) }
        let promise = eventLoop.makePromise(of: QuietWaitOutcome.self)
        let id = quietWaits.add(scope, promise)
        let timer = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            guard let wait = quietWaits.deadlinePassed(id) else { return }
            wait.waiter.succeed(.timedOut(busy: busyConnections(in: wait.scope)))
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        return promise.futureResult
    }

    /// A pool's lease ended or a queued client left: PAUSE may be waiting for that.
    func poolWorkEnded() {
        guard !quietWaits.isEmpty else { return }
        for promise in quietWaits.workEnded(busy: busyConnections(in:)) { promise.succeed(.quiet) }
    }

    // MARK: Operator actions and snapshots

    /// Database DDL: closes the idle connections to `database` on every server; returns how many.
    func closeIdleConnections(database: String) -> Int {
        eventLoop.assertInEventLoop()
        return pools.reduce(0) { $0 + ($1.key.database == database ? $1.value.closeIdleConnections() : 0) }
    }

    /// KILL: closes every connection to `server`, busy ones too; returns how many.
    func closeConnections(to server: String) -> Int {
        eventLoop.assertInEventLoop()
        return pools.values.reduce(0) { $0 + ($1.server.name == server ? $1.closeAllConnections() : 0) }
    }

    /// RELOAD: takes the new configuration. Pools of removed or changed servers retire (their
    /// transactions finish, then their connections close); the others take the new pool size.
    func apply(_ configuration: ProxyConfiguration, settings: PoolSettings, topology: Topology) {
        eventLoop.assertInEventLoop()
        self.configuration = configuration
        self.settings = settings
        topologyChanged(topology)
        for pool in pools.values { pool.update(settings) }
    }

    /// A new topology (reload, a role change, the primary's state): pools of servers that are gone or
    /// changed, their role included, retire (their transactions finish, then their connections close);
    /// the next lease opens a pool for the server as it is now.
    func topologyChanged(_ topology: Topology) {
        eventLoop.assertInEventLoop()
        self.topology = topology
        let servers = Dictionary(topology.servers.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for (key, pool) in pools where servers[key.server] != pool.server {
            pools[key] = nil
            pool.retire()
        }
        eligibleReplicas.removeAll { servers[$0.name] != $0 }
    }

    func snapshot(now: NIODeadline) -> ShardSnapshot {
        eventLoop.assertInEventLoop()
        var pausedByServer: [String: Int] = [:]
        for session in held { if let server = session.heldFor { pausedByServer[server, default: 0] += 1 } }
        let pools = pools.values.map { pool in
            PoolSnapshot(key: pool.key, role: pool.server.role, leased: pool.leasedCount, idle: pool.idleCount,
                         connecting: pool.connectingCount, waiting: pool.waiterCount,
                         paused: pausedByServer[pool.server.name] ?? 0, longestWait: pool.longestWait(now: now),
                         traffic: pool.traffic)
        }
        return ShardSnapshot(pools: pools, clients: sessions.values.map { $0.snapshot(now: now) })
    }

    /// Adds each pool's counts since the last scrape to the Prometheus counters.
    func publishMetrics() {
        eventLoop.assertInEventLoop()
        for pool in pools.values { pool.publishMetrics() }
    }

    func closeIdleSessions() {
        for session in sessions.values { session.closeIfIdle() }
    }

    func closeAllSessions() {
        replayProbe.shutDown()
        for session in sessions.values { session.forceClose() }
        for pool in pools.values { pool.shutdown() }
    }
}

/// One pool's state, as SHOW POOLS and /metrics see it.
struct PoolSnapshot: Sendable {
    var key: PoolKey
    var role: ServerRole
    var leased, idle, connecting, waiting, paused: Int
    var longestWait: TimeAmount
    var traffic: PoolTraffic
}

/// One client connection, as SHOW CLIENTS sees it.
struct ClientSnapshot: Sendable {
    enum State: String, Sendable, CaseIterable { case login, idle, active, waiting, paused }
    var id: Int32?
    var user: String?
    var database: String?
    var address: String
    var state: State
    var server: String?
    var applicationName: String?
    var connectedFor: TimeAmount
    /// Read-your-writes: the client's level, and its last write's position ("unknown" when a probe failed).
    var readConsistency: String? = nil
    var lastWrite: String? = nil
}

/// Everything one event loop reports to the admin console and the metrics endpoint.
struct ShardSnapshot: Sendable {
    var pools: [PoolSnapshot]
    var clients: [ClientSnapshot]
}
