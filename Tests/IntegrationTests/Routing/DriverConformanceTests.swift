import Foundation
import PostgresNIO
import Testing

extension IntegrationTests.Routing {
    /// Transaction mode as drivers use it, through a proxy with BOTH replicas of the test cluster:
    /// psycopg's automatic prepare, pipelines that mix reads and writes, Flush without Sync, the
    /// unnamed statement across round trips, DEALLOCATE, stale plans, LISTEN, temporary and unlogged
    /// tables. Each runs with routing on (`auto`) and with everything on the primary (`primary`).
    @Suite struct Drivers {
        static let routes = ["auto", "primary"]

        /// 20 psycopg threads × 200 parameterized reads with the default `prepare_threshold` (psycopg
        /// prepares `_pg3_0` on the 6th run and then binds it): every answer right, none fails, and
        /// with routing on the reads land on both replicas.
        @Test(arguments: routes)
        func psycopgAutoPrepareAcrossTwoReplicas(route: String) async throws {
            try await withRoutingProxy(["default_route": route], replicas: .bothReplicas, waitForReplica: route == "auto") { proxy in
                let result = try await python("""
                    THREADS, N = 20, 200
                    errors, lock, ports = [], threading.Lock(), {}
                    def worker(t):
                        try:
                            with psycopg.connect(dsn(dbname="bench"), autocommit=True) as conn:
                                for i in range(N):
                                    aid = (t * N + i) % 100000 + 1
                                    row = conn.execute("SELECT aid, abalance, inet_server_port() FROM pgbench_accounts WHERE aid = %s", (aid,)).fetchone()
                                    if row[0] != aid:
                                        raise AssertionError(f"asked for {aid}, got {row}")
                                    with lock:
                                        ports[row[2]] = ports.get(row[2], 0) + 1
                        except Exception as e:
                            with lock:
                                errors.append(f"thread {t}: {e!r}")
                    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
                    for th in threads: th.start()
                    for th in threads: th.join(120)
                    emit(errors=errors[:10], errorCount=len(errors), ports={str(k): v for k, v in ports.items()})
                    """, port: proxy.port, timeout: .seconds(180))
                struct Output: Decodable { var errors: [String]; var errorCount: Int; var ports: [String: Int] }
                let output = try result.json(Output.self)
                #expect(output.errorCount == 0, "\(output.errors)\n\(proxy.log(limit: 2000))")
                #expect(output.ports.values.reduce(0, +) == 20 * 200)
                if route == "auto" {
                    #expect(output.ports["\(RoutingCluster.replicaPort)", default: 0] > 0, "reads by server port: \(output.ports)")
                    #expect(output.ports["\(RoutingCluster.replica2Port)", default: 0] > 0, "reads by server port: \(output.ports)")
                } else {
                    #expect(output.ports.keys.sorted() == ["\(TestEnvironment.pgPort)"], "reads by server port: \(output.ports)")
                }
            }
        }

        /// pgbench in every `-M` mode, select-only and tpcb-like, 8 clients: no failed transaction; with
        /// routing on, both replicas commit select-only transactions of database bench.
        @Test(arguments: routes, ["simple", "extended", "prepared"])
        func pgbenchEveryProtocolMode(route: String, mode: String) async throws {
            func replicaCommits() async throws -> [Int] {
                var commits: [Int] = []
                for port in [RoutingCluster.replicaPort, RoutingCluster.replica2Port] {
                    let output = try await ReplicaControl.psql(port: port, "select xact_commit from pg_stat_database where datname = 'bench'").output
                    commits.append(Int(output) ?? -1)
                }
                return commits
            }
            let before = try await replicaCommits()
            try await withRoutingProxy(["default_route": route], replicas: .bothReplicas, waitForReplica: route == "auto") { proxy in
                for selectOnly in [true, false] {
                    let result = try await routingPgbench(port: proxy.port, (selectOnly ? ["-S"] : []) + ["-M", mode, "-c", "8", "-j", "2", "-T", "2"])
                    #expect(result.succeeded && result.stdout.contains("number of failed transactions: 0 (0.000%)"),
                            "\(mode) select-only=\(selectOnly): \(result)\n\(proxy.log(limit: 1500))")
                }
            }
            guard route == "auto" else { return }
            // The proxy has stopped, so its replica backends exited and flushed their statistics.
            var after: [Int] = []
            let counted = try await eventually(within: .seconds(15), every: .milliseconds(250)) {
                after = try await replicaCommits()
                return zip(after, before).allSatisfy { $0 - $1 > 100 }
            }
            #expect(counted, "bench commits on the replicas before \(before), after \(after)")
        }

