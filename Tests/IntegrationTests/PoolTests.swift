import PostgresNIO
import Testing

extension IntegrationTests {
    /// Many clients share few backends; waiting for one is bounded by query_wait_timeout.
    @Suite struct Pool {
        /// 200 concurrent postgres-nio clients on pool_size=10 (transaction pooling): every client
        /// gets its own right answers, and Postgres never sees more than 10 backends for them.
        @Test func twoHundredClientsOnTenBackends() async throws {
            try await withProxy(["pool_size": "10"]) { proxy in
                // Each client returns its failures and the backend PIDs that served it.
                let outcomes = try await withThrowingTaskGroup(of: (String?, Set<Int>).self) { group in
                    for client in 0..<200 {
                        group.addTask {
                            do {
                                return try await withNIOConnection(port: proxy.port) { connection in
                                    var pids: Set<Int> = []
                                    for step in 0..<3 {
                                        let input = client * 10 + step
                                        let rows = try await connection.rows("select \(input)::int + 1, pg_backend_pid()")
                                        let (answer, pid) = try rows[0].decode((Int, Int).self)
                                        pids.insert(pid)
                                        guard rows.count == 1, answer == input + 1 else { return ("client \(client): \(answer) for \(input)", pids) }
                                    }
                                    return (nil, pids)
                                }
                            } catch {
                                return ("client \(client): \(String(reflecting: error))", [])
                            }
                        }
                    }
                    return try await group.reduce(into: [(String?, Set<Int>)]()) { $0.append($1) }
                }
                let failures = outcomes.compactMap(\.0)
                let backends = outcomes.reduce(into: Set<Int>()) { $0.formUnion($1.1) }
                #expect(failures.isEmpty, "\(failures.count) clients failed, e.g. \(failures.prefix(3))")
                #expect(backends.count <= 10, "\(backends.count) distinct backends served clients with pool_size=10")
            }
        }

        /// pgbench through the proxy: read-only and TPC-B-like, simple and extended protocol in
        /// transaction pooling; prepared statements in session pooling.
        @Test(arguments: [
            ("transaction", ["-S", "-M", "simple"]), ("transaction", ["-S", "-M", "extended"]),
            ("transaction", ["-M", "simple"]), ("transaction", ["-M", "extended"]),
            ("session", ["-S", "-M", "prepared"]), ("session", ["-M", "prepared"]),
        ])
        func pgbench(mode: String, options: [String]) async throws {
            try await withProxy(["pool_mode": mode, "pool_size": "8"]) { proxy in
                let arguments = ["-n", "-c", "8", "-j", "2", "-T", "3", "-h", "127.0.0.1", "-p", "\(proxy.port)", "-U", "app"]
                    + options + ["bench"]
                let result = try await runProcess("pgbench", arguments, environment: libpqEnvironment(password: "app-secret"),
                                                  timeout: .seconds(60))
                #expect(result.succeeded, "\(result)")
                #expect(result.stdout.contains("number of failed transactions: 0 "), "\(result)")
                #expect(result.stdout.contains("number of transactions actually processed:"), "\(result)")
            }
        }

        /// pool_size=1 and one worker thread: while A holds the only backend in a transaction, B's
        /// query fails after query_wait_timeout (FATAL 53300, naming the setting); after A commits,
        /// a new client C is served (the pool is healthy).
        @Test func queryWaitTimeout() async throws {
            try await withProxy(["pool_size": "1", "worker_threads": "1", "query_wait_timeout": "1"]) { proxy in
                let b = try await RawClient.login(port: proxy.port, user: "app")
                defer { b.close() }
                let a = try await RawClient.login(port: proxy.port, user: "app")
                defer { a.close() }
                #expect(try await a.query("begin; select 1").last?.description == "Z(T)")

                let (frames, elapsed) = try await timed {
                    try await b.send(Wire.query("select 1"))
                    return try await b.readUntilClosed(timeout: .seconds(10))
                }
                let error = try #require(frames.firstError, "\(frames)")
                #expect(error.sqlState == "53300" && error.severity == "FATAL", "\(error)")
                #expect(error.message?.contains("query_wait_timeout") == true, "\(error)")
                #expect(elapsed < .seconds(3) && elapsed >= .milliseconds(900), "failed after \(elapsed)")

                #expect(try await a.query("commit").commandTags == ["COMMIT"])
                let c = try await withNIOConnection(port: proxy.port) { try await $0.values("select 7", as: Int.self) }
                #expect(c == [7])
            }
        }

