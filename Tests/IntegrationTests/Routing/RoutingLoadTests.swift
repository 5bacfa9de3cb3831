import Foundation
import PostgresNIO
import Testing

extension IntegrationTests.Routing {
    /// Routing under load and with pipelining: pgbench, psycopg threads, several queries in flight on
    /// one connection.
    @Suite struct Load {
        // MARK: 6. pgbench

        /// pgbench `-c 8 -j 2 -T 3` (select-only and tpcb-like, simple and extended protocol) through a
        /// proxy with the replica configured: no failed transaction; and while select-only runs, reads
        /// really land on the replica (a concurrent probe, and the replica's own transaction counter).
        @Test(arguments: ["simple", "extended"], [true, false])
        func pgbenchThroughRoutingProxy(mode: String, selectOnly: Bool) async throws {
            let commitsBefore = try await replicaBenchCommits()
            let (result, probe) = try await withRoutingProxy { proxy in
                let probe = SharedState(ProbeCounts())
                let bench = try await withThrowingTaskGroup(of: ProcessResult?.self) { group in
                    group.addTask {
                        try await routingPgbench(port: proxy.port, (selectOnly ? ["-S"] : []) + ["-M", mode, "-c", "8", "-j", "2", "-T", "3"])
                    }
                    group.addTask {
                        // A probe client reading alongside pgbench for ~3 s.
                        try await withNIOConnection(port: proxy.port, database: "bench") { connection in
                            let end = ContinuousClock.now + .seconds(3)
                            while ContinuousClock.now < end {
                                do {
                                    let onReplica = try await connection.values("select pg_is_in_recovery()", as: Bool.self, timeout: .seconds(10)) == [true]
                                    probe.withLock { if onReplica { $0.replica += 1 } else { $0.primary += 1 } }
                                } catch {
                                    probe.withLock { $0.errors.append(String(reflecting: error)) }
                                    return
                                }
                            }
                        }
                        return nil
                    }
                    var bench: ProcessResult?
                    for try await result in group { if let result { bench = result } }
                    return bench!
                }
                return (bench, probe.value)
            }
            #expect(result.succeeded, "\(result)")
            let processed = Self.number(after: "number of transactions actually processed: ", in: result.stdout)
            let failed = Self.number(after: "number of failed transactions: ", in: result.stdout)
            #expect((processed ?? 0) > 0, "\(result)")
            #expect(failed == 0, "pgbench reported failed transactions: \(result)")
            #expect(probe.errors.isEmpty, "probe client errors: \(probe.errors)")
            if selectOnly {
                let share = Double(probe.replica) / Double(max(1, probe.replica + probe.primary))
                #expect(share >= 0.8, "only \(probe.replica) of \(probe.replica + probe.primary) probe reads hit the replica")
                // The proxy has stopped, so its replica backends exited and flushed their statistics.
                let expected = (processed ?? 0) / 2
                var commits = 0
                let counted = try await eventually(within: .seconds(15), every: .milliseconds(250)) {
                    commits = try await replicaBenchCommits() - commitsBefore
                    return commits >= expected
                }
                #expect(counted, "the replica committed \(commits) transactions in database bench; pgbench -S ran \(processed ?? 0)")
            }
        }

        struct ProbeCounts: Sendable { var replica = 0, primary = 0, errors: [String] = [] }

        /// xact_commit of database bench on the replica.
        private func replicaBenchCommits() async throws -> Int {
            let output = try await ReplicaControl.query("select xact_commit from pg_stat_database where datname = 'bench'")
            guard let value = Int(output) else { throw HarnessError("xact_commit: \(output)") }
            return value
        }

        static func number(after prefix: String, in text: String) -> Int? {
            guard let range = text.range(of: prefix) else { return nil }
            return Int(text[range.upperBound...].prefix { $0.isNumber })
        }

        // MARK: 7. psycopg threads