        /// Extended-protocol batches ending in Flush, no Sync: two reads (a replica may answer them), then
        /// a primary-only call. Each gets its answer before the client sends Sync; Sync then ends the batch.
        @Test(arguments: routes)
        func flushWithoutSyncIsAnsweredWhateverTheServer(route: String) async throws {
            try await withRoutingProxy(["default_route": route], replicas: .bothReplicas, waitForReplica: route == "auto") { proxy in
                let client = try await RawClient.login(port: proxy.port, user: "app")
                defer { client.close() }
                for sql in ["SELECT 1", "SELECT 2", "SELECT pg_advisory_unlock(1, 1)", "SELECT 4"] {
                    try await client.send(RoutingWire.parse(sql) + RoutingWire.bind() + RoutingWire.describePortal()
                                          + RoutingWire.execute() + Wire.message("H"))
                    // (pg_advisory_unlock of a lock not held adds a WARNING notice.)
                    let frames = try await client.readFrames(until: "C", timeout: .seconds(10)).filter { $0.id != "N" }
                    #expect(frames.map(\.id) == ["1", "2", "T", "D", "C"], "\(sql): \(frames)")
                }
                try await client.send(RoutingWire.sync)
                let ready = try await client.readUntilReady()
                #expect(ready.map(\.id) == ["Z"], "\(ready)")
                let after = try await client.query("select 'after'")
                #expect(after.rowValues.first == ["after"])
            }
        }

        /// A pipeline of two reads and a write with no Sync in between (pgbench `\startpipeline`,
        /// -M extended, 4 clients, 10 s): it must never deadlock on the replica's unsent answers.
        @Test(arguments: routes)
        func pgbenchPipelineMixingReadsAndWrites(route: String) async throws {
            try await withRoutingProxy(["default_route": route], replicas: .bothReplicas, waitForReplica: route == "auto") { proxy in
                let directory = proxy.directory
                let script = directory + "/pipeline.sql"
                try """
                    \\set aid random(1, 100000)
                    \\set delta random(-5000, 5000)
                    \\startpipeline
                    SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
                    SELECT count(*) FROM pgbench_branches;
                    UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
                    \\endpipeline

                    """.write(toFile: script, atomically: true, encoding: .utf8)
                let seconds = route == "auto" ? "10" : "3"
                let result = try await routingPgbench(port: proxy.port, ["-M", "extended", "-c", "4", "-j", "2", "-T", seconds, "-f", script],
                                                      timeout: .seconds(60))
                #expect(result.succeeded, "\(result)\n\(proxy.log(limit: 2000))")
                #expect(result.stdout.contains("number of failed transactions: 0 (0.000%)"), "\(result)")
                let processed = result.stdout.split(separator: "\n").first { $0.contains("number of transactions actually processed") }
                #expect(processed != nil, "\(result)")
            }
        }

        /// In a pipeline whose replica part failed, Postgres skips the rest up to Sync: the write after
        /// the failed read must not run on the primary either.
        @Test func failedReadInPipelineSkipsTheWriteAfterIt() async throws {
            try await withRoutingFixture { fixture in
                try await withRoutingProxy(replicas: .bothReplicas) { proxy in
                    let client = try await RawClient.login(port: proxy.port, user: "app")
                    defer { client.close() }
                    let read = "SELECT 1 / (pg_is_in_recovery()::int - 1)"   // fails on a replica only
                    let write = "INSERT INTO \(fixture.table) (v, note) VALUES (7, 'skipped')"
                    try await client.send(RoutingWire.parse(read) + RoutingWire.bind() + RoutingWire.execute()
                                          + RoutingWire.parse(write) + RoutingWire.bind() + RoutingWire.execute() + RoutingWire.sync)
                    let reply = try await client.readUntilReady(timeout: .seconds(15))
                    #expect(reply.last?.id == "Z", "\(reply)")
                    #expect(reply.filter { $0.id == "E" }.count == 1, "\(reply)")
                    #expect(try await fixture.primaryCount(note: "skipped") == 0, "the write after the failed read ran")
                }
            }
        }

