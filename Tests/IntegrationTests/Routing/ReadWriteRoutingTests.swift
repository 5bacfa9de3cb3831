import Foundation
import PostgresNIO
import Testing

extension IntegrationTests.Routing {
    /// Which server answers: `pg_is_in_recovery()` is true on the replica, false on the primary.
    @Suite struct ReadWrite {
        // MARK: 1. Autocommit reads, transactions, READ ONLY

        /// psql (simple protocol): autocommit reads on the replica, a plain transaction on the primary,
        /// READ ONLY transactions (and any after `SET default_transaction_read_only = on`) on the replica.
        @Test func transactionsAndReadOnlyWithPsql() async throws {
            try await withRoutingProxy { proxy in
                let result = try await psql(port: proxy.port, [
                    "select 'autocommit', pg_is_in_recovery()",
                    "begin", "select 'begin', pg_is_in_recovery()", "commit",
                    "start transaction", "select 'start transaction', pg_is_in_recovery()", "commit",
                    "begin read only", "select 'begin read only', pg_is_in_recovery()", "commit",
                    "start transaction read only", "select 'start transaction read only', pg_is_in_recovery()", "commit",
                    "begin isolation level repeatable read, read only", "select 'begin iso rr, read only', pg_is_in_recovery()", "commit",
                    "begin read write", "select 'begin read write', pg_is_in_recovery()", "commit",
                    "select 'autocommit again', pg_is_in_recovery()",
                    "set default_transaction_read_only = on",
                    "begin", "select 'begin after default ro', pg_is_in_recovery(), current_setting('transaction_read_only')", "commit",
                    "set default_transaction_read_only = off",
                    "begin", "select 'begin after default rw', pg_is_in_recovery()", "commit",
                ])
                #expect(result.succeeded, "\(result)")
                let seen = result.labelled
                #expect(seen["autocommit"] == "t", "autocommit read should run on the replica: \(result)")
                #expect(seen["begin"] == "f", "BEGIN ... COMMIT should run on the primary: \(result)")
                #expect(seen["start transaction"] == "f", "\(result)")
                #expect(seen["begin read only"] == "t", "BEGIN READ ONLY should run on the replica: \(result)")
                #expect(seen["start transaction read only"] == "t", "\(result)")
                #expect(seen["begin iso rr, read only"] == "t", "\(result)")
                #expect(seen["begin read write"] == "f", "\(result)")
                #expect(seen["autocommit again"] == "t", "\(result)")
                #expect(seen["begin after default ro"] == "t|on", "after SET default_transaction_read_only = on, BEGIN should run on the replica: \(result)")
                #expect(seen["begin after default rw"] == "f", "\(result)")
            }
        }

        /// The same through postgres-nio (extended protocol: Parse/Bind/Execute/Sync per statement).
        @Test func transactionsAndReadOnlyWithPostgresNIO() async throws {
            try await withRoutingProxy { proxy in
                try await withNIOConnection(port: proxy.port) { connection in
                    func inRecovery() async throws -> Bool {
                        let answer: Bool? = try await connection.values("select pg_is_in_recovery()", as: Bool.self).first
                        guard let answer else { throw HarnessError("select pg_is_in_recovery() returned no row") }
                        return answer
                    }
                    func inTransaction(_ begin: String) async throws -> Bool {
                        try await connection.run(PostgresQuery(unsafeSQL: begin))
                        let answer = try await inRecovery()
                        try await connection.run("commit")
                        return answer
                    }
                    #expect(try await inRecovery() == true, "autocommit read should run on the replica")
                    #expect(try await inTransaction("begin") == false, "BEGIN ... COMMIT should run on the primary")
                    #expect(try await inTransaction("start transaction") == false)
                    #expect(try await inTransaction("begin read only") == true, "BEGIN READ ONLY should run on the replica")
                    #expect(try await inTransaction("start transaction read only") == true)
                    #expect(try await inTransaction("begin read write") == false)
                    #expect(try await inRecovery() == true)
                    try await connection.run("set default_transaction_read_only = on")
                    #expect(try await inTransaction("begin") == true, "after SET default_transaction_read_only = on, BEGIN should run on the replica")
                    try await connection.run("set default_transaction_read_only = off")
                    #expect(try await inTransaction("begin") == false)
                }
            }
        }

