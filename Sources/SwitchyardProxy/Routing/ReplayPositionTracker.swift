import Logging
import NIOCore
import PostgresNIO

/// Asks the replicas how far they have replayed, on demand, and tells every event loop.
///
/// A read that must see a write waits only for a replica to replay it: sessions' loops ask for a probe
/// when a read waits (``PoolShard/awaitReplay(_:position:)``), requests arriving during a round fold into
/// the next one, and rounds stop when nobody waits. So a replica 5 ms behind serves that read about 5 ms
/// later, and an idle proxy sends nothing. Runs off the relay, over connections of its own.
final class ReplayPositionTracker: Sendable {
    /// Rounds are at least this far apart while reads wait: bounded load on lagging replicas.
    static let minimumSpacing: Duration = .microseconds(500)

    private let requests: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    init() {
        (requests, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Any thread: a read waits for a replica to replay further than last reported.
    func requestProbe() {
        continuation.yield()
    }

    /// Probes on request until the task is cancelled.
    func run(runtime: ProxyRuntime, user: UserDefinition, eventLoop: EventLoop, logger: Logger) async {
        var connections: [String: PostgresConnection] = [:]
        var positions: [String: LSN] = [:]
        // A first round at start: the connections are open (and positions known) before the first read waits.
        requestProbe()
        for await _ in requests {
            let started = ContinuousClock.now
            let topology = runtime.topology
            for name in connections.keys where topology.server(named: name)?.role != .replica {
                connections.removeValue(forKey: name).map(Self.close)
                positions[name] = nil
            }
            for replica in topology.replicas where connections[replica.name].map({ $0.isClosed }) ?? true {
                do {
                    connections[replica.name] = try await ControlConnection.connect(to: replica, as: user, configuration: runtime.configuration,
                                                                                    on: eventLoop, logger: logger)
                } catch {
                    connections[replica.name] = nil
                    logger.debug("replay position probe could not connect", metadata: ["server": "\(replica.name)", "error": "\(ReplicaMonitor.describe(error))"])
                }
            }
            // All replicas at once: a round costs one round trip, however many there are.
            let answers = await withTaskGroup(of: (String, Result<LSN?, Error>).self) { group in
                for (name, connection) in connections {
                    group.addTask {
                        do {
                            let rows = try await connection.query("select coalesce(pg_last_wal_replay_lsn()::text, '')", logger: logger)
                            var position: LSN?
                            for try await text in rows.decode(String.self) { position = LSN(text) }
                            return (name, .success(position))
                        } catch {
                            return (name, .failure(error))
                        }
                    }
                }
                return await group.reduce(into: [(String, Result<LSN?, Error>)]()) { $0.append($1) }
            }
            for (name, answer) in answers {
                switch answer {
                case .success(let position?):
                    positions[name] = position
                case .success(nil):
                    break
                case .failure(let error):
                    // The health monitor reports unreachable replicas; a position not refreshed stays a lower bound.
                    connections.removeValue(forKey: name).map(Self.close)
                    logger.debug("replay position probe failed", metadata: ["server": "\(name)", "error": "\(ReplicaMonitor.describe(error))"])
                }
            }
            let published = positions
            for shard in runtime.allShards {
                shard.eventLoop.execute { shard.replayPositionsUpdated(published) }
            }
            let elapsed = ContinuousClock.now - started
            if elapsed < Self.minimumSpacing { try? await Task.sleep(for: Self.minimumSpacing - elapsed) }
        }
        for connection in connections.values { try? await connection.close() }
    }

    /// postgres-nio wants every connection closed before it goes away: keep it until it is.
    private static func close(_ connection: PostgresConnection) {
        connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
    }
}