        /// `PQprepare(conn, "", ...)` then, in later round trips, `PQdescribePrepared(conn, "")` and
        /// `PQexecPrepared(conn, "")`: the unnamed statement outlives its Sync, whichever server runs
        /// the next unit. A session that never parsed one gets Postgres' 26000, not another client's.
        @Test(arguments: routes)
        func unnamedStatementOutlivesItsSync(route: String) async throws {
            try await withRoutingProxy(["default_route": route], replicas: .bothReplicas, waitForReplica: route == "auto") { proxy in
                let other = try await RawClient.login(port: proxy.port, user: "app")
                defer { other.close() }
                let client = try await RawClient.login(port: proxy.port, user: "app")
                defer { client.close() }
                for round in 0..<6 {
                    try await other.send(RoutingWire.parse("SELECT 'other'") + RoutingWire.sync)
                    _ = try await other.readUntilReady()
                    try await client.send(RoutingWire.parse("SELECT \(round)::int AS n") + RoutingWire.sync)
                    let parsed = try await client.readUntilReady()
                    #expect(parsed.map(\.id) == ["1", "Z"], "\(parsed)")
                    try await client.send(Wire.message("D", [UInt8(ascii: "S"), 0]) + RoutingWire.sync)
                    let described = try await client.readUntilReady()
                    #expect(described.map(\.id) == ["t", "T", "Z"], "round \(round): \(described)")
                    try await client.send(RoutingWire.bind() + RoutingWire.execute() + RoutingWire.sync)
                    let executed = try await client.readUntilReady()
                    #expect(executed.rowValues == [["\(round)"]], "round \(round): \(executed)")
                }
                let fresh = try await RawClient.login(port: proxy.port, user: "app")
                defer { fresh.close() }
                try await fresh.send(RoutingWire.bind() + RoutingWire.execute() + RoutingWire.sync)
                let refused = try await fresh.readUntilReady()
                #expect(refused.errors.compactMap(\.sqlState) == ["26000"], "\(refused)")
            }
        }

        /// psycopg evicts its prepared statements with `DEALLOCATE name` (prepared_max): that works, and
        /// SQL `DEALLOCATE name` / `DEALLOCATE ALL` leave the client's statements exactly as Postgres would.
        @Test(arguments: routes)
        func deallocateOfProtocolStatements(route: String) async throws {
            try await withRoutingProxy(["default_route": route], replicas: .bothReplicas, waitForReplica: route == "auto") { proxy in
                let result = try await python("""
                    errors = []
                    with psycopg.connect(DSN, autocommit=True, prepare_threshold=0) as conn:
                        conn.prepared_max = 2
                        for rnd in range(3):
                            for k in range(6):
                                (v,) = conn.execute(f"SELECT %s::int + {k}", (rnd,)).fetchone()
                                if v != rnd + k:
                                    errors.append(f"{rnd}/{k}: {v}")
                    emit(errors=errors)
                    """, port: proxy.port)
                struct Output: Decodable { var errors: [String] }
                #expect(try result.json(Output.self).errors == [], "\(result)")

                let client = try await RawClient.login(port: proxy.port, user: "app")
                defer { client.close() }
                try await client.send(RoutingWire.parse("SELECT 42", statement: "s1") + RoutingWire.sync)
                _ = try await client.readUntilReady()
                let deallocated = try await client.query("DEALLOCATE s1")
                #expect(deallocated.commandTags == ["DEALLOCATE"], "\(deallocated)")
                try await client.send(RoutingWire.bind(statement: "s1") + RoutingWire.execute() + RoutingWire.sync)
                let gone = try await client.readUntilReady()
                #expect(gone.errors.compactMap(\.sqlState) == ["26000"], "\(gone)")
                let unknown = try await client.query("DEALLOCATE nosuch")
                #expect(unknown.errors.compactMap(\.sqlState) == ["26000"], "\(unknown)")
                let all = try await client.query("DEALLOCATE ALL")
                #expect(all.commandTags == ["DEALLOCATE ALL"], "\(all)")
            }
        }

