import Logging
import NIOCore

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
