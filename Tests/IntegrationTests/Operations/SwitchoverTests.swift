import Foundation
import PostgresNIO
import SwitchyardProxy
import Testing

/// SWITCHOVER against a lab of its own (deploy/switchover-lab.sh: a primary, its physical standby as
/// the target, and a replica), since a switch changes the primary for good. Clients are real:
/// pgbench, psql and postgres-nio through the proxy; the proof is read from the servers directly.
extension IntegrationTests {
    @Suite struct Switchover {
        static let primary = RoutingServerEntry(name: "primary", port: 15440, role: "primary")
        static let standby = RoutingServerEntry(name: "standby", port: 15441, role: "standby")
        static let replica = RoutingServerEntry(name: "replica", port: 15442, role: "replica")
        /// The shared test cluster's replica: a standby, but of another system, never a valid target.
        static let foreign = RoutingServerEntry(name: "foreign", port: RoutingCluster.replicaPort, role: "standby")
        static let gone = RoutingServerEntry(name: "gone", host: "127.0.0.1", port: 1, role: "standby")
        static let labBase = RoutingCluster.baseDirectory + "-lab"

        /// A fresh lab: every test starts from a primary whose standby streams from it.
        static func startLab() async throws { try await labScript("start") }

        /// `deploy/switchover-lab.sh <command>` beside the shared test cluster's directory.
        static func labScript(_ command: String) async throws {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().deletingLastPathComponent().path
            let result = try await runUnmaskedProcess("/bin/bash", [root + "/deploy/switchover-lab.sh", command],
                                                      environment: ["SWITCHYARD_PG_DIR": RoutingCluster.baseDirectory], timeout: .seconds(120))
            guard result.succeeded else { throw HarnessError("switchover-lab.sh \(command) failed: \(result)") }
        }

        /// Superuser SQL straight to a lab server over its socket; returns the trimmed output.
        @discardableResult
        static func lab(_ port: Int, _ sql: String, database: String = "bench") async throws -> String {
            let result = try await runProcess("psql", ["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", labBase + "/run", "-p", "\(port)",
                                                       "-U", "postgres", "-d", database, "-c", sql],
                                              environment: libpqEnvironment(password: nil), timeout: .seconds(30))
            guard result.succeeded else { throw HarnessError("lab query on \(port) failed: \(result)") }
            return result.output
        }

        /// A command on the admin console; NOTICE lines arrive on stderr.
        static func console(_ proxy: RoutingProxy, _ sql: String) async throws -> ProcessResult {
            try await psql(port: proxy.port, user: "admin", database: "switchyard", [sql], timeout: .seconds(90))
        }

        /// The target applies WAL `delay` late (`recovery_min_apply_delay`); nil ends the delay.
        static func delayTargetReplay(_ delay: String?) async throws { try await delayReplay(delay, on: standby.port) }

        static func delayReplay(_ delay: String?, on port: Int) async throws {
            try await lab(port, delay.map { "alter system set recovery_min_apply_delay = '\($0)'" } ?? "alter system reset recovery_min_apply_delay",
                          database: "postgres")
            try await lab(port, "select pg_reload_conf()", database: "postgres")
        }

        static func startProxy(stateFile: String, extra: [RoutingServerEntry] = []) async throws -> RoutingProxy {
            try await RoutingProxy.start(
                ["switchover_user": "switchover", "state_file": stateFile, "switchover_drain_timeout": "3"],
                replicas: [standby, replica] + extra, primary: primary)
        }

        static func temporaryStateFile() -> String {
            FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("switchyard-state") + ".json").path
        }