        /// DDL changes the result of a statement clients share on a server: the next client preparing
        /// it gets the new shape (as on a fresh direct connection), it does not keep failing with 0A000.
        @Test func stalePlanIsPreparedAgain() async throws {
            try await withRoutingFixture { fixture in
                // One loop and one server connection, so every client shares the same server-side statement.
                try await withRoutingProxy(["default_route": "primary", "worker_threads": "1", "pool_size": "1"], replicas: .bothReplicas,
                                           waitForReplica: false) { proxy in
                    let result = try await python("""
                        TABLE = os.environ["SY_TABLE"]
                        outcome = []
                        def run():
                            with psycopg.connect(DSN, autocommit=True, prepare_threshold=0) as conn:
                                try:
                                    return len(conn.execute(f"SELECT * FROM {TABLE} LIMIT 1").description)
                                except Exception as e:
                                    return repr(e)
                        outcome.append(run())
                        with psycopg.connect(dsn(port=os.environ["PG_PORT"]), autocommit=True) as direct:
                            direct.execute(f"ALTER TABLE {TABLE} ADD COLUMN extra int")
                        for _ in range(3):
                            outcome.append(run())
                        emit(outcome=[str(o) for o in outcome])
                        """, port: proxy.port, environment: ["SY_TABLE": fixture.table, "PG_PORT": "\(TestEnvironment.pgPort)"])
                    struct Output: Decodable { var outcome: [String] }
                    let outcome = try result.json(Output.self).outcome
                    #expect(outcome.count == 4, "\(result)")
                    // A direct connection preparing the statement after the DDL sees the new column at once;
                    // a client sharing a stale server-side statement may see 0A000 once, never twice.
                    let columns = Int(outcome[0]) ?? 0
                    #expect(columns > 0, "\(outcome)")
                    #expect(outcome.suffix(2).allSatisfy { Int($0) == columns + 1 }, "\(outcome)")
                    #expect(outcome.filter { $0.contains("cached plan") }.count <= 1, "\(outcome)")
                }
            }
        }

        /// LISTEN in transaction mode: the client keeps its server connection while it listens, gets the
        /// notifications, and gives the connection back after UNLISTEN *.
        @Test(arguments: routes)
        func listenInTransactionMode(route: String) async throws {
            try await withRoutingProxy(["default_route": route, "pool_size": "4"], replicas: .bothReplicas, waitForReplica: route == "auto") { proxy in
                let result = try await python("""
                    got = []
                    with psycopg.connect(DSN, autocommit=True) as listener, psycopg.connect(DSN, autocommit=True) as sender:
                        listener.add_notify_handler(lambda n: got.append((n.channel, n.payload)))
                        listener.execute("LISTEN sy_jobs")
                        (pid,) = listener.execute("SELECT pg_backend_pid()").fetchone()
                        for i in range(3):
                            sender.execute("SELECT pg_notify('sy_jobs', %s)", (f"job{i}",))
                            sender.execute("SELECT 1")
                        # Reads while listening stay on the listening server connection.
                        pids = {listener.execute("SELECT pg_backend_pid()").fetchone()[0] for _ in range(5)}
                        deadline = time.time() + 5
                        while len(got) < 3 and time.time() < deadline:
                            listener.execute("SELECT 1")
                            time.sleep(0.05)
                        listener.execute("UNLISTEN *")
                    emit(got=[f"{c}:{p}" for c, p in got], samePid=(pids == {pid}))
                    """, port: proxy.port)
                struct Output: Decodable { var got: [String]; var samePid: Bool }
                let output = try result.json(Output.self)
                #expect(output.got == ["sy_jobs:job0", "sy_jobs:job1", "sy_jobs:job2"], "\(result)")
                #expect(output.samePid, "\(result)")
            }
        }

