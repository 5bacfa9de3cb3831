import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import Synchronization

/// Probes the servers on `health_check_interval` over connections of its own: the primary's WAL
/// position and function catalog (pg_proc volatility, for the classifier), and each replica's
/// recovery state and replay position. It publishes the replicas fit for reads to every loop.
final class ReplicaMonitor: Sendable {
    struct ServerStatus: Sendable {
        var server: ServerDefinition
        var health: ReplicaHealth?
        var lastError: String?
        /// Whether a probe has reached (or failed to reach) the server yet.
        var probed = false
    }

    private let runtime: ProxyRuntime
    private let eventLoop: EventLoop
    private let logger: Logger
    private let status: Mutex<[String: ServerStatus]>
    /// How often the function catalog is reloaded, in probe rounds.
    static let catalogRefreshRounds = 60

    init(runtime: ProxyRuntime, eventLoop: EventLoop, logger: Logger) {
        self.runtime = runtime
        self.eventLoop = eventLoop
        self.logger = logger
        status = Mutex(Self.statuses(for: runtime.configuration, servers: runtime.topology.servers, keeping: [:]))
    }

    private static func statuses(for configuration: ProxyConfiguration, servers: [ServerDefinition],
                                 keeping old: [String: ServerStatus]) -> [String: ServerStatus] {
        let routing = configuration.routing
        var statuses: [String: ServerStatus] = [:]
        for server in servers {
            if let known = old[server.name], known.server == server {
                statuses[server.name] = known
                continue
            }
            let health = server.role == .replica
                ? ReplicaHealth(maxLagBytes: routing.maxLagBytes, maxLagSeconds: routing.maxLagSeconds, hysteresis: routing.healthCheckHysteresis)
                : nil
            statuses[server.name] = ServerStatus(server: server, health: health)
        }
        return statuses
    }

    /// A snapshot for operators (SHOW SERVERS, metrics).
    var snapshot: [String: ServerStatus] { status.withLock { $0 } }

    /// RELOAD: added servers start unprobed (replicas get reads after passing the health checks),
    /// removed ones are forgotten, unchanged ones keep their state.
    func reconfigure(_ configuration: ProxyConfiguration) {
        let servers = runtime.topology.servers
        status.withLock { $0 = Self.statuses(for: configuration, servers: servers, keeping: $0) }
        publish()
    }

    /// Probes until the task is cancelled.
    func run() async {
        guard let userName = runtime.configuration.routing.healthCheckUser, let user = runtime.configuration.users[userName] else {
            logger.info("no health_check_user configured: replicas get no reads, and volatility comes from the built-in catalog")
            return
        }
        var connections: [String: PostgresConnection] = [:]
        /// The primary's position over time: a replica's time lag is the age of the WAL it replayed.
        var history = PrimaryPositionHistory()
        let origin = ContinuousClock.now
        var round = 0
        func discard(_ name: String) {
            // postgres-nio wants every connection closed before it goes away: keep it until it is.
            guard let connection = connections.removeValue(forKey: name) else { return }
            connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
        }
        while !Task.isCancelled {
            // Each round sees the configuration in force: RELOAD may have added or removed servers.
            let configuration = runtime.configuration
            let topology = runtime.topology
            for name in connections.keys where topology.server(named: name) == nil { discard(name) }
            var primaryLSN: Int64?
            /// The primary's timeline: after a switchover, replicas count as following it once they receive it.
            var primaryTimeline: Int?
            let primary = topology.primary
            do {
                let connection = try await connect(primary, user: user, cache: &connections)
                // A "primary" that is in recovery is a standby: writes would all fail with 25006.
                let rows = try await connection.query("""
                    select pg_is_in_recovery(), (case when pg_is_in_recovery() then coalesce(pg_last_wal_replay_lsn(), '0/0') \
                    else pg_current_wal_lsn() end)::text, \
                    case when pg_is_in_recovery() then 0 else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end
                    """, logger: logger)
                for try await (inRecovery, lsn, timeline) in rows.decode((Bool, String, Int32).self) {
                    primaryLSN = parseLSN(lsn)
                    if !inRecovery, let position = LSN(lsn) { history.record(position, at: (ContinuousClock.now - origin).inSeconds) }
                    primaryTimeline = timeline > 0 ? Int(timeline) : nil
                    primaryProbed(primary, inRecovery: inRecovery)
                }
                if round % Self.catalogRefreshRounds == 0 { try await loadCatalog(connection) }
                record(primary.name, error: nil)
            } catch {
                discard(primary.name)
                record(primary.name, error: Self.describe(error))
            }
            var changed = false
            for replica in topology.replicas {
                do {
                    let connection = try await connect(replica, user: user, cache: &connections)
                    let rows = try await connection.query("""
                        select pg_is_in_recovery(), coalesce(pg_last_wal_receive_lsn()::text, ''), \
                        coalesce(pg_last_wal_replay_lsn()::text, ''), \
                        coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp())::float8, 0), \
                        coalesce((select received_tli from pg_stat_wal_receiver), 0)
                        """, logger: logger)
                    for try await (inRecovery, received, replayed, seconds, timeline) in rows.decode((Bool, String, String, Double, Int32).self) {
                        if topology.followingFormerPrimary.contains(replica.name), let primaryTimeline, timeline >= primaryTimeline {
                            // It streams the new primary's timeline: it will see the writes made there.
                            runtime.changeTopology { $0.following(replica.name) }
                            logger.notice("replica follows the new primary; its reads are guarded by the lag checks again",
                                          metadata: ["server": "\(replica.name)", "timeline": "\(timeline)"])
                            changed = true
                        }
                        let replayPosition = LSN(replayed)
                        // Nothing left to replay means no lag in bytes, however long ago the last write was.
                        let caughtUp = received == replayed
                        let lagBytes = caughtUp ? 0 : primaryLSN.flatMap { p in replayPosition.map { max(0, p - Int64(bitPattern: $0.value)) } }
                        // The age of the replayed WAL; `seconds` is 0 when the replica never replayed a transaction.
                        let lagSeconds = replayPosition.map {
                            history.lagSeconds(replayed: $0, lastReplayedCommitAge: seconds > 0 ? seconds : nil,
                                               now: (ContinuousClock.now - origin).inSeconds)
                        } ?? seconds
                        let probe = ReplicaProbe(inRecovery: inRecovery, lagBytes: lagBytes, lagSeconds: lagSeconds,
                                                 replayPosition: replayPosition)
                        changed = update(replica) { $0.probeSucceeded(probe) } || changed
                    }
                    record(replica.name, error: nil)
                } catch {
                    discard(replica.name)
                    let text = Self.describe(error)
                    record(replica.name, error: text)
                    changed = update(replica) { $0.probeFailed(text) } || changed
                }
            }
            if changed || round == 0 { publish() }
            round += 1
            try? await Task.sleep(for: configuration.routing.healthCheckInterval)
        }
        for connection in connections.values { try? await connection.close() }
        connections.removeAll()
    }

