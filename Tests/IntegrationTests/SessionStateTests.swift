import Foundation
import Testing

extension IntegrationTests {
    /// Session state exactly as the server has it: what a client is told in ParameterStatus equals
    /// what `SHOW` returns on the server it uses, across reuse, resets and both pool modes; a server's
    /// own FATAL is the only error; database DDL is not blocked by Switchyard's idle connections.
    @Suite struct SessionState {
        static let modes = ["transaction", "session"]

        /// One loop, one server connection per pool: reuse is certain.
        static func settings(_ mode: String, _ extra: [String: String] = [:]) -> [String: String] {
            ["pool_mode": mode, "pool_size": "1", "worker_threads": "1", "default_route": "primary"].merging(extra) { $1 }
        }

        /// Invariant: after every step, every reported parameter a client was last told equals SHOW on the
        /// server it uses. Clients with odd start-up spellings take turns on one server connection and run
        /// random SET / RESET / SET LOCAL / DISCARD ALL. The seed is printed on failure.
        @Test(arguments: modes)
        func reportedParametersMatchTheServer(mode: String) async throws {
            let seed = UInt64.random(in: 1...1_000_000)
            try await withRoutingProxy(Self.settings(mode), replicas: [], waitForReplica: false) { proxy in
                let result = try await python("""
                    import random
                    SEED = int(os.environ["SY_SEED"]); SESSION = os.environ["SY_MODE"] == "session"
                    rng = random.Random(SEED)
                    NAMES = ["DateStyle", "IntervalStyle", "TimeZone", "standard_conforming_strings", "application_name", "client_encoding"]
                    VALUES = {
                        "DateStyle": ["'ISO, MDY'", "'Postgres, DMY'", "'sql, ymd'", "German", "'postgres,mdy'"],
                        "IntervalStyle": ["postgres", "iso_8601", "sql_standard", "postgres_verbose"],
                        "TimeZone": ["'UTC'", "'Europe/Berlin'", "'America/New_York'", "'utc'", "'+02'"],
                        "standard_conforming_strings": ["on", "off", "true", "0"],
                        "application_name": ["'alpha'", "'beta'", "'Gamma Ray'"],
                        "client_encoding": ["'UTF8'", "'utf-8'", "'utf_8'"],
                    }
                    STARTUPS = [
                        dict(client_encoding="utf-8", options="-c datestyle=postgres,dmy -c TimeZone=utc"),
                        dict(options="-c intervalstyle=ISO_8601 -c standard_conforming_strings=off", application_name="start"),
                        dict(client_encoding="Utf8", options="-c DateStyle=SQL,YMD"),
                    ]
                    failures, steps = [], 0
                    def check(conn, who, what):
                        for name in NAMES:
                            told = conn.info.parameter_status(name)
                            (shown,) = conn.execute(f"SHOW {name}").fetchone()
                            if told != shown:
                                failures.append(f"seed {SEED} step {steps} client {who} after {what}: told {name}={told!r}, SHOW says {shown!r}")
                    def step(conn, who):
                        global steps
                        steps += 1
                        kind = rng.choice(["set", "set", "set", "reset", "resetall", "local", "discard"])
                        name = rng.choice(NAMES)
                        if kind == "set":
                            what = f"SET {name} = {rng.choice(VALUES[name])}"
                            conn.execute(what)
                        elif kind == "reset":
                            what = f"RESET {name}"
                            conn.execute(what)
                        elif kind == "resetall":
                            what = "RESET ALL"
                            conn.execute(what)
                        elif kind == "discard":
                            what = "DISCARD ALL"
                            conn.execute(what)
                        else:
                            what = f"SET LOCAL {name} = {rng.choice(VALUES[name])}"
                            conn.execute("BEGIN")
                            conn.execute(what)
                            check(conn, who, what + " (in the transaction)")
                            conn.execute("COMMIT")
                        check(conn, who, what)
                    def connect(who):
                        return psycopg.connect(dsn(**STARTUPS[who % len(STARTUPS)]), autocommit=True, prepare_threshold=None)
                    if SESSION:
                        for turn in range(24):
                            who = rng.randrange(3)
                            with connect(who) as conn:
                                check(conn, who, "login")
                                for _ in range(rng.randrange(1, 12)):
                                    step(conn, who)
                    else:
                        conns = [connect(i) for i in range(3)]
                        for who, conn in enumerate(conns):
                            check(conn, who, "login")
                        for _ in range(240):
                            who = rng.randrange(3)
                            step(conns[who], who)
                        for conn in conns:
                            conn.close()
                    emit(failures=failures[:12], failureCount=len(failures), steps=steps)
                    """, port: proxy.port, environment: ["SY_SEED": "\(seed)", "SY_MODE": mode], timeout: .seconds(240))
                struct Output: Decodable { var failures: [String]; var failureCount: Int; var steps: Int }
                let output = try result.json(Output.self)
                #expect(output.failureCount == 0, "seed \(seed): \(output.failures)")
                #expect(output.steps > 100, "\(output.steps) steps")
            }
        }

