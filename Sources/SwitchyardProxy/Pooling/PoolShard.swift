import Logging
import NIOCore
import PostgresWire

/// Everything one event loop owns: its pools and its client sessions. Clients and the backends
/// serving them share a loop, so the relay needs no locks; the price is that a client waits for
/// a backend of its own loop's share of `pool_size`.
final class PoolShard: @unchecked Sendable {
    // @unchecked: all state is touched only on `eventLoop`, asserted below.
    let eventLoop: EventLoop
    private let settings: PoolSettings
    private let logger: Logger
    private var pools: [PoolKey: ConnectionPool] = [:]
    private var sessions: [ObjectIdentifier: ClientSession] = [:]
    private var admitted: Set<ObjectIdentifier> = []
    private weak var runtime: ProxyRuntime?
    /// Replicas currently fit for reads, as last published by the health monitor.
    private(set) var eligibleReplicas: [ServerDefinition] = []
    private var classifier = StatementClassifier()
    /// Classifications by statement text: apps repeat the same few hundred statements.
    private var classifications: [ByteBuffer: StatementClassification] = [:]
    static let classificationCacheLimit = 10_000
    static let cachedStatementLength = 256

    init(eventLoop: EventLoop, settings: PoolSettings, runtime: ProxyRuntime, logger: Logger) {
        self.eventLoop = eventLoop
        self.settings = settings
        self.runtime = runtime
        self.logger = logger
    }

    func pool(for identity: ClientIdentity, server: ServerDefinition) -> ConnectionPool {
        eventLoop.assertInEventLoop()
        let key = PoolKey(server: server.name, user: identity.user, database: identity.database)
        if let pool = pools[key] { return pool }
        let credentials = BackendStartupStateMachine.Credentials(
            user: identity.serverUser, database: identity.database, password: identity.serverPassword)
        let pool = ConnectionPool(key: key, server: server, credentials: credentials, settings: settings,
                                  eventLoop: eventLoop, logger: logger)
        pools[key] = pool
        return pool
    }

    /// Picks the pool for `target`: the primary, or the eligible replica with the fewest
    /// outstanding requests per unit of weight. Nil when a replica is wanted and none is eligible.
    func pool(for identity: ClientIdentity, target: RoutePlanner.Target, excluding excluded: String? = nil) -> ConnectionPool? {
        guard let runtime else { return nil }
        switch target {
        case .primary:
            return pool(for: identity, server: runtime.configuration.primary)
        case .replica:
            var best: (pool: ConnectionPool, load: Double)?
            for replica in eligibleReplicas where replica.name != excluded {
                let candidate = pool(for: identity, server: replica)
                let load = Double(candidate.leasedCount + candidate.waiterCount + 1) / Double(replica.weight)
                if best == nil || load < best!.load { best = (candidate, load) }
            }
            return best?.pool
        }
    }

    /// Classifies statement text, from the cache when it was seen before.
    func classify(_ sql: ByteBuffer) -> StatementClassification {
        // Short statements classify faster than a hash, copy and insert would cost (and often carry
        // literals that never repeat): only long ones are worth remembering.
        guard sql.readableBytes >= Self.cachedStatementLength else {
            return sql.withUnsafeReadableBytes { classifier.classify($0) }
        }
        if let known = classifications[sql] { return known }
        let classification = sql.withUnsafeReadableBytes { classifier.classify($0) }
        if classifications.count >= Self.classificationCacheLimit { classifications.removeAll(keepingCapacity: true) }
        // Copy the key: a slice would pin the whole receive buffer it came from.
        classifications[ByteBuffer(bytes: sql.readableBytesView)] = classification
        return classification
    }

    /// Installs a classifier built from the primary's pg_proc; cached answers may be stale, so drop them.
    func updateClassifier(_ classifier: StatementClassifier) {
        eventLoop.assertInEventLoop()
        self.classifier = classifier
        classifications.removeAll()
    }

    func updateEligibleReplicas(_ replicas: [ServerDefinition]) {
        eventLoop.assertInEventLoop()
        eligibleReplicas = replicas
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
    }

    var sessionCount: Int { sessions.count }

    func closeIdleSessions() {
        for session in sessions.values { session.closeIfIdle() }
    }

    func closeAllSessions() {
        for session in sessions.values { session.forceClose() }
        for pool in pools.values { pool.shutdown() }
    }
}
