import Logging
import NIOCore
import PostgresNIO

/// One event loop's probes of the replicas' replay positions, for reads that must see a write.
///
/// Each loop asks over connections of its own, opened on that loop, so a waiting read, the probe and its
/// answer never leave the loop: a round costs one replica round trip (all replicas at once) and nothing
/// else. Rounds run only while a read waits (``PoolShard/awaitReplay(_:position:)``); requests during a
/// round fold into one more. postgres-nio speaks the protocol. Loop-confined, like its ``PoolShard``.
final class ReplayPositionProbe {
    static let query = "select coalesce(pg_last_wal_replay_lsn()::text, '')"

    private let eventLoop: EventLoop
    private let logger: Logger
    private var connections: [String: PostgresConnection] = [:]
    private var connecting: Set<String> = []
    /// Answers owed in the current round.
    private var outstanding = 0
    /// A round was asked for while the last one ran: the shard starts it when this one ends.
    private(set) var roundRequested = false
    private var isShutDown = false
    /// A replica answered: its position (replay only moves forward).
    var positionReported: (String, LSN) -> Void = { _, _ in }
    /// A round's answers are all in (or failed).
    var roundEnded: () -> Void = {}

    init(eventLoop: EventLoop, logger: Logger) {
        self.eventLoop = eventLoop
        self.logger = logger
    }

    /// Asks every replica in `replicas` for its replay position, now or when the round in flight ends.
    func requestRound(replicas: [ServerDefinition], user: UserDefinition?, configuration: ProxyConfiguration) {
        eventLoop.assertInEventLoop()
        guard !isShutDown else { return }
        guard outstanding == 0 else {
            roundRequested = true
            return
        }
        roundRequested = false
        let names = Set(replicas.map(\.name))
        for name in connections.keys where !names.contains(name) { drop(name) }
        for replica in replicas {
            if let connection = connections[replica.name], !connection.isClosed {
                ask(replica.name, connection)
            } else if let user, !connecting.contains(replica.name) {
                connect(replica, as: user, configuration: configuration)
            }
        }
    }

    /// Closes every connection (drain, shutdown); postgres-nio wants each closed before it goes away.
    func shutDown() {
        isShutDown = true
        for name in Array(connections.keys) { drop(name) }
    }

    private func ask(_ name: String, _ connection: PostgresConnection) {
        outstanding += 1
        connection.simpleQuery(Self.query).hop(to: eventLoop).assumeIsolated().whenComplete { [self] result in
            outstanding -= 1
            switch result {
            case .success(let rows):
                if let text = try? rows.first?.decode(String.self), let position = LSN(text) { positionReported(name, position) }
            case .failure(let error):
                // The health monitor reports and excludes unreachable replicas; the next round reconnects.
                logger.debug("replay position probe failed", metadata: ["server": "\(name)", "error": "\(ReplicaMonitor.describe(error))"])
                if connections[name] === connection { drop(name) }
            }
            if outstanding == 0 { roundEnded() }
        }
    }

    private func connect(_ replica: ServerDefinition, as user: UserDefinition, configuration: ProxyConfiguration) {
        connecting.insert(replica.name)
        let (eventLoop, logger) = (self.eventLoop, self.logger)
        eventLoop.makeFutureWithTask {
            try await ControlConnection.connect(to: replica, as: user, configuration: configuration, on: eventLoop, logger: logger)
        }.assumeIsolated().whenComplete { [self] result in
            connecting.remove(replica.name)
            switch result {
            case .success(let connection):
                if isShutDown { return Self.close(connection) }
                connections[replica.name] = connection
                ask(replica.name, connection)
            case .failure(let error):
                logger.debug("replay position probe could not connect", metadata: ["server": "\(replica.name)", "error": "\(ReplicaMonitor.describe(error))"])
                if outstanding == 0 { roundEnded() }
            }
        }
    }

    private func drop(_ name: String) {
        guard let connection = connections.removeValue(forKey: name) else { return }
        Self.close(connection)
    }

    private static func close(_ connection: PostgresConnection) {
        connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
    }
}