        /// Refusals leave nothing changed; aborts (drain deadline, a target that cannot catch up) hand
        /// the held clients back to the old primary, un-fenced, and lose nothing.
        @Test func refusalsAndAbortsLeaveTheOldPrimaryServing() async throws {
            try await Self.startLab()
            let stateFile = Self.temporaryStateFile()
            defer { try? FileManager.default.removeItem(atPath: stateFile) }
            let proxy = try await Self.startProxy(stateFile: stateFile, extra: [Self.foreign, Self.gone])
            defer { proxy.stop() }

            for (target, reason) in [("gone", "cannot reach the target \"gone\""), ("foreign", "system identifiers differ"),
                                     ("primary", "already the primary"), ("nosuch", "no server named \"nosuch\"")] {
                let result = try await Self.console(proxy, "SWITCHOVER TO \(target)")
                #expect(!result.succeeded, "\(target): \(result)")
                #expect(result.stderr.contains("refused") && result.stderr.contains(reason), "\(target): \(result.stderr)")
            }
            let dryRun = try await Self.console(proxy, "SWITCHOVER TO standby DRY RUN")
            #expect(dryRun.succeeded, "\(dryRun)")
            #expect(dryRun.output.contains("|dry run passed|primary|primary|physical standby|"), "\(dryRun.output)")
            #expect(dryRun.stderr.contains("NOTICE:  switchover preflight: target is a physical standby"), "\(dryRun.stderr)")

            // A transaction left open through the proxy: the drain cannot finish, so the switch aborts.
            let table = uniqueName("sw_abort")
            try await withNIOConnection(port: proxy.port, database: "bench") { connection in
                try await connection.query("create table \(unescaped: table) (id int primary key)", logger: quietLogger)
                try await connection.query("begin", logger: quietLogger)
                try await connection.query("insert into \(unescaped: table) values (1)", logger: quietLogger)
                let aborted = try await Self.console(proxy, "SWITCHOVER TO standby TIMEOUT 0.5")
                #expect(!aborted.succeeded)
                #expect(aborted.stderr.contains("aborted in drain: 1 transaction still running"), "\(aborted.stderr)")
                try await connection.query("insert into \(unescaped: table) values (2)", logger: quietLogger)
                try await connection.query("commit", logger: quietLogger)
            }
            #expect(try await Self.lab(15440, "select count(*) from \(table)") == "2", "the open transaction committed on the old primary")
            #expect(try await Self.lab(15440, "show default_transaction_read_only") == "off", "the drain abort never fenced")

            // The target applies WAL 3 s late: catch-up cannot finish within TIMEOUT 1, so the fence comes down again.
            try await Self.delayTargetReplay("3s")
            _ = try await psql(port: proxy.port, database: "bench", ["insert into \(table) values (3)"])
            let late = try await Self.console(proxy, "SWITCHOVER TO standby TIMEOUT 1")
            #expect(!late.succeeded)
            #expect(late.stderr.contains("aborted in catch-up"), "\(late.stderr)")
            #expect(late.stderr.contains("NOTICE:  switchover fence: old primary is read-only"), "\(late.stderr)")
            #expect(try await Self.lab(15440, "show default_transaction_read_only") == "off", "rolled back: the old primary is writable again")
            let after = try await psql(port: proxy.port, database: "bench", ["insert into \(table) values (4)", "select count(*) from \(table)"])
            #expect(after.succeeded, "\(after)")
            #expect(after.lines.last == "4", "writes go on to the old primary after the rollback, nothing lost")
            #expect(try await Self.lab(15441, "select pg_is_in_recovery()", database: "postgres") == "t", "the target was never promoted")
            try await Self.delayTargetReplay(nil)

            let history = try await Self.console(proxy, "SHOW SWITCHOVER")
            let outcomes = history.lines.map { $0.split(separator: "|", omittingEmptySubsequences: false)[1] }
            #expect(outcomes == ["refused", "refused", "refused", "refused", "dry run passed", "aborted", "aborted"], "\(history.output)")
            let state = try JSONDecoder().decode([String: AnyCodableValue].self, from: Data(contentsOf: URL(fileURLWithPath: stateFile)))
            #expect(state["primary"] == .string("primary") && state["switching_to"] == nil, "rolled back and recorded so: \(state)")
        }