        // MARK: 2. Writes go to the primary

        /// Autocommit INSERT, nextval, set_config and a user-defined VOLATILE function that inserts all
        /// succeed, run on the primary (pg_is_in_recovery() in the same statement is false), and never even
        /// reach the replica (it would have logged a 25006 error with the statement). A STABLE user
        /// function goes to the replica once the catalog (pg_proc of health_check_database) is loaded.
        @Test func writesRunOnThePrimary() async throws {
            try await withRoutingFixture { fixture in
                try await withRoutingProxy(["health_check_database": "app"]) { proxy in
                    let marker = "sy-w-\(UUID().uuidString.prefix(8))"
                    let result = try await psql(port: proxy.port, [
                        "insert into \(fixture.table) (v, note) values (10, '\(marker)-insert')",
                        "select 'nextval', nextval('\(fixture.sequence)'), pg_is_in_recovery(), '\(marker)-1'",
                        "select 'set_config', set_config('switchyard_test.x', 'y', false), pg_is_in_recovery(), '\(marker)-2'",
                        "select 'writer', \(fixture.writer)(), pg_is_in_recovery(), '\(marker)-3'",
                        "select 'writer alone|' || \(fixture.writer)()",
                        "select 'reader', \(fixture.reader)()",
                    ])
                    #expect(result.succeeded, "\(result)")
                    let seen = result.labelled
                    #expect(seen["nextval"] == "1|f|\(marker)-1", "\(result)")
                    #expect(seen["set_config"] == "y|f|\(marker)-2", "\(result)")
                    #expect(seen["writer"] == "1|f|\(marker)-3", "\(result)")
                    #expect(seen["writer alone"] == "1", "\(result)")
                    #expect(seen["reader"] == "t", "a STABLE user function (pg_proc loaded from health_check_database) should run on the replica: \(result)")

                    try await withNIOConnection(port: proxy.port) { connection in
                        try await connection.run(PostgresQuery(unsafeSQL: "insert into \(fixture.table) (v, note) values (\(20), '\(marker)-insert')"))
                        let next = try await connection.rows(PostgresQuery(unsafeSQL: "select nextval('\(fixture.sequence)'), pg_is_in_recovery(), '\(marker)-4'"))
                        #expect(try next.map { try $0.decode((Int, Bool, String).self) }.map { "\($0.0)|\($0.1)" } == ["2|false"])
                        let config = try await connection.values(PostgresQuery(unsafeSQL: "select set_config('switchyard_test.x', 'z', false)"), as: String.self)
                        #expect(config == ["z"])
                        let writes = try await connection.rows(PostgresQuery(unsafeSQL: "select \(fixture.writer)(), pg_is_in_recovery(), '\(marker)-5'"))
                        #expect(try writes.map { try $0.decode((Int, Bool, String).self) }.map { "\($0.0)|\($0.1)" } == ["1|false"])
                        let alone = try await connection.values(PostgresQuery(unsafeSQL: "select \(fixture.writer)()"), as: Int.self)
                        #expect(alone == [1])
                        let reader = try await connection.values(PostgresQuery(unsafeSQL: "select \(fixture.reader)()"), as: Bool.self)
                        #expect(reader == [true], "a STABLE user function should run on the replica")
                    }

                    // Every write landed on the primary, exactly once.
                    #expect(try await fixture.primaryCount(note: "\(marker)-insert") == 2)
                    #expect(try await fixture.primaryCount(note: "fn") == 4)
                    // None of them went to the replica first (the safety net was not needed).
                    if ReplicaLog.isAvailable {
                        #expect(ReplicaLog.lines(containing: marker).isEmpty,
                                "a write reached the replica: \(ReplicaLog.lines(containing: marker))")
                    }
                }
            }
        }