        /// pool_size=1: while A holds the only server connection in a transaction, B still logs in at once,
        /// told what the same login was told before (pgbench -C blocks a thread in connect, so a login that
        /// waits for the server a transaction of that thread holds can deadlock, broken only by
        /// query_wait_timeout). B's first query then waits for the server; once A commits it runs, and what B
        /// was told matches SHOW on the server it uses.
        @Test func aLoginDoesNotWaitForAServerConnectionAllInUse() async throws {
            try await withProxy(["pool_size": "1", "worker_threads": "1", "query_wait_timeout": "10"]) { proxy in
                let earlier = try await RawClient.login(port: proxy.port, user: "app")
                earlier.close()
                let a = try await RawClient.login(port: proxy.port, user: "app")
                defer { a.close() }
                #expect(try await a.query("begin; select 1").last?.description == "Z(T)")

                let (b, loginTook) = try await timed { try await RawClient.login(port: proxy.port, user: "app") }
                defer { b.close() }
                #expect(loginTook < .seconds(5), "the login waited \(loginTook) for the server A holds")
                #expect(b.parameters["DateStyle"] == earlier.parameters["DateStyle"] && b.parameters["server_version"] != nil, "\(b.parameters)")
                try await b.send(Wire.query("show DateStyle; show TimeZone; show application_name"))
                try await Task.sleep(for: .milliseconds(300))
                #expect(try await a.query("commit").commandTags == ["COMMIT"])
                let shown = try await b.readUntilReady(timeout: .seconds(10))
                #expect(shown.firstColumn == [b.parameters["DateStyle"], b.parameters["TimeZone"], b.parameters["application_name"]], "\(shown) vs \(b.parameters)")
            }
        }

        /// A client that sends its last statements and Terminate together still gets them run: Postgres
        /// runs every Query that came before Terminate. In transaction mode the insert waits for the one
        /// server (another client holds it in a transaction); in session mode it waits behind a query in
        /// flight. Switchyard used to close at once and drop the insert. `closes`: the client closes its
        /// socket right after Terminate, as libpq's PQfinish does; the insert still runs.
        @Test(arguments: ["transaction", "session"], [false, true])
        func aWriteSentWithTerminateIsNotDropped(mode: String, closes: Bool) async throws {
            try await withProxy(["pool_mode": mode, "pool_size": "1", "worker_threads": "1", "query_wait_timeout": "10"]) { proxy in
                let table = uniqueName("it_terminate")
                let b = try await RawClient.login(port: proxy.port, user: "app")
                defer { b.close() }
                #expect(try await b.query("create table \(table) (id int)").commandTags == ["CREATE TABLE"])
                var a: RawClient?
                defer { a?.close() }
                if mode == "transaction" {
                    a = try await RawClient.login(port: proxy.port, user: "app")
                    #expect(try await a?.query("begin; select 1").last?.description == "Z(T)")
                }
                try await b.send(Wire.query("select pg_sleep(0.3)") + Wire.query("insert into \(table) values (1), (2)") + Wire.message("X"))
                if closes { b.close() }
                if let a {
                    try await Task.sleep(for: .milliseconds(300))
                    #expect(try await a.query("commit").commandTags == ["COMMIT"])
                }
                if !closes {
                    // As from Postgres: both answers, then the connection closes.
                    let frames = try await b.readUntilClosed(timeout: .seconds(10))
                    #expect(frames.commandTags == ["SELECT 1", "INSERT 0 2"], "\(frames)")
                }
                let written = await eventually(within: .seconds(10)) {
                    (try? await superuserQuery("select count(*) from \(table)", database: "app")) == "2"
                }
                #expect(written, "the insert sent with Terminate ran")
                _ = try? await superuserQuery("drop table \(table)", database: "app")
            }
        }

        /// A COPY FROM STDIN waits for data the client sends. If the client sent Terminate before the COPY
        /// started, or closes its socket during the COPY, no data will come: the session ends, which ends
        /// the server's COPY as with Postgres, instead of holding the client and the one server for ever.
        /// Either way the server connection is free for the next client, and nothing of the COPY is kept.
        @Test(arguments: [false, true])
        func aCopyTheClientCannotFinishEndsTheSession(closesDuringCopy: Bool) async throws {
            try await withProxy(["pool_size": "1", "worker_threads": "1", "query_wait_timeout": "5"]) { proxy in
                let table = uniqueName("it_terminate_copy")
                let b = try await RawClient.login(port: proxy.port, user: "app")
                defer { b.close() }
                #expect(try await b.query("create table \(table) (id int)").commandTags == ["CREATE TABLE"])
                if closesDuringCopy {
                    try await b.send(Wire.query("copy \(table) from stdin"))
                    #expect(try await b.readMessage()?.id == "G", "CopyInResponse")
                    try await b.send(Wire.message("d", Array("1\n".utf8)))
                    b.close()
                } else {
                    try await b.send(Wire.query("copy \(table) from stdin") + Wire.message("X"))
                    let frames = try await b.readUntilClosed(timeout: .seconds(10))
                    #expect(frames.map(\.id) == ["G"], "CopyInResponse, then the connection closes: \(frames)")
                }
                let next = try await withNIOConnection(port: proxy.port) { try await $0.values("select count(*) from \(unescaped: table)", as: Int.self) }
                #expect(next == [0])
                _ = try? await superuserQuery("drop table \(table)", database: "app")
            }
        }