        /// A client asking for `PGDATESTYLE=Postgres, MDY` gets Postgres-style dates on a server connection
        /// whose previous client had set that style and left (the reset restored ISO on the server).
        @Test func psqlDateStyleOnAReusedConnection() async throws {
            try await withRoutingProxy(Self.settings("session"), replicas: [], waitForReplica: false) { proxy in
                let first = try await psql(port: proxy.port, ["SET datestyle = 'Postgres, MDY'", "select 1"])
                #expect(first.succeeded, "\(first)")
                var environment = libpqEnvironment(password: TestEnvironment.passwords["app"])
                environment["PGDATESTYLE"] = "Postgres, MDY"
                let second = try await runProcess("psql", ["-X", "-At", "-d", conninfo(port: proxy.port, user: "app", database: "app", sslmode: "disable"),
                                                           "-c", "select date '2024-01-02'", "-c", "show datestyle"],
                                                  environment: environment, timeout: .seconds(30))
                #expect(second.succeeded, "\(second)")
                #expect(second.lines == ["01-02-2024", "Postgres, MDY"], "\(second)")
            }
        }

        /// After another client turned standard_conforming_strings off and left, a new client is told
        /// `on` (what the server has after the reset), so libpq's escaping is right for the server.
        @Test(arguments: modes)
        func psycopgEscapeStringAfterAnotherClientChangedIt(mode: String) async throws {
            try await withRoutingProxy(Self.settings(mode), replicas: [], waitForReplica: false) { proxy in
                let result = try await python("""
                    SESSION = os.environ["SY_MODE"] == "session"
                    a = psycopg.connect(DSN, autocommit=True)
                    a.execute("SET standard_conforming_strings = off")
                    if SESSION:
                        a.close()
                    b = psycopg.connect(DSN, autocommit=True)
                    told = b.info.parameter_status("standard_conforming_strings")
                    (shown,) = b.execute("SHOW standard_conforming_strings").fetchone()
                    original = "back\\\\slash 'quote'"
                    escaped = psycopg.pq.Escaping(b.pgconn).escape_string(original.encode()).decode()
                    (round_trip,) = b.execute("SELECT '" + escaped + "'").fetchone()
                    emit(told=told, shown=shown, same=(round_trip == original), escaped=escaped)
                    """, port: proxy.port, environment: ["SY_MODE": mode])
                struct Output: Decodable { var told: String; var shown: String; var same: Bool; var escaped: String }
                let output = try result.json(Output.self)
                #expect(output.told == output.shown, "\(output)")
                #expect(output.told == "on", "\(output)")
                #expect(output.same, "escaping did not survive the round trip: \(output)")
            }
        }

