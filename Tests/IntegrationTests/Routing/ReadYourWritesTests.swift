import Foundation
import PostgresNIO
import Synchronization
import Testing

extension IntegrationTests.Routing {
    /// Read-your-writes by LSN, against both replicas with the first one's replay delayed by 100 ms
    /// (`recovery_min_apply_delay`), so a read that ignores the writer's position misses for certain.
    ///
    /// The invariant: at `read_consistency = session` a client's read never sees a state older than its own
    /// last write; at `database`, older than any write a client of this proxy was told had committed; with a
    /// token (`switchyard.min_read_lsn`), older than the token. Each test also shows `eventual` missing.
    @Suite struct ReadYourWrites {
        static let delayedReplicaPort = RoutingCluster.replicaPort

        /// Delays the first replica's replay for the test's length, then restores it.
        static func withDelayedReplica<T>(_ body: () async throws -> T) async throws -> T {
            try await setDelay("100ms")
            do {
                let result = try await body()
                try await setDelay(nil)
                return result
            } catch {
                try? await setDelay(nil)
                throw error
            }
        }

        static func setDelay(_ delay: String?) async throws {
            _ = try await ReplicaControl.query(delay.map { "alter system set recovery_min_apply_delay = '\($0)'" }
                                               ?? "alter system reset recovery_min_apply_delay")
            _ = try await ReplicaControl.query("select pg_reload_conf()")
        }

        /// A fixture table, a proxy over both replicas with the first delayed, and two clients of it.
        static func withWriterAndReader(_ body: (RoutingFixture, PostgresConnection, PostgresConnection) async throws -> Void) async throws {
            let fixture = try await RoutingFixture.create()
            defer { Task { await fixture.drop() } }
            try await withRoutingProxy(replicas: .bothReplicas) { proxy in
                try await withDelayedReplica {
                    try await withNIOConnection(port: proxy.port) { writer in
                        try await withNIOConnection(port: proxy.port) { reader in
                            try await body(fixture, writer, reader)
                        }
                    }
                }
            }
        }

        /// A fixture table, a proxy over both replicas with the first delayed, and a raw client of it.
        static func withRawClient(_ body: (RoutingFixture, RawClient) async throws -> Void) async throws {
            let fixture = try await RoutingFixture.create()
            defer { Task { await fixture.drop() } }
            try await withRoutingProxy(replicas: .bothReplicas) { proxy in
                try await withDelayedReplica {
                    let client = try await RawClient.login(port: proxy.port, user: "app")
                    defer { client.close() }
                    try await body(fixture, client)
                }
            }
        }

        /// Whether the row with `id` is visible to the read, and whether a replica served it.
        static func read(_ connection: PostgresConnection, _ table: String, id: Int, inReadOnlyTransaction: Bool = false) async throws -> (found: Bool, onReplica: Bool) {
            if inReadOnlyTransaction { try await connection.run("begin read only") }
            let rows = try await connection.rows("select (select count(*) from \(unescaped: table) where v = \(id))::int, pg_is_in_recovery()")
            if inReadOnlyTransaction { try await connection.run("commit") }
            guard let row = rows.first else { throw HarnessError("the read returned no row") }
            let (count, onReplica) = try row.decode((Int, Bool).self)
            return (count == 1, onReplica)
        }

        /// Writes the row with `id` in one of three shapes.
        static func write(_ connection: PostgresConnection, _ fixture: RoutingFixture, id: Int, shape: Int) async throws {
            switch shape % 3 {
            case 0:
                try await connection.run("insert into \(unescaped: fixture.table) (v, note) values (\(id), 'ryw')")
            case 1:
                try await connection.run("begin")
                try await connection.run("insert into \(unescaped: fixture.table) (v, note) values (\(id), 'ryw')")
                try await connection.run("commit")
            default:
                try await connection.run("insert into \(unescaped: fixture.table) (v, note) select \(id), 'ryw' returning id")
            }
        }

        struct Tally: Sendable {
            var reads = 0, misses = 0, onReplica = 0
            static func + (a: Tally, b: Tally) -> Tally {
                Tally(reads: a.reads + b.reads, misses: a.misses + b.misses, onReplica: a.onReplica + b.onReplica)
            }
        }