    private func connect(_ server: ServerDefinition, user: UserDefinition, cache: inout [String: PostgresConnection]) async throws -> PostgresConnection {
        if let existing = cache[server.name], !existing.isClosed { return existing }
        let connection = try await ControlConnection.connect(to: server, as: user, configuration: runtime.configuration,
                                                             on: eventLoop, logger: logger)
        cache[server.name] = connection
        return connection
    }

    /// Loads pg_proc volatility so user-defined volatile functions count as writes.
    private func loadCatalog(_ connection: PostgresConnection) async throws {
        let rows = try await connection.query("select proname::text, provolatile::text from pg_proc", logger: logger)
        var entries: [(name: String, volatility: Character)] = []
        for try await (name, volatility) in rows.decode((String, String).self) {
            entries.append((name, volatility.first ?? "v"))
        }
        // Unlogged tables (and their indexes, matviews) have no contents on a standby.
        let relations = try await connection.query("select relname::text from pg_class where relpersistence = 'u'", logger: logger)
        var unlogged: [String] = []
        for try await name in relations.decode(String.self) { unlogged.append(name) }
        let classifier = StatementClassifier(catalog: FunctionCatalog(rows: entries, unloggedRelations: unlogged))
        for shard in runtime.allShards {
            shard.eventLoop.execute { shard.updateClassifier(classifier) }
        }
        logger.debug("function catalog loaded", metadata: ["functions": "\(entries.count)", "unlogged_relations": "\(unlogged.count)"])
    }

    private func update(_ replica: ServerDefinition, _ change: (inout ReplicaHealth) -> Bool) -> Bool {
        let (changed, health) = status.withLock { all -> (Bool, ReplicaHealth?) in
            guard var health = all[replica.name]?.health else { return (false, nil) }
            let changed = change(&health)
            all[replica.name]?.health = health
            all[replica.name]?.probed = true
            return (changed, health)
        }
        if changed, let health {
            logger.notice("replica \(health.isEligible ? "back in rotation" : "out of rotation")",
                          metadata: ["server": "\(replica.name)", "reason": "\(health.reason)"])
        }
        return changed
    }

    private func record(_ server: String, error: String?) {
        let previous = status.withLock { all -> String? in
            let previous = all[server]?.lastError
            all[server]?.lastError = error
            all[server]?.probed = true
            return previous
        }
        if let error, previous == nil {
            logger.warning("health check of server failed", metadata: ["server": "\(server)", "error": "\(error)"])
        } else if error == nil, previous != nil {
            logger.notice("health check of server succeeded again", metadata: ["server": "\(server)"])
        }
    }

    /// Records whether the server in the primary role is writable, in the topology every loop reads.
    private func primaryProbed(_ primary: ServerDefinition, inRecovery: Bool) {
        let state: Topology.PrimaryState = inRecovery ? .inRecovery : .writable
        let before = runtime.topology.primaryState
        runtime.changeTopology { $0.primary.name == primary.name ? $0.withPrimaryState(state) : $0 }
        guard before != state else { return }
        if inRecovery {
            logger.error("the server configured as primary is in recovery (a standby): writes are refused until it is promoted or another primary is configured",
                         metadata: ["server": "\(primary.name)"])
        } else {
            logger.notice("the primary is writable again", metadata: ["server": "\(primary.name)"])
        }
    }

    /// Tells every loop which replicas may serve reads: healthy ones an operator has not disabled.
    func publish() {
        let disabled = runtime.disabledServers
        let topology = runtime.topology
        let eligible = topology.replicas.filter { server in
            !disabled.contains(server.name) && !topology.followingFormerPrimary.contains(server.name)
                && status.withLock { $0[server.name]?.health?.isEligible ?? false }
        }
        for shard in runtime.allShards {
            shard.eventLoop.execute { shard.updateEligibleReplicas(eligible) }
        }
    }

    static func describe(_ error: Error) -> String {
        if let psql = error as? PSQLError {
            if let message = psql.serverInfo?[.message] { return message }
            return "\(psql.code)"
        }
        return "\(error)"
    }
}