        /// pool_size caps the backends per (user, database), also with several worker threads:
        /// with pool_size=1, two clients that each hold a transaction cannot both be served.
        @Test func poolSizeIsHonouredAcrossWorkerThreads() async throws {
            try await withProxy(["pool_size": "1", "worker_threads": "2", "query_wait_timeout": "1"]) { proxy in
                var clients: [RawClient] = []
                defer { for client in clients { client.close() } }
                var pids: Set<String> = []
                for _ in 0..<2 {
                    guard let client = try? await RawClient.login(port: proxy.port, user: "app") else { continue }
                    clients.append(client)
                    let frames = try await client.query("begin; select pg_backend_pid()")
                    if let pid = frames.firstColumn.first.flatMap({ $0 }) { pids.insert(pid) }
                }
                #expect(pids.count <= 1, "pool_size=1, yet two clients were served at once by backends \(pids.sorted())")
            }
        }

        /// Session pooling: server_reset_query (DISCARD ALL) runs before a backend serves the next
        /// client, so nothing of one client's session (settings, temp tables, prepared statements)
        /// leaks into the next one on the same backend.
        @Test func sessionStateIsResetBetweenClients() async throws {
            try await withProxy(["pool_mode": "session", "pool_size": "1", "worker_threads": "1"]) { proxy in
                let first = try await psql(port: proxy.port, [
                    "set application_name = 'leaky'", "create temp table it_leak (i int)", "prepare it_leak_stmt as select 1",
                    "select pg_backend_pid()",
                ])
                #expect(first.succeeded, "\(first)")
                let second = try await psql(port: proxy.port, [
                    "select pg_backend_pid(), current_setting('application_name'), to_regclass('pg_temp.it_leak') is null, "
                        + "(select count(*) from pg_prepared_statements)",
                ])
                #expect(second.succeeded, "\(second)")
                let fields = second.output.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
                #expect(fields.first == first.lines.last, "pool_size=1: the second client should reuse the first one's backend")
                // psql asks for application_name=psql at start-up; the first client's 'leaky' must not show.
                #expect(Array(fields.dropFirst()) == ["psql", "t", "0"], "session state leaked: \(second.output)")
            }
        }

        /// server_idle_timeout closes backends that sat idle in the pool; the next query simply
        /// gets a fresh one.
        @Test func idleServerConnectionsAreClosed() async throws {
            try await withProxy(["server_idle_timeout": "1", "pool_size": "1", "worker_threads": "1"]) { proxy in
                try await withNIOConnection(port: proxy.port) { client in
                    let first = try #require(try await client.values("select pg_backend_pid()", as: Int.self).first)
                    let closed = try await eventually(within: .seconds(5)) {
                        try await superuserQuery("select count(*) from pg_stat_activity where pid = \(first)") == "0"
                    }
                    #expect(closed, "idle backend \(first) was not closed after server_idle_timeout")
                    let second = try await client.values("select pg_backend_pid()", as: Int.self)
                    #expect(second.count == 1 && second != [first])
                }
            }
        }

        /// max_client_conn: the client over the limit gets FATAL 53300; a slot frees when a client leaves.
        @Test func maxClientConnections() async throws {
            try await withProxy(["max_client_conn": "2"]) { proxy in
                let a = try await RawClient.login(port: proxy.port, user: "app")
                let b = try await RawClient.login(port: proxy.port, user: "app")
                defer { b.close() }
                let refused = await #expect(throws: LoginFailed.self) { try await RawClient.login(port: proxy.port, user: "app").close() }
                #expect(refused?.error.sqlState == "53300", "\(String(describing: refused))")
                #expect(refused?.error.message?.contains("too many clients") == true)
                a.close()
                let freed = await eventually(within: .seconds(3)) {
                    guard let c = try? await RawClient.login(port: proxy.port, user: "app") else { return false }
                    c.close()
                    return true
                }
                #expect(freed, "a slot did not free up after a client left")
            }
        }
    }
}