        /// `clients` postgres-nio clients each write a row and read it back at once, `rounds` times, in
        /// shapes drawn from `seed`: autocommit or explicit-transaction writes, plain or READ ONLY reads.
        static func writeThenRead(port: Int, fixture: RoutingFixture, level: String, clients: Int, rounds: Int,
                                  seed: UInt64, firstID: Int) async throws -> Tally {
            try await withThrowingTaskGroup(of: Tally.self) { group in
                for client in 0..<clients {
                    group.addTask {
                        var random = SplitMix64(seed: seed &+ UInt64(client))
                        return try await withNIOConnection(port: port) { connection in
                            try await connection.run(PostgresQuery(unsafeSQL: "set switchyard.read_consistency = \(level)"))
                            var tally = Tally()
                            for round in 0..<rounds {
                                let id = firstID + client * rounds + round
                                try await write(connection, fixture, id: id, shape: Int(random.next() % 3))
                                let seen = try await read(connection, fixture.table, id: id, inReadOnlyTransaction: random.next() % 4 == 0)
                                tally.reads += 1
                                if !seen.found { tally.misses += 1 }
                                if seen.onReplica { tally.onReplica += 1 }
                            }
                            return tally
                        }
                    }
                }
                return try await group.reduce(Tally(), +)
            }
        }

        /// 20 clients × 500 rounds at `session`: no read misses its own write, and replicas still serve
        /// reads (the undelayed one). The same clients at `eventual` miss: the test can fail.
        @Test func sessionLevelNeverMissesTheClientsOwnWrite() async throws {
            let fixture = try await RoutingFixture.create()
            defer { Task { await fixture.drop() } }
            let seed = UInt64.random(in: 1...UInt64.max)
            try await withRoutingProxy(replicas: .bothReplicas) { proxy in
                try await Self.withDelayedReplica {
                    let session = try await Self.writeThenRead(port: proxy.port, fixture: fixture, level: "session",
                                                               clients: 20, rounds: 500, seed: seed, firstID: 1_000_000)
                    #expect(session.misses == 0, "seed \(seed): \(session.misses) of \(session.reads) reads missed the client's own write")
                    #expect(session.onReplica > 0, "seed \(seed): no read reached a replica at session level: \(session)")
                    let eventual = try await Self.writeThenRead(port: proxy.port, fixture: fixture, level: "eventual",
                                                                clients: 20, rounds: 50, seed: seed, firstID: 2_000_000)
                    #expect(eventual.misses > 0, "seed \(seed): eventual never missed, so this test could not fail: \(eventual)")
                    print("read-your-writes session: \(session); eventual: \(eventual); seed \(seed)")
                }
            }
        }

        /// Client A writes; client B, which never wrote, reads right after A's commit returns. At `database`
        /// B never misses; at `session` (B has no write of its own) it does.
        @Test func databaseLevelSeesOtherClientsWrites() async throws {
            try await Self.withWriterAndReader { fixture, writer, reader in
                try await writer.run("set switchyard.read_consistency = database")
                func run(_ level: String, rounds: Int, firstID: Int) async throws -> Tally {
                    try await reader.run(PostgresQuery(unsafeSQL: "set switchyard.read_consistency = \(level)"))
                    var tally = Tally()
                    for round in 0..<rounds {
                        try await Self.write(writer, fixture, id: firstID + round, shape: round)
                        let seen = try await Self.read(reader, fixture.table, id: firstID + round)
                        tally.reads += 1
                        if !seen.found { tally.misses += 1 }
                        if seen.onReplica { tally.onReplica += 1 }
                    }
                    return tally
                }
                let database = try await run("database", rounds: 300, firstID: 3_000_000)
                #expect(database.misses == 0, "\(database.misses) of \(database.reads) reads missed another client's committed write")
                #expect(database.onReplica > 0, "no read reached a replica at database level: \(database)")
                let session = try await run("session", rounds: 60, firstID: 3_100_000)
                #expect(session.misses > 0, "a reader without writes of its own never missed: this test could not fail: \(session)")
            }
        }

