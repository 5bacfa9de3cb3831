import Foundation
import PostgresNIO
import Testing

/// Failures of the real servers under load, on the switchover lab (its own primary, so killing it
/// disturbs no other test): what clients see, how fast service comes back, and that nothing leaks.
/// `SWITCHYARD_CHAOS_LOG=debug` runs the proxy at that log level; a hang keeps its whole log.
extension IntegrationTests {
    @Suite struct Chaos {
        struct Outcome: Sendable {
            var at: Duration
            var took: Duration
            /// nil: the write was acknowledged.
            var error: String?
            var sqlState: String?
        }

        /// The first few, short: a test log a person can read.
        static func summary(_ outcomes: [Outcome]) -> String {
            outcomes.prefix(3).map { "at \($0.at) took \($0.took): \($0.sqlState ?? "-") \($0.error ?? "")" }.joined(separator: "; ")
        }

        /// The SQLSTATE a failure carries (also wrapped by postgres-nio), or "closed" for a session the proxy
        /// had already ended with its FATAL while the client was between statements (the primary died under it,
        /// as every session on a crashed Postgres dies).
        static func connectionState(of error: Error) -> String? {
            if let state = error.sqlState ?? ((error as? PSQLError)?.underlying?.sqlState) { return state }
            if error is ConnectionClosedError { return "closed" }
            // A FATAL between the INSERT's CommandComplete and its ReadyForQuery (the server died at the commit):
            // postgres-nio reports the ErrorResponse as unexpected, with its fields only in the description.
            let text = String(reflecting: error)
            if let psql = error as? PSQLError, psql.code == .unexpectedBackendMessage, let code = text.firstMatch(of: /Code: "([0-9A-Z]{5})"/) {
                return String(code.1)
            }
            return nil
        }

        static func labPgctl(_ arguments: String) async throws -> ProcessResult {
            let script = "cd / && exec runuser -u postgres -- \(RoutingCluster.pgBin)/pg_ctl -D '\(Switchover.labBase)/primary' \(arguments)"
            return try await runUnmaskedProcess("/bin/bash", ["-c", script], timeout: .seconds(90))
        }