        /// DROP DATABASE right after another client used that database: Switchyard's idle pooled
        /// connections to it are closed first, on every loop and server.
        @Test(arguments: modes)
        func dropDatabaseAfterItWasUsed(mode: String) async throws {
            let database = "sy_drop_\(UInt32.random(in: 0..<UInt32.max))"
            _ = try await superuserQuery("CREATE DATABASE \(database) OWNER app")
            defer { Task { _ = try? await superuserQuery("DROP DATABASE IF EXISTS \(database) WITH (FORCE)") } }
            try await withRoutingProxy(["pool_mode": mode, "worker_threads": "2"], replicas: .bothReplicas, waitForReplica: false) { proxy in
                for _ in 0..<3 {
                    let used = try await psql(port: proxy.port, database: database, ["select 1"])
                    #expect(used.succeeded, "\(used)")
                }
                let idle = try await superuserQuery("select count(*) from pg_stat_activity where datname = '\(database)'")
                #expect(Int(idle) ?? 0 >= 1, "the pool should keep an idle connection to \(database)")
                let dropped = try await psql(port: proxy.port, ["DROP DATABASE \(database)"])
                #expect(dropped.succeeded, "\(dropped)\n\(proxy.log(limit: 1500))")
                let left = try await superuserQuery("select count(*) from pg_database where datname = '\(database)'")
                #expect(left == "0")
            }
        }

        /// `server_reset_mode = close`: a session-mode client never inherits a backend; `discard`
        /// (PgBouncer's behaviour, the default) reuses it after DISCARD ALL.
        @Test(arguments: ["close", "discard"])
        func serverResetMode(resetMode: String) async throws {
            try await withRoutingProxy(Self.settings("session", ["server_reset_mode": resetMode]), replicas: [], waitForReplica: false) { proxy in
                var pids: [String] = []
                for _ in 0..<3 {
                    let result = try await psql(port: proxy.port, ["select pg_backend_pid()"])
                    #expect(result.succeeded, "\(result)")
                    pids.append(result.output)
                }
                if resetMode == "close" {
                    #expect(Set(pids).count == 3, "every client should get a new backend: \(pids)")
                } else {
                    #expect(Set(pids).count == 1, "the pooled backend should be reused: \(pids)")
                }
            }
        }

        /// A client leaving in the middle of a transaction is one info line, not a "server connection lost".
        @Test(arguments: modes)
        func clientLeavingMidTransactionLogsOneLine(mode: String) async throws {
            try await withRoutingProxy(Self.settings(mode), replicas: [], waitForReplica: false) { proxy in
                for _ in 0..<3 {
                    let client = try await RawClient.login(port: proxy.port, user: "app")
                    _ = try await client.query("BEGIN")
                    _ = try await client.query("SELECT 1")
                    client.close()
                }
                let logged = await eventually(within: .seconds(5)) {
                    proxy.log().components(separatedBy: "client left in the middle of a transaction").count - 1 == 3
                }
                #expect(logged, "\(proxy.log(limit: 2000))")
                #expect(!proxy.log().contains("server connection lost while serving client"), "\(proxy.log(limit: 2000))")
                #expect(try await psql(port: proxy.port, ["select 1"]).output == "1")
            }
        }

        /// Session mode: `pg_terminate_backend` of the client's server gives it exactly Postgres' FATAL.
        @Test func terminatedServerGivesOneFatalInSessionMode() async throws {
            try await withRoutingProxy(Self.settings("session"), replicas: [], waitForReplica: false) { proxy in
                let client = try await RawClient.login(port: proxy.port, user: "app")
                defer { client.close() }
                let pid = try #require(try await client.query("SELECT pg_backend_pid()").rowValues.first?.first ?? nil)
                _ = try await superuserQuery("SELECT pg_terminate_backend(\(pid))")
                let frames = try await client.readUntilClosed(timeout: .seconds(10))
                #expect(frames.errors.compactMap(\.sqlState) == ["57P01"], "\(frames)")
                #expect(!proxy.log().contains("server connection lost while serving client"), "\(proxy.log(limit: 1500))")
            }
        }
    }
}