        /// A token from one connection (`SHOW switchyard.last_write_lsn`) set on another
        /// (`SET switchyard.min_read_lsn`) makes its reads wait for that write; both in the extended
        /// protocol (postgres-nio) here, and in the simple protocol in the psql test below.
        @Test func causalTokenCarriesAWriteAcrossConnections() async throws {
            try await Self.withWriterAndReader { fixture, writer, reader in
                var misses = 0, onReplica = 0
                let rounds = 150
                for round in 0..<rounds {
                    try await Self.write(writer, fixture, id: 4_000_000 + round, shape: round)
                    guard let token = try await writer.values("show switchyard.last_write_lsn", as: String.self).first else {
                        throw HarnessError("SHOW switchyard.last_write_lsn returned no row")
                    }
                    #expect(token != "0/0", "a session that wrote has a position")
                    try await reader.run(PostgresQuery(unsafeSQL: "set switchyard.min_read_lsn = '\(token)'"))
                    let seen = try await Self.read(reader, fixture.table, id: 4_000_000 + round)
                    if !seen.found { misses += 1 }
                    if seen.onReplica { onReplica += 1 }
                }
                #expect(misses == 0, "\(misses) of \(rounds) reads with the writer's token missed its write")
                #expect(onReplica > 0, "no read with a token reached a replica")
                // Without the token, the reader misses (it never wrote): the test can fail.
                try await reader.run("set switchyard.min_read_lsn = '0/0'")
                var missesWithout = 0
                for round in 0..<60 {
                    try await Self.write(writer, fixture, id: 4_100_000 + round, shape: round)
                    if try await !Self.read(reader, fixture.table, id: 4_100_000 + round).found { missesWithout += 1 }
                }
                #expect(missesWithout > 0, "the reader never missed without a token: this test could not fail")
            }
        }

        /// A client routed to the primary (`switchyard.route = primary`) writes without a position query;
        /// its reads that go to a replica after all (a hint, or the route set back to auto) still see the write.
        @Test func writesUnderRoutePrimaryAreSeenWhenReadsGoBackToReplicas() async throws {
            try await Self.withWriterAndReader { fixture, client, _ in
                var misses = 0
                for round in 0..<40 {
                    let id = 7_000_000 + round
                    try await client.run("set switchyard.route = primary")
                    try await Self.write(client, fixture, id: id, shape: round)
                    let hinted = try await client.rows("/* switchyard: replica */ select (select count(*) from \(unescaped: fixture.table) where v = \(id))::int")
                    if try hinted.first?.decode(Int.self) != 1 { misses += 1 }
                    try await client.run("set switchyard.route = auto")
                    if try await !Self.read(client, fixture.table, id: id).found { misses += 1 }
                }
                #expect(misses == 0, "\(misses) reads missed a write made under route = primary")
            }
        }

        /// The simple protocol (one Query per statement, as psql sends them, or several in one string):
        /// each read right after the client's write sees it, whatever the write's shape (drawn from a seed).
        @Test func simpleProtocolReadsSeeTheClientsWrites() async throws {
            let seed = UInt64.random(in: 1...UInt64.max)
            var random = SplitMix64(seed: seed)
            try await Self.withRawClient { fixture, client in
                var misses = 0, onReplica = 0
                for round in 0..<200 {
                    let id = 8_000_000 + round
                    let insert = "insert into \(fixture.table) (v, note) values (\(id), 'simple')"
                    // A whole transaction in one string: its COMMIT must not hide its INSERT.
                    let shapes = [insert, "begin; \(insert); commit", "\(insert); select 1", "set application_name = 'w'; \(insert)"]
                    _ = try await client.query(shapes[Int(random.next() % UInt64(shapes.count))])
                    let reply = try await client.query("select (select count(*) from \(fixture.table) where v = \(id))::int, pg_is_in_recovery()")
                    let row = reply.rowValues.first ?? []
                    if row.first ?? nil != "1" { misses += 1 }
                    if row.last ?? nil == "t" { onReplica += 1 }
                }
                #expect(misses == 0, "seed \(seed): \(misses) of 200 simple-protocol reads missed the client's write")
                #expect(onReplica > 0, "no simple-protocol read reached a replica")
            }
        }