        /// 20 psycopg 3 threads (autocommit, prepare_threshold=None) each interleave autocommit inserts,
        /// autocommit reads and small read-your-writes transactions: every answer is right, every row is there.
        @Test func psycopgThreadsReadAndWriteConcurrently() async throws {
            try await withRoutingFixture { fixture in
                try await withRoutingProxy { proxy in
                    let result = try await python("""
                        TABLE = os.environ["SY_TABLE"]
                        THREADS, N = 20, 15
                        errors, lock = [], threading.Lock()
                        totals = {"replica": 0, "primary": 0}
                        def fail(message):
                            with lock:
                                errors.append(message)
                        def worker(t):
                            try:
                                with psycopg.connect(DSN, autocommit=True, prepare_threshold=None) as conn:
                                    replica = primary = 0
                                    for i in range(N):
                                        k = t * 1000 + i + 1
                                        (rid,) = conn.execute(f"insert into {TABLE} (v, note) values (%s, %s) returning v",
                                                              (k, f"t{t}")).fetchone()
                                        if rid != k:
                                            fail(f"insert returned {rid}")
                                        on_replica, doubled = conn.execute("select pg_is_in_recovery(), %s::int * 2", (t * 1000 + i,)).fetchone()
                                        if doubled != (t * 1000 + i) * 2:
                                            fail(f"read returned {doubled}")
                                        if on_replica:
                                            replica += 1
                                        else:
                                            primary += 1
                                        with conn.transaction():
                                            conn.execute(f"insert into {TABLE} (v, note) values (%s, %s)", (-k, f"t{t}"))
                                            (count, rec) = conn.execute(f"select count(*), pg_is_in_recovery() from {TABLE} where note = %s", (f"t{t}",)).fetchone()
                                            if count != 2 * (i + 1) or rec:
                                                fail(f"thread {t} step {i}: transaction saw {count} rows (recovery={rec})")
                                    with lock:
                                        totals["replica"] += replica
                                        totals["primary"] += primary
                            except Exception as e:
                                fail(f"thread {t}: {e!r}")
                        threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
                        for th in threads: th.start()
                        for th in threads: th.join(90)
                        emit(errors=errors[:20], errorCount=len(errors), alive=sum(th.is_alive() for th in threads), **totals)
                        """, port: proxy.port, environment: ["SY_TABLE": fixture.table], timeout: .seconds(120))
                    struct Output: Decodable { var errors: [String]; var errorCount: Int; var alive: Int; var replica: Int; var primary: Int }
                    let output = try result.json(Output.self)
                    #expect(output.errorCount == 0, "\(output.errors)")
                    #expect(output.alive == 0, "threads still running: \(output.alive)")
                    #expect(output.replica + output.primary == 20 * 15)
                    #expect(output.replica > output.primary, "reads should mostly hit the replica: \(output.replica) replica, \(output.primary) primary")
                    #expect(try await fixture.primaryCount() == 20 * 15 * 2)
                    let distinct = try await fixture.primary(["select count(distinct v) from \(fixture.table)"]).output
                    #expect(distinct == "\(20 * 15 * 2)")
                }
            }
        }

        // MARK: 11. Pipelining on one connection

        /// postgres-nio with many queries in flight on ONE connection, selects and inserts mixed: every
        /// result is its own query's, and every insert happened once.
        @Test func postgresNIOPipelinedReadsAndWrites() async throws {
            try await withRoutingFixture { fixture in
                try await withRoutingProxy { proxy in
                    try await withNIOConnection(port: proxy.port) { connection in
                        let results = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                            for i in 0..<60 {
                                group.addTask {
                                    if i % 6 == 3 {
                                        let v = try await connection.values(PostgresQuery(unsafeSQL:
                                            "insert into \(fixture.table) (v, note) values (\(i), 'pipe') returning v"), as: Int.self)
                                        return (i, "w\(v)")
                                    }
                                    let v = try await connection.values("select \(i)::int * 7", as: Int.self)
                                    return (i, "r\(v)")
                                }
                            }
                            return try await group.reduce(into: [Int: String]()) { $0[$1.0] = $1.1 }
                        }
                        #expect(results.count == 60)
                        for (i, answer) in results {
                            #expect(answer == (i % 6 == 3 ? "w[\(i)]" : "r[\(i * 7)]"), "query \(i)")
                        }
                    }
                    #expect(try await fixture.primaryCount(note: "pipe") == 10)
                }
            }
        }