        // MARK: 3. The 25006 safety net

        /// A write forced onto the replica (hint, or `SET switchyard.route TO replica`) is refused there
        /// with 25006, which Switchyard catches and re-runs on the primary: the client sees success, the
        /// replica's log shows the refusal, and the row is written exactly once.
        @Test func writeForcedOntoReplicaIsRerunOnPrimary() async throws {
            try await withRoutingFixture { fixture in
                try await withRoutingProxy { proxy in
                    let marker = "sy-sn-\(UUID().uuidString.prefix(8))"
                    let result = try await psql(port: proxy.port, [
                        "/* switchyard: replica */ select 'hint', \(fixture.writer)(), pg_is_in_recovery(), '\(marker)-1'",
                        "SET switchyard.route TO replica",
                        "select 'setting', \(fixture.writer)(), pg_is_in_recovery(), '\(marker)-2'",
                        "SHOW switchyard.route",
                    ])
                    #expect(result.succeeded, "\(result)")
                    #expect(result.labelled["hint"] == "1|f|\(marker)-1", "\(result)")
                    #expect(result.labelled["setting"] == "1|f|\(marker)-2", "\(result)")
                    #expect(result.rowLines.last == "replica", "\(result)")
                    #expect(try await fixture.primaryCount(note: "fn") == 2, "each forced write must land exactly once")

                    // Extended protocol (postgres-nio), with the hint.
                    try await withNIOConnection(port: proxy.port) { connection in
                        let rows = try await connection.rows(PostgresQuery(unsafeSQL:
                            "/* switchyard: replica */ select \(fixture.writer)(), pg_is_in_recovery(), '\(marker)-3'"))
                        #expect(try rows.map { try $0.decode((Int, Bool, String).self) }.map { "\($0.0)|\($0.1)" } == ["1|false"])
                    }
                    #expect(try await fixture.primaryCount(note: "fn") == 3, "each forced write must land exactly once")

                    if ReplicaLog.isAvailable {
                        // Proof that each really went to the replica first and was refused there.
                        for step in 1...3 {
                            let refusals = ReplicaLog.lines(containing: "\(marker)-\(step)").filter { $0.contains("STATEMENT:") }
                            #expect(refusals.count == 1, "step \(step): expected one refused statement in the replica log, got \(refusals)")
                        }
                    }
                }
            }
        }

        // MARK: 4. Hints and switchyard.route

        /// Comment hints beat the session setting; SET/SHOW switchyard.route are answered by the proxy (psql).
        @Test func hintsAndRouteSettingWithPsql() async throws {
            try await withRoutingProxy { proxy in
                let result = try await psql(port: proxy.port, [
                    "/* switchyard: primary */ select 'hint primary', pg_is_in_recovery()",
                    "-- switchyard: primary\nselect 'line hint primary', pg_is_in_recovery()",
                    "select 'auto', pg_is_in_recovery()",
                    "SHOW switchyard.route",
                    "SET switchyard.route TO primary",
                    "select 'route primary', pg_is_in_recovery()",
                    "SHOW switchyard.route",
                    "/* switchyard: replica */ select 'hint replica over route primary', pg_is_in_recovery()",
                    "SET switchyard.route TO auto",
                    "select 'route auto', pg_is_in_recovery()",
                    "set switchyard.route = 'replica'",
                    "begin", "select 'route replica, begin', pg_is_in_recovery()", "commit",
                    "SHOW switchyard.route",
                    "set session switchyard.route to auto",
                    "select 'back to auto', pg_is_in_recovery()",
                ])
                #expect(result.succeeded, "\(result)")
                let seen = result.labelled
                #expect(seen["hint primary"] == "f", "\(result)")
                #expect(seen["line hint primary"] == "f", "\(result)")
                #expect(seen["auto"] == "t", "\(result)")
                #expect(seen["route primary"] == "f", "\(result)")
                #expect(seen["hint replica over route primary"] == "t", "\(result)")
                #expect(seen["route auto"] == "t", "\(result)")
                #expect(seen["route replica, begin"] == "t", "\(result)")
                #expect(seen["back to auto"] == "t", "\(result)")
                #expect(result.rowLines.filter { !$0.contains("|") } == ["auto", "primary", "replica"], "SHOW switchyard.route answers: \(result)")
            }
        }