        /// A client that writes and leaves at once (Terminate right after its insert's answer) leaves the
        /// position query's answer owed: that server connection must not go back to the pool, or a client
        /// already queued for it (one loop, one server connection) reads the position as its own answer.
        @Test func aWriterLeavingBeforeThePositionAnswerDoesNotLeakIt() async throws {
            let fixture = try await RoutingFixture.create()
            defer { Task { await fixture.drop() } }
            try await withRoutingProxy(["worker_threads": "1", "pool_size": "1"], replicas: .bothReplicas) { proxy in
                let reader = try await RawClient.login(port: proxy.port, user: "app")
                defer { reader.close() }
                for round in 0..<60 {
                    let writer = try await RawClient.login(port: proxy.port, user: "app")
                    defer { writer.close() }
                    // As `psql -c`: the insert's ReadyForQuery, then Terminate at once, while the position is
                    // owed; the reader asks for the primary at the same moment, so it waits for that connection.
                    _ = try await writer.query("insert into \(fixture.table) (v, note) values (\(round), 'leaving')")
                    async let leave: Void = writer.send(Wire.message("X"))
                    async let ask: Void = reader.send(Wire.query("/* switchyard: primary */ select 'mine', \(round)"))
                    _ = try await (leave, ask)
                    let reply = try await reader.readUntilReady(timeout: .seconds(10))
                    #expect(reply.rowValues == [["mine", "\(round)"]], "round \(round): the queued client got \(reply.rowValues)")
                }
                #expect(try await fixture.primaryCount(note: "leaving") == 60)
            }
        }

        /// Extended-protocol reads pipelined behind a write (one send: the write's batch and two read
        /// batches, each with its Sync) all see it.
        @Test func pipelinedReadsBehindAWriteSeeIt() async throws {
            try await Self.withRawClient { fixture, client in
                var misses = 0, reads = 0
                for round in 0..<100 {
                    let id = 5_000_000 + round
                    let write = "insert into \(fixture.table) (v, note) values (\(id), 'pipe')"
                    let read = "select (select count(*) from \(fixture.table) where v = \(id))::int"
                    let batch = { (sql: String) in RoutingWire.parse(sql) + RoutingWire.bind() + RoutingWire.execute() + RoutingWire.sync }
                    try await client.send(batch(write) + batch(read) + batch(read))
                    var ready = 0
                    while ready < 3 {
                        guard let frame = try await client.readMessage(timeout: .seconds(15)) else { throw HarnessError("connection closed") }
                        switch frame.id {
                        case "Z": ready += 1
                        case "E": throw HarnessError("error in the pipeline: \(frame.fields)")
                        case "D":
                            reads += 1
                            if Self.firstColumn(frame.body) != "1" { misses += 1 }
                        default: break
                        }
                    }
                }
                #expect(reads == 200)
                #expect(misses == 0, "\(misses) of \(reads) pipelined reads missed the write before them")
            }
        }

        /// The text of a DataRow's first column.
        static func firstColumn(_ body: [UInt8]) -> String? {
            guard body.count >= 6 else { return nil }
            let length = Int(Wire.int32Value(body, at: 2))
            guard length >= 0, body.count >= 6 + length else { return nil }
            return String(decoding: body[6..<(6 + length)], as: UTF8.self)
        }