        /// The invariant, randomized: clients write in random shapes (autocommit inserts, explicit
        /// transactions of several statements, reads between) while a SWITCHOVER lands at a random moment.
        /// No client sees an error, every read counts at least the client's own acknowledged rows (the
        /// replica applies WAL 200 ms late, so a read that went there too early would miss them), and
        /// every row whose commit a client was told of is on the new primary. The seed is printed on failure.
        @Test func randomWritesAcrossASwitchAreAllKept() async throws {
            try await Self.startLab()
            try await Self.delayReplay("200ms", on: Self.replica.port)
            let stateFile = Self.temporaryStateFile()
            defer { try? FileManager.default.removeItem(atPath: stateFile) }
            let proxy = try await Self.startProxy(stateFile: stateFile)
            defer { proxy.stop() }
            let seed = UInt64.random(in: 1...1_000_000)
            var random = SplitMix64(seed: seed)
            let table = uniqueName("sw_random")
            _ = try await psql(port: proxy.port, database: "bench", ["create table \(table) (id bigint primary key, client int)"])
            // The clients did not create the table, so their own writes do not order their reads after it:
            // they carry the primary's position as a causal token, or a replica that has not replayed the
            // CREATE yet answers a first SELECT with 42P01, as it may at `read_consistency = session`.
            let token = try await Self.lab(Self.primary.port, "select pg_current_wal_insert_lsn()")
            #expect(LSN(token) != nil, "\(token)")
            let switchAfter = Duration.milliseconds(Int64(500 + random.next() % 2000))
            let deadline = ContinuousClock.now + .seconds(4)
            let port = proxy.port
            let results = try await withThrowingTaskGroup(of: (acknowledged: [Int64], errors: [String]).self) { group in
                for client in 0..<6 {
                    let clientSeed = random.next()
                    group.addTask {
                        var random = SplitMix64(seed: clientSeed)
                        var acknowledged: [Int64] = [], errors: [String] = [], next = Int64(client) * 1_000_000
                        let connection = try await connectNIO(port: port, database: "bench")
                        defer { connection.close().whenComplete { _ in withExtendedLifetime(connection) {} } }
                        try await connection.query("set switchyard.min_read_lsn = '\(unescaped: token)'", logger: quietLogger)
                        while ContinuousClock.now < deadline {
                            let count = Int(1 + random.next() % 4)
                            let ids = (0..<count).map { _ in next += 1; return next }
                            do {
                                switch random.next() % 3 {
                                case 0:
                                    for id in ids { try await connection.query("insert into \(unescaped: table) values (\(id), \(client))", logger: quietLogger) }
                                case 1:
                                    try await connection.query("begin", logger: quietLogger)
                                    for id in ids { try await connection.query("insert into \(unescaped: table) values (\(id), \(client))", logger: quietLogger) }
                                    try await connection.query("commit", logger: quietLogger)
                                default:
                                    let rows = try await connection.query("select count(*) from \(unescaped: table) where client = \(client)",
                                                                          logger: quietLogger).collect()
                                    let seen = try rows.first?.decode(Int64.self) ?? -1
                                    if seen < acknowledged.count {
                                        errors.append("client \(client): read \(seen) of its own rows after \(acknowledged.count) acknowledged")
                                    }
                                    continue
                                }
                                acknowledged += ids
                            } catch {
                                errors.append("client \(client): \(String(reflecting: error).prefix(300))")
                                break
                            }
                        }
                        return (acknowledged, errors)
                    }
                }
                try await Task.sleep(for: switchAfter)
                let switched = try await Self.console(proxy, "SWITCHOVER TO standby")
                #expect(switched.succeeded && switched.output.contains("|switched|"), "seed \(seed): \(switched)")
                var all: [(acknowledged: [Int64], errors: [String])] = []
                for try await result in group { all.append(result) }
                return all
            }
            let errors = results.flatMap(\.errors)
            #expect(errors.isEmpty, "seed \(seed), switch after \(switchAfter): \(errors)")
            let acknowledged = Set(results.flatMap(\.acknowledged))
            let kept = Set(try await Self.lab(15441, "select id from \(table)").split(separator: "\n").compactMap { Int64($0) })
            #expect(acknowledged.count > 100, "seed \(seed): the clients wrote too little to tell (\(acknowledged.count))")
            let lost = acknowledged.subtracting(kept)
            #expect(lost.isEmpty, "seed \(seed): \(lost.count) acknowledged rows missing on the new primary, e.g. \(lost.sorted().prefix(5))")
        }