        /// Hints in the extended protocol (postgres-nio).
        @Test func hintsWithPostgresNIO() async throws {
            try await withRoutingProxy { proxy in
                try await withNIOConnection(port: proxy.port) { (connection: PostgresConnection) async throws in
                    #expect(try await connection.values("/* switchyard: primary */ select pg_is_in_recovery()", as: Bool.self) == [false])
                    #expect(try await connection.values("select pg_is_in_recovery()", as: Bool.self) == [true])
                    #expect(try await connection.values("-- switchyard: primary\nselect pg_is_in_recovery()", as: Bool.self) == [false])
                }
            }
        }

        /// `SET switchyard.route` / `SHOW switchyard.route` sent with the extended protocol (postgres-nio and
        /// JDBC always use it) must behave as with psql: the proxy answers them and the setting changes routing. (The proxy only answers them in simple Query messages today and forwards a Parse
        /// to Postgres, where `TO primary` is a syntax error — PRIMARY is reserved — and `TO replica`/`auto`
        /// silently set a placeholder GUC on some pooled server connection.)
        @Test func routeSettingWithExtendedProtocol() async throws {
            try await withRoutingProxy { proxy in
                try await withNIOConnection(port: proxy.port) { connection in
                    do {
                        try await connection.run("SET switchyard.route TO primary")
                    } catch {
                        Issue.record("SET switchyard.route TO primary over the extended protocol failed: \(String(reflecting: error))")
                    }
                    let afterSet = try await connection.values("select pg_is_in_recovery()", as: Bool.self)
                    #expect(afterSet == [false], "after SET switchyard.route TO primary (extended protocol), a read still ran on the replica")
                    let shown: [String]
                    do {
                        shown = try await connection.values("SHOW switchyard.route", as: String.self)
                    } catch {
                        shown = ["error: \(String(reflecting: error))"]
                    }
                    #expect(shown == ["primary"], "SHOW switchyard.route over the extended protocol")

                    // `TO replica` is valid SQL for Postgres too, so it is not even refused: it is just lost.
                    do {
                        try await connection.run("SET switchyard.route TO replica")
                    } catch {
                        Issue.record("SET switchyard.route TO replica over the extended protocol failed: \(String(reflecting: error))")
                    }
                    // With route replica a transaction runs on the replica too (as with psql, see hintsAndRouteSettingWithPsql).
                    try await connection.run("begin")
                    let inTransaction = try await connection.values("select pg_is_in_recovery()", as: Bool.self)
                    try await connection.run("commit")
                    #expect(inTransaction == [true], "after SET switchyard.route TO replica (extended protocol), BEGIN still ran on the primary")
                }
                // Control: psycopg 3 sends an execute() without parameters as a simple Query, which works.
                let result = try await python("""
                    with psycopg.connect(DSN, autocommit=True, prepare_threshold=None) as conn:
                        try:
                            conn.execute("SET switchyard.route TO primary")
                            error = None
                        except psycopg.Error as e:
                            error = f"{e.sqlstate}: {e}"
                        (r,) = conn.execute("select pg_is_in_recovery()").fetchone()
                    emit(error=error, inRecovery=r)
                    """, port: proxy.port)
                struct Output: Decodable { var error: String?; var inRecovery: Bool }
                let output = try result.json(Output.self)
                #expect(output.error == nil, "psycopg: SET switchyard.route TO primary failed: \(output.error ?? "")")
                #expect(output.inRecovery == false, "psycopg: after SET switchyard.route TO primary, a read ran on the replica")
            }
        }