        /// psql (simple protocol): the settings answer as Postgres' own would, bad values fail with 22023
        /// and leave the session usable, and a user's `read_consistency=` sets the starting level.
        @Test func settingsInTheSimpleProtocol() async throws {
            try await withRoutingProxy(replicas: .bothReplicas, userOptions: ["app": "read_consistency=database"]) { proxy in
                let result = try await psql(port: proxy.port, [
                    "show switchyard.read_consistency",
                    "set switchyard.read_consistency = 'eventual'",
                    "show switchyard.read_consistency",
                    "show switchyard.min_read_lsn",
                    "set switchyard.min_read_lsn = '0/16B3748'",
                    "show switchyard.min_read_lsn",
                    "set switchyard.read_consistency = session",
                    "create temporary table if not exists sy_ryw_probe (x int)",
                    "show switchyard.last_write_lsn",
                ])
                #expect(result.succeeded, "\(result)")
                // psql prints the tags of SET and CREATE too; keep the SHOW answers.
                let lines = result.output.split(separator: "\n").map(String.init).filter { $0 != "SET" && $0 != "CREATE TABLE" }
                #expect(Array(lines.prefix(4)) == ["database", "eventual", "0/0", "0/16B3748"], "\(result)")
                #expect(lines.first == "database", "the user's read_consistency= sets the level: \(result)")
                #expect(lines.contains("eventual") && lines.contains("0/16B3748"), "\(result)")
                #expect(lines.last.flatMap { LSNText($0) }.map { $0 > 0 } == true, "a write records a position: \(result)")

                // A token that could miss the session's writes is refused (55000), never a silent 0/0 or an old position.
                let eventual = try await psql(port: proxy.port, ["set switchyard.read_consistency = eventual", "show switchyard.last_write_lsn",
                                                                 "select 1 as still_usable"], onErrorStop: false)
                #expect(eventual.stderr.contains("ERROR:  write positions are not tracked at read_consistency = eventual"), "\(eventual)")
                #expect(eventual.lines.last == "1", "\(eventual)")
                let routed = try await psql(port: proxy.port, ["set switchyard.read_consistency = session", "set switchyard.route = primary",
                                                               "create temporary table if not exists sy_ryw_probe (x int)",
                                                               "show switchyard.last_write_lsn"], onErrorStop: false)
                #expect(routed.stderr.contains("ERROR:  the position of this session's last write was not recorded"), "\(routed)")

                let bad = try await psql(port: proxy.port, ["set switchyard.read_consistency = sometimes", "select 1 as still_usable"], onErrorStop: false)
                #expect(bad.stderr.contains("invalid value for parameter \"switchyard.read_consistency\": \"sometimes\""), "\(bad)")
                #expect(bad.stdout.contains("1"), "the session stays usable after the refused SET: \(bad)")
                let badToken = try await psql(port: proxy.port, ["set switchyard.min_read_lsn = 'not-a-position'"], onErrorStop: false)
                #expect(badToken.stderr.contains("invalid value for parameter \"switchyard.min_read_lsn\""), "\(badToken)")
            }
        }

        /// Operators see the positions: SHOW SERVERS' replay_lsn per replica, SHOW CLIENTS' level and
        /// last write per client; and the metrics count reads that had to see a write.
        @Test func operatorsSeeReplayPositionsAndWatermarks() async throws {
            let fixture = try await RoutingFixture.create()
            defer { Task { await fixture.drop() } }
            try await withRoutingProxy(["metrics_port": "0"], replicas: .bothReplicas) { proxy in
                try await withNIOConnection(port: proxy.port) { connection in
                    try await Self.write(connection, fixture, id: 6_000_000, shape: 0)
                    _ = try await Self.read(connection, fixture.table, id: 6_000_000)
                    let written = try await connection.values("show switchyard.last_write_lsn", as: String.self).first ?? ""
                    func console(_ sql: String) async throws -> [[String]] {
                        let result = try await psql(port: proxy.port, user: "admin", database: "switchyard", [sql])
                        guard result.succeeded else { throw HarnessError("\(sql): \(result)") }
                        return result.lines.map { $0.components(separatedBy: "|") }
                    }
                    let replicas = try await console("show servers").filter { $0.count > 11 && $0[1] == "replica" }
                    #expect(replicas.count == 2 && replicas.allSatisfy { LSNText($0[11]) != nil }, "replay_lsn per replica: \(replicas)")
                    let clients = try await console("show clients").filter { $0.count > 9 && $0[1] == "app" }
                    #expect(clients.contains { $0[8] == "session" && $0[9] == written }, "the client's level and last write (\(written)): \(clients)")
                }
            }
        }
    }
}

/// The byte position of a textual LSN (`16/B374D848`), for comparisons in tests.
func LSNText(_ text: String) -> UInt64? {
    let halves = text.split(separator: "/")
    guard halves.count == 2, let high = UInt64(halves[0], radix: 16), let low = UInt64(halves[1], radix: 16) else { return nil }
    return high << 32 | low
}