        /// The proxy killed mid-switch (after the fence, before promotion): the restarted proxy finds the
        /// switch unfinished in state_file, sees the target still a standby, and un-fences the old primary
        /// before it serves anyone. Nothing is lost and no write reaches two primaries.
        @Test func aProxyKilledMidSwitchSettlesItOnRestart() async throws {
            try await Self.startLab()
            let stateFile = Self.temporaryStateFile()
            defer { try? FileManager.default.removeItem(atPath: stateFile) }
            var proxy = try await Self.startProxy(stateFile: stateFile)
            defer { proxy.stop() }
            let table = uniqueName("sw_kill")
            _ = try await psql(port: proxy.port, database: "bench", ["create table \(table) (id int)"])
            // The target applies WAL 5 s late, so the switch waits in catch-up, fenced, when the proxy dies.
            try await Self.delayTargetReplay("5s")
            _ = try await psql(port: proxy.port, database: "bench", ["insert into \(table) values (1)"])
            let port = proxy.port
            let switching = Task { try await psql(port: port, user: "admin", database: "switchyard", ["SWITCHOVER TO standby TIMEOUT 20"], timeout: .seconds(30)) }
            let fenced = await eventually(within: .seconds(10), every: .milliseconds(50)) {
                (try? await Self.lab(15440, "show default_transaction_read_only")) == "on"
            }
            #expect(fenced, "the switch reached the fence")
            proxy.kill(keepDirectory: true)
            _ = try? await switching.value
            let recorded = try String(contentsOfFile: stateFile, encoding: .utf8)
            #expect(recorded.contains("\"switching_to\" : \"standby\"") && recorded.contains("\"step\" : \"fencing\""), "\(recorded)")

            proxy = try await Self.startProxy(stateFile: stateFile)
            #expect(proxy.log().contains("an interrupted switchover is rolled back"), "\(proxy.log())")
            #expect(try await Self.lab(15440, "show default_transaction_read_only") == "off", "un-fenced before serving")
            let write = try await psql(port: proxy.port, database: "bench", ["insert into \(table) values (2)", "select count(*) from \(table)"])
            #expect(write.lines.last == "2", "writes go on to the old primary: \(write)")
            #expect(try await Self.lab(15441, "select pg_is_in_recovery()", database: "postgres") == "t", "the target was never promoted")
            try await Self.delayTargetReplay(nil)
        }