        /// Exactly ordered pipelines (one TCP write): reads, an insert, reads — as simple Query messages
        /// and as extended-protocol batches. The reads before the insert share a replica; the insert waits
        /// for them and runs on the primary; every answer arrives in order and is its own.
        @Test(arguments: [false, true])
        func orderedPipelineReadsWriteReads(extended: Bool) async throws {
            try await withRoutingFixture { fixture in
                try await withRoutingProxy { proxy in
                    let client = try await RawClient.login(port: proxy.port, user: "app")
                    defer { client.close() }
                    let statements = [
                        "select 'r1', pg_is_in_recovery()",
                        "select 'r2', pg_is_in_recovery()",
                        "insert into \(fixture.table) (v, note) values (42, 'ordered') returning 'w', v::text",
                        "select 'r3', pg_is_in_recovery()",
                        "select 'r4', pg_is_in_recovery()",
                    ]
                    try await client.send(statements.flatMap { extended ? RoutingWire.batch($0) : Wire.query($0) })
                    let replies = try await client.readReplies(statements.count)
                    #expect(replies.flatMap(\.errors).isEmpty, "\(replies)")
                    let rows = replies.map { $0.rowValues.first ?? [] }
                    // The reads after the insert may share its primary unit (read-your-writes) or go back to the
                    // replica; either way each answer is its own.
                    #expect(rows.map { $0.first ?? nil } == ["r1", "r2", "w", "r3", "r4"], "\(replies)")
                    #expect(rows.prefix(2).map { $0.last ?? nil } == ["t", "t"], "the reads before the insert should run on the replica: \(replies)")
                    #expect(rows[2] == ["w", "42"], "\(replies)")
                    #expect(try await fixture.primaryCount(note: "ordered") == 1)
                }
            }
        }

        /// A pipelined unit on the replica whose FIRST statement is refused with 25006 is re-run on the
        /// primary. The replica still owes the answer to the SECOND statement (here it sleeps 1.5 s there,
        /// 0 s on the primary), so that server connection must not go back to the pool as if idle: the
        /// client's next read, leased from that pool, must get its own answer, not the stale one.
        @Test(arguments: [false, true])
        func safetyNetRetryDoesNotLeakPipelinedAnswers(extended: Bool) async throws {
            try await withRoutingFixture { fixture in
                // One event loop: one replica pool, so the next read leases the connection the retry released.
                // `eventual`: the next read must go to that replica pool even if replay of the write lags.
                try await withRoutingProxy(["worker_threads": "1", "read_consistency": "eventual"]) { proxy in
                    let client = try await RawClient.login(port: proxy.port, user: "app")
                    defer { client.close() }
                    let first = "/* switchyard: replica */ select 'first', \(fixture.writer)()::text"
                    let second = "select 'second', pg_sleep(case when pg_is_in_recovery() then 1.5 else 0 end)::text"
                    try await client.send([first, second].flatMap { extended ? RoutingWire.batch($0) : Wire.query($0) })
                    let replies = try await client.readReplies(2)
                    #expect(replies.flatMap(\.errors).isEmpty, "\(replies)")
                    #expect(replies.map { $0.rowValues.first ?? [] } == [["first", "1"], ["second", ""]], "\(replies)")

                    let third = "select 'third', pg_is_in_recovery()"
                    try await client.send(extended ? RoutingWire.batch(third) : Wire.query(third))
                    let reply = try await client.readReplies(1)[0]
                    #expect(reply.rowValues.first == ["third", "t"], """
                        the next read got someone else's answer \(reply.rowValues): after the 25006 retry, \
                        ClientSession.restartUnit released the replica connection to the pool although it still \
                        owed the answer to the pipelined second statement
                        """)
                    // Afterwards the session still answers correctly.
                    let fourth = try await client.query("select 'fourth'", timeout: .seconds(10))
                    #expect(fourth.rowValues.first == ["fourth"], "\(fourth)")
                    #expect(try await fixture.primaryCount(note: "fn") == 1, "the write must land exactly once")
                }
            }
        }
    }
}