        /// A read of an unlogged table routed to a replica is refused there (0A000) and re-run on the
        /// primary unseen; a session that created a temporary table keeps reading it.
        @Test func unloggedAndTemporaryTablesAreRead() async throws {
            let table = "sy_unlogged_\(UInt32.random(in: 0..<UInt32.max))"
            _ = try await superuserQuery("CREATE UNLOGGED TABLE \(table) (v int); INSERT INTO \(table) VALUES (1), (2); GRANT ALL ON \(table) TO app",
                                         database: "app")
            defer { Task { _ = try? await superuserQuery("DROP TABLE IF EXISTS \(table)", database: "app") } }
            /// Both replicas have replayed the CREATE of `name` (an unlogged table's definition is WAL-logged).
            func replayed(_ name: String) async throws -> Bool {
                try await eventually(within: .seconds(10), every: .milliseconds(50)) {
                    for port in [RoutingCluster.replicaPort, RoutingCluster.replica2Port] {
                        if try await ReplicaControl.psql(port: port, "select to_regclass('\(name)') is not null", database: "app").output != "t" {
                            return false
                        }
                    }
                    return true
                }
            }
            #expect(try await replayed(table))
            // The catalog (function volatility, unlogged relations) comes from health_check_database.
            try await withRoutingProxy(["health_check_database": "app"], replicas: .bothReplicas) { proxy in
                let client = try await RawClient.login(port: proxy.port, user: "app")
                defer { client.close() }
                let simple = try await client.query("SELECT sum(v) FROM \(table)")
                #expect(simple.rowValues == [["3"]], "\(simple)")
                try await client.send(RoutingWire.batch("SELECT count(*) FROM \(table)"))
                let extended = try await client.readUntilReady()
                #expect(extended.rowValues == [["2"]], "\(extended)")
                #expect(!proxy.log().contains("replica refused the statement"), "the catalog should have sent these to the primary")
                // Created after the proxy loaded the catalog: the replica refuses it (0A000) and the read is
                // re-run on the primary before the client sees anything.
                let late = table + "_late"
                _ = try await superuserQuery("CREATE UNLOGGED TABLE \(late) (v int); INSERT INTO \(late) VALUES (7); GRANT ALL ON \(late) TO app",
                                             database: "app")
                defer { Task { _ = try? await superuserQuery("DROP TABLE IF EXISTS \(late)", database: "app") } }
                #expect(try await replayed(late))
                let lateRead = try await client.query("SELECT v FROM \(late)")
                #expect(lateRead.rowValues == [["7"]], "\(lateRead)")
                #expect(proxy.log().contains("replica refused the statement"), "the read should have been re-run: \(proxy.log(limit: 1500))")

                _ = try await client.query("CREATE TEMP TABLE sy_scratch AS SELECT 5 AS v")
                for _ in 0..<5 {
                    let read = try await client.query("SELECT v, pg_is_in_recovery() FROM sy_scratch")
                    #expect(read.rowValues == [["5", "f"]], "\(read)")
                }
                _ = try await client.query("DISCARD ALL")
                let gone = try await client.query("SELECT v FROM sy_scratch")
                #expect(gone.errors.compactMap(\.sqlState) == ["42P01"], "\(gone)")
            }
        }

        /// The server of a listening (so pinned) transaction-mode client is terminated: the client gets
        /// Postgres' own FATAL 57P01, exactly one ErrorResponse, then the close.
        @Test func terminatedServerGivesOneFatal() async throws {
            try await withRoutingProxy(replicas: .bothReplicas) { proxy in
                let client = try await RawClient.login(port: proxy.port, user: "app")
                defer { client.close() }
                _ = try await client.query("LISTEN sy_terminate")
                let pid = try #require(try await client.query("SELECT pg_backend_pid()").rowValues.first?.first ?? nil)
                _ = try await superuserQuery("SELECT pg_terminate_backend(\(pid))")
                let frames = try await client.readUntilClosed(timeout: .seconds(10))
                let errors = frames.errors
                #expect(errors.compactMap(\.sqlState) == ["57P01"], "\(frames)")
            }
        }
    }
}