        /// A route command pipelined behind statements still waiting for their server, and one inside a
        /// transaction, is answered by Switchyard in its place in the pipeline, and routes what follows it
        /// (before, it reached Postgres: `TO primary` is a syntax error there, `TO replica` a placeholder GUC).
        @Test func routeCommandsInPipelinesAndTransactions() async throws {
            try await withRoutingProxy(replicas: .bothReplicas) { proxy in
                let client = try await RawClient.login(port: proxy.port, user: "app")
                defer { client.close() }
                let simple = ["select 'a', pg_is_in_recovery()", "SET switchyard.route TO primary", "select 'b', pg_is_in_recovery()",
                              "SHOW switchyard.route", "SET switchyard.route TO auto", "select 'c', pg_is_in_recovery()"]
                try await client.send(simple.flatMap(Wire.query))
                let replies = try await client.readReplies(simple.count)
                #expect(replies.map(\.errors.count) == [0, 0, 0, 0, 0, 0], "simple pipeline: \(replies)")
                #expect(replies.map(\.rowValues) == [[["a", "t"]], [], [["b", "f"]], [["primary"]], [], [["c", "t"]]], "simple pipeline: \(replies)")

                // The same over the extended protocol, each statement with its own Sync, all in one write.
                let extended = ["select pg_is_in_recovery()", "SET switchyard.route TO primary", "select pg_is_in_recovery()",
                                "SET switchyard.route TO auto", "select pg_is_in_recovery()"]
                try await client.send(extended.flatMap(RoutingWire.batch))
                let answers = try await client.readReplies(extended.count)
                #expect(answers.map { $0.map(\.id) } == [["1", "2", "T", "D", "C", "Z"], ["1", "2", "n", "C", "Z"], ["1", "2", "T", "D", "C", "Z"],
                                                         ["1", "2", "n", "C", "Z"], ["1", "2", "T", "D", "C", "Z"]], "extended pipeline: \(answers)")
                #expect(answers.map(\.rowValues) == [[["t"]], [], [["f"]], [], [["t"]]], "extended pipeline: \(answers)")