        static func openDescriptors(_ pid: Int32) -> Int {
            (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
        }

        /// Eight clients write in a loop (autocommit INSERTs, reconnecting after an error) while the primary is
        /// killed (`pg_ctl -m immediate`, no goodbye to anyone) and started again, once with a 3 s outage, and
        /// as a restart loop (three kills, 1 s down, 1.5 s up).
        /// - Outside the outages (from one second after each restart), nothing fails.
        /// - In between, every failure is prompt (under 5 s) and says why: a server's FATAL (57P01), the
        ///   relay's lost-connection FATAL (08006, also found when the client next uses the session it ended),
        ///   or a refused connection or login (08001 / 57P03) while it is down.
        /// - Every acknowledged write is on the primary afterwards; the proxy holds no more server
        ///   connections than its pool and no more descriptors than before the run (plus a margin).
        @Test(arguments: [(cycles: 1, down: 3.0, up: 0.0), (cycles: 3, down: 1.0, up: 1.5)])
        func primaryKilledUnderLoad(cycles: Int, down: Double, up: Double) async throws {
            try await Switchover.startLab()   // the next lab user starts afresh, whatever this leaves
            try await Switchover.lab(Switchover.primary.port,
                "create table chaos_writes (client int, n int, primary key (client, n)); grant select, insert on chaos_writes to app")
            let proxy = try await RoutingProxy.start(["connect_timeout": "2", "query_wait_timeout": "3", "pool_size": "10", "log_level": TestEnvironment.variables["SWITCHYARD_CHAOS_LOG"] ?? "info"],
                                                     replicas: [Switchover.replica], primary: Switchover.primary)
            defer { proxy.stop() }
            try await waitUntilReadsReachReplica(port: proxy.port, user: "app")
            let descriptorsBefore = Self.openDescriptors(proxy.processID)

            let start = ContinuousClock.now
            let outcomes = SharedState([Int: [Outcome]]())
            let acknowledged = SharedState([Int: [Int]]())
            let outages = SharedState([(killed: Duration, back: Duration)]())
            /// When each client's statement in flight began: a watchdog snapshots the console if one hangs.
            let inFlight = SharedState([Int: ContinuousClock.Instant]())
            let snapshots = SharedState([String]())
            let connections = SharedState([Int: PostgresConnection]())
            let end = start + .seconds(2 + Double(cycles) * (down + up) + 4)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in 0..<8 {
                    group.addTask {
                        var connection: PostgresConnection?
                        var n = 0
                        while ContinuousClock.now < end {
                            let began = ContinuousClock.now
                            inFlight.withLock { $0[client] = began }
                            defer { inFlight.withLock { $0[client] = nil } }
                            do {
                                if connection == nil {
                                    connection = try await connectNIO(port: proxy.port, database: "bench", timeout: .seconds(10))
                                    connections.withLock { [connection] in $0[client] = connection }
                                }
                                n += 1
                                try await connection!.run("insert into chaos_writes values (\(client), \(n))", timeout: .seconds(10))
                                acknowledged.withLock { $0[client, default: []].append(n) }
                                outcomes.withLock { $0[client, default: []].append(Outcome(at: began - start, took: .now - began)) }
                            } catch {
                                outcomes.withLock {
                                    $0[client, default: []].append(Outcome(at: began - start, took: .now - began,
                                                                         error: String(reflecting: error).prefix(160).description, sqlState: Self.connectionState(of: error)))
                                }
                                try? await connection?.close()
                                connection = nil
                                try await Task.sleep(for: .milliseconds(50))
                            }
                        }
                        try? await connection?.close()
                    }
                }
                group.addTask {
                    // A statement unanswered for 4 s is a hang: what the console says about it then.
                    var snapshotted = false
                    while ContinuousClock.now < end, !snapshotted {
                        try await Task.sleep(for: .milliseconds(250))
                        let stuck = inFlight.withLock { $0.filter { ContinuousClock.now - $0.value > .seconds(4) }.keys.sorted() }
                        guard !stuck.isEmpty else { continue }
                        snapshotted = true
                        let closed = connections.withLock { open in stuck.map { "client \($0) closed: \(open[$0]?.isClosed.description ?? "none")" } }
                        snapshots.withLock { $0.append(closed.joined(separator: ", ")) }
                        for command in ["show clients", "show pools", "show servers"] {
                            let answer = try? await psql(port: proxy.port, user: "admin", database: "switchyard", [command], timeout: .seconds(5))
                            snapshots.withLock { $0.append("clients \(stuck) stuck; \(command):\n\(answer.map { "\($0)" } ?? "no answer")") }
                        }
                    }
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(2))
                    for _ in 0..<cycles {
                        let killed = ContinuousClock.now - start
                        let stopped = try await Self.labPgctl("-m immediate -w -t 60 stop")
                        guard stopped.succeeded else { throw HarnessError("could not kill the lab primary: \(stopped)") }
                        try await Task.sleep(for: .seconds(down))
                        let started = try await Self.labPgctl("-l '\(Switchover.labBase)/primary.log' -w -t 60 start")
                        guard started.succeeded else { throw HarnessError("could not start the lab primary: \(started)") }
                        outages.withLock { $0.append((killed, ContinuousClock.now - start)) }
                        try await Task.sleep(for: .seconds(up))
                    }
                }
                try await group.waitForAll()
            }
            let windows = outages.value
            try #require(windows.count == cycles)
            let all = outcomes.value.values.flatMap { $0 }
            let failures = all.filter { $0.error != nil }
            #expect(!failures.isEmpty, "killing the primary failed nothing?")
            // A failure must overlap an outage, up to a second after its restart.
            let outside = failures.filter { failure in
                !windows.contains { failure.at + failure.took >= $0.killed && failure.at <= $0.back + .seconds(1) }
            }
            #expect(outside.count == 0, "failures outside the outages \(windows): \(Self.summary(outside))")
            let slow = failures.filter { $0.took > .seconds(5) }
            #expect(slow.count == 0, "a failure took more than 5 s (a hang): \(Self.summary(slow))")
            if !slow.isEmpty {
                let lines = proxy.log(limit: 20_000_000).split(separator: "\n").filter { !$0.contains(" info ") }
                print("chaos: console when it hung:\n" + snapshots.value.joined(separator: "\n"))
                print("chaos: proxy log around the hang:\n" + lines.suffix(400).joined(separator: "\n"))
                let kept = FileManager.default.temporaryDirectory.appendingPathComponent("chaos-hang-\(proxy.processID).log").path
                try? FileManager.default.copyItem(atPath: proxy.configurationPath.replacingOccurrences(of: "proxy.conf", with: "switchyard.log"), toPath: kept)
                print("chaos: the proxy's whole log is kept in \(kept)")
            }
            // A server's own message behind the write position's answer (the shutdown's warning) is no protocol violation.
            let violations = proxy.log(limit: 20_000_000).split(separator: "\n").filter { $0.contains("invalid message from server") }
            #expect(violations.isEmpty, "the proxy took a dying server's last words for a protocol violation: \(violations.prefix(2))")
            let unexplained = failures.filter { !["57P01", "08006", "08001", "57P03", "closed"].contains($0.sqlState ?? "") }
            #expect(unexplained.count == 0, "failures without a connection SQLSTATE: \(Self.summary(unexplained))")
            var recoveries: [Duration] = []
            for window in windows {
                let firstAfter = all.filter { $0.error == nil && $0.at >= window.back }.map { $0.at + $0.took }.min()
                #expect(firstAfter.map { $0 - window.back < .seconds(1) } == true,
                        "first write acknowledged after the restart at \(window.back): \(String(describing: firstAfter))")
                recoveries.append((firstAfter ?? window.back) - window.back)
            }
            let bySQLState = Dictionary(grouping: failures, by: { $0.sqlState ?? "none" }).mapValues(\.count)
            print("chaos: \(cycles) kill(s), outages \(windows); \(all.count - failures.count) writes acknowledged, failures \(bySQLState), slowest failure \(failures.map(\.took).max() ?? .zero), first write after each restart \(recoveries)")