        /// The invariant: a switch under write load loses no commit and shows clients no error. pgbench's
        /// count of processed transactions equals the history rows on the new primary, and the balances agree.
        @Test func switchesUnderPgbenchWithoutLosingAWrite() async throws {
            try await Self.startLab()
            let stateFile = Self.temporaryStateFile()
            defer { try? FileManager.default.removeItem(atPath: stateFile) }
            var proxy = try await Self.startProxy(stateFile: stateFile)
            defer { proxy.stop() }
            let port = proxy.port
            let bench = Task { try await routingPgbench(port: port, ["-c", "8", "-j", "2", "-T", "6"], timeout: .seconds(60)) }
            try await Task.sleep(for: .seconds(2))
            let switched = try await Self.console(proxy, "SWITCHOVER TO standby")
            let load = try await bench.value
            #expect(switched.succeeded, "\(switched)\n\(proxy.log(limit: 3000))")
            let columns = switched.output.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            #expect(columns.count == 17, "\(switched.output)")
            guard columns.count == 17 else { return }
            #expect(columns[1] == "switched" && columns[2] == "primary" && columns[3] == "standby", "\(switched.output)")
            #expect(columns[5] == columns[6] || LSN(columns[6])! >= LSN(columns[5])!, "the target reached the final position")
            #expect(columns[16].isEmpty, "no warnings: \(columns[16])")
            for phase in ["preflight", "drain", "fence", "catch-up", "promote", "flip"] {
                #expect(switched.stderr.contains("NOTICE:  switchover \(phase): "), "progress for \(phase): \(switched.stderr)")
            }

            #expect(load.succeeded, "\(load)")
            #expect(load.stdout.contains("number of failed transactions: 0 "), "\(load.stdout)")
            let processed = load.stdout.split(separator: "\n").first { $0.hasPrefix("number of transactions actually processed:") }
                .flatMap { Int($0.split(separator: " ").last ?? "") }
            let history = Int(try await Self.lab(15441, "select count(*) from pgbench_history")) ?? -1
            #expect(processed != nil && processed == history, "every acknowledged transaction is on the new primary: \(String(describing: processed)) vs \(history)")
            let sums = try await Self.lab(15441, "select (select sum(abalance) from pgbench_accounts), (select sum(tbalance) from pgbench_tellers), (select sum(bbalance) from pgbench_branches)")
            #expect(Set(sums.split(separator: "|")).count == 1, "balances agree: \(sums)")

            // After the switch: writes land on the new primary; the old one is fenced and read-only.
            let marker = uniqueName("sw_after")
            let write = try await psql(port: proxy.port, database: "bench", ["create table \(marker) (id int)", "insert into \(marker) values (1)"])
            #expect(write.succeeded, "\(write)")
            #expect(try await Self.lab(15441, "select count(*) from \(marker)") == "1")
            #expect(try await Self.lab(15441, "select pg_is_in_recovery()") == "f")
            #expect(try await Self.lab(15440, "show default_transaction_read_only") == "on")
            let state = try JSONDecoder().decode([String: AnyCodableValue].self, from: Data(contentsOf: URL(fileURLWithPath: stateFile)))
            #expect(state["primary"] == .string("standby"), "\(state)")

            let servers = try await Self.console(proxy, "SHOW SERVERS")
            #expect(servers.lines.contains { $0.hasPrefix("primary|standby|") && $0.contains("|fenced (former primary)|") }, "\(servers.output)")
            #expect(servers.lines.contains { $0.hasPrefix("replica|replica|") && $0.contains("streams from the former primary") }, "\(servers.output)")
            let reload = try await Self.console(proxy, "RELOAD")
            #expect(!reload.succeeded && reload.stderr.contains("a switchover made \"standby\" the primary"), "\(reload.stderr)")

            // A restarted proxy with the unedited file reads the state file: writes still go to the new primary.
            proxy.stop()
            proxy = try await Self.startProxy(stateFile: stateFile)
            #expect(proxy.log().contains("state_file records a switchover"), "\(proxy.log())")
            let again = try await psql(port: proxy.port, database: "bench", ["insert into \(marker) values (2)"])
            #expect(again.succeeded, "\(again)")
            #expect(try await Self.lab(15441, "select count(*) from \(marker)") == "2")

            // Switching back is proven the same way: refused while the former primary does not replicate
            // from the new one (the revert that loses the writes made in between), done once it does.
            let refused = try await Self.console(proxy, "SWITCHOVER TO primary")
            #expect(!refused.succeeded && refused.stderr.contains("would lose every write made on standby"), "\(refused.stderr)")
            try await Self.labScript("rebuild-primary")
            let back = try await Self.console(proxy, "SWITCHOVER TO primary")
            #expect(back.succeeded && back.output.contains("|switched|standby|primary|"), "\(back)\n\(proxy.log(limit: 2000))")
            let third = try await psql(port: proxy.port, database: "bench", ["insert into \(marker) values (3)", "select count(*) from \(marker)"])
            #expect(third.lines.last == "3", "the writes made on the interim primary came back with it: \(third)")
            #expect(try await Self.lab(15440, "select pg_is_in_recovery()") == "f")
            #expect(try await Self.lab(15441, "show default_transaction_read_only") == "on", "the interim primary is fenced now")
        }
    }
}

/// A small seeded generator, so a failing run can be replayed from its printed seed.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A JSON scalar, to read the state file without a schema of the test's own.
enum AnyCodableValue: Decodable, Equatable {
    case string(String), strings([String])
    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(String.self) { self = .string(value) } else { self = .strings(try container.decode([String].self)) }
    }
}