                // Inside a transaction: answered with the transaction's status; it routes the units after it.
                try await client.send(["begin", "SET switchyard.route TO primary", "commit", "select pg_is_in_recovery()",
                                       "SET switchyard.route TO auto"].flatMap(Wire.query))
                let inTransaction = try await client.readReplies(5)
                #expect(inTransaction.map(\.errors.count) == [0, 0, 0, 0, 0], "in a transaction: \(inTransaction)")
                #expect(inTransaction.map { $0.last?.body } == [[UInt8(ascii: "T")], [UInt8(ascii: "T")], [UInt8(ascii: "I")], [UInt8(ascii: "I")],
                                                               [UInt8(ascii: "I")]], "ReadyForQuery statuses: \(inTransaction)")
                #expect(inTransaction[3].rowValues == [["f"]], "after SET switchyard.route TO primary in a transaction: \(inTransaction)")

                // In a failed transaction Postgres refuses every statement but the end of the block: so does this.
                try await client.send(["begin", "select 1/0", "SHOW switchyard.route", "rollback"].flatMap(Wire.query))
                let failed = try await client.readReplies(4)
                #expect(failed.map { $0.errors.compactMap(\.sqlState) } == [[], ["22012"], ["25P02"], []], "failed transaction: \(failed)")
                #expect(failed[2].last?.body == [UInt8(ascii: "E")], "\(failed)")

                // A statement Switchyard answers, prepared by name, is deallocated as Postgres would: after
                // DEALLOCATE its Bind is 26000, and a second DEALLOCATE is 26000 too.
                try await client.send(RoutingWire.parse("SHOW switchyard.route", statement: "route_stmt") + RoutingWire.sync)
                #expect(try await client.readUntilReady().map(\.id) == ["1", "Z"])
                try await client.send(Wire.query("DEALLOCATE route_stmt"))
                let deallocated = try await client.readUntilReady()
                #expect(deallocated.errors.isEmpty && deallocated.map(\.id) == ["C", "Z"], "\(deallocated)")
                try await client.send(RoutingWire.bind(statement: "route_stmt") + RoutingWire.execute() + RoutingWire.sync)
                let bound = try await client.readUntilReady()
                #expect(bound.errors.compactMap(\.sqlState) == ["26000"], "Bind after DEALLOCATE: \(bound)")
                try await client.send(Wire.query("DEALLOCATE route_stmt"))
                let again = try await client.readUntilReady()
                #expect(again.errors.compactMap(\.sqlState) == ["26000"], "DEALLOCATE twice: \(again)")
            }
        }

        /// `route=primary` on a user sends that user's reads to the primary; other users still read from
        /// the replica, and the user may switch to auto.
        @Test func perUserRoutePrimary() async throws {
            try await withRoutingProxy(userOptions: ["app": "route=primary"], probeUser: "app_md5") { proxy in
                let app = try await psql(port: proxy.port, user: "app", [
                    "select 'app', pg_is_in_recovery()",
                    "SHOW switchyard.route",
                    "SET switchyard.route TO auto",
                    "select 'app auto', pg_is_in_recovery()",
                ])
                #expect(app.succeeded, "\(app)")
                #expect(app.labelled["app"] == "f", "user app has route=primary: \(app)")
                #expect(app.rowLines.contains("primary"), "\(app)")
                #expect(app.labelled["app auto"] == "t", "\(app)")
                let other = try await psql(port: proxy.port, user: "app_md5", ["select 'other', pg_is_in_recovery()"])
                #expect(other.labelled["other"] == "t", "\(other)")
                let nio = try await withNIOConnection(port: proxy.port, user: "app") {
                    try await $0.values("select pg_is_in_recovery()", as: Bool.self)
                }
                #expect(nio == [false])
            }
        }

        // MARK: 5. Read-your-writes inside a transaction

        /// BEGIN; INSERT; SELECT sees the row (same primary backend throughout); COMMIT makes it durable.
        @Test func readYourWritesInsideTransaction() async throws {
            try await withRoutingFixture { fixture in
                try await withRoutingProxy { proxy in
                    let result = try await psql(port: proxy.port, [
                        "begin",
                        "select 'pid1', pg_backend_pid()",
                        "insert into \(fixture.table) (v, note) values (5, 'ryw-psql')",
                        "select 'visible', count(*) from \(fixture.table) where note = 'ryw-psql'",
                        "select 'in tx', pg_is_in_recovery()",
                        "select 'pid2', pg_backend_pid()",
                        "commit",
                        // A transaction that starts with a read and writes later stays on the primary too.
                        "begin",
                        "select 'read first', count(*), pg_is_in_recovery() from \(fixture.table) where note = 'ryw-psql'",
                        "insert into \(fixture.table) (v, note) values (6, 'ryw-psql')",
                        "select 'then visible', count(*) from \(fixture.table) where note = 'ryw-psql'",
                        "commit",
                    ])
                    #expect(result.succeeded, "\(result)")
                    let seen = result.labelled
                    #expect(seen["visible"] == "1", "\(result)")
                    #expect(seen["in tx"] == "f", "\(result)")
                    #expect(seen["pid1"] != nil && seen["pid1"] == seen["pid2"], "one backend for the whole transaction: \(result)")
                    #expect(seen["read first"] == "1|f", "\(result)")
                    #expect(seen["then visible"] == "2", "\(result)")

                    try await withNIOConnection(port: proxy.port) { connection in
                        try await connection.run("begin")
                        try await connection.run(PostgresQuery(unsafeSQL: "insert into \(fixture.table) (v, note) values (7, 'ryw-nio')"))
                        let count = try await connection.values(PostgresQuery(unsafeSQL: "select count(*) from \(fixture.table) where note = 'ryw-nio'"), as: Int.self)
                        #expect(count == [1], "the transaction must see its own insert")
                        #expect(try await connection.values("select pg_is_in_recovery()", as: Bool.self) == [false])
                        try await connection.run("commit")
                    }
                    #expect(try await fixture.primaryCount(note: "ryw-psql") == 2)
                    #expect(try await fixture.primaryCount(note: "ryw-nio") == 1)
                }
            }
        }
    }
}