            // No lost writes: every acknowledged insert is there.
            let stored = try await Switchover.lab(Switchover.primary.port, "select count(*) from chaos_writes")
            let acknowledgedCount = acknowledged.value.values.reduce(0) { $0 + $1.count }
            #expect(Int(stored) ?? -1 >= acknowledgedCount, "\(stored) rows for \(acknowledgedCount) acknowledged writes")
            for (client, ns) in acknowledged.value {
                let missing = try await Switchover.lab(Switchover.primary.port,
                    "select count(*) from unnest(array[\(ns.map(String.init).joined(separator: ","))]) n where not exists (select 1 from chaos_writes w where w.client = \(client) and w.n = n.n)")
                #expect(missing == "0", "client \(client) lost \(missing) acknowledged writes")
            }
            // Nothing leaked: server connections within the pool, descriptors back where they were.
            try await Task.sleep(for: .seconds(1))
            let serverConnections = try await Switchover.lab(Switchover.primary.port,
                "select count(*) from pg_stat_activity where usename = 'app' and backend_type = 'client backend'")
            #expect((Int(serverConnections) ?? 99) <= 10, "\(serverConnections) server connections for a pool of 10")
            let descriptorsAfter = Self.openDescriptors(proxy.processID)
            #expect(descriptorsAfter <= descriptorsBefore + 12, "descriptors \(descriptorsBefore) -> \(descriptorsAfter)")
            let alive = try await psql(port: proxy.port, user: "app", database: "bench", ["select count(*) > 0 from chaos_writes"], timeout: .seconds(20))
            #expect(alive.output == "t", "\(alive)")
        }
    }
}
