import PostgresNIO
import Testing

extension IntegrationTests {
    /// Many clients share few backends; waiting for one is bounded by query_wait_timeout.
    @Suite struct Pool {
        /// 200 concurrent postgres-nio clients on pool_size=10 (transaction pooling): every client
        /// gets its own right answers, and Postgres never sees more than 10 backends for them.
        @Test func twoHundredClientsOnTenBackends() async throws {
            try await withProxy(["pool_size": "10"]) { proxy in
                let failures = try await withThrowingTaskGroup(of: String?.self) { group in
                    for client in 0..<200 {
                        group.addTask {
                            do {
                                return try await withNIOConnection(port: proxy.port) { connection in
                                    for step in 0..<3 {
                                        let input = client * 10 + step
                                        let answer = try await connection.values("select \(input)::int + 1", as: Int.self)
                                        guard answer == [input + 1] else { return "client \(client): \(answer) for \(input)" }
                                    }
                                    return nil
                                }
                            } catch {
                                return "client \(client): \(String(reflecting: error))"
                            }
                        }
                    }
                    return try await group.compactMap { $0 }.reduce(into: []) { $0.append($1) }
                }
                #expect(failures.isEmpty, "\(failures.count) clients failed, e.g. \(failures.prefix(3))")
                let backends = try await superuserQuery(
                    "select count(*) from pg_stat_activity where usename = 'app' and datname = 'app' and backend_type = 'client backend'")
                #expect((Int(backends) ?? 99) <= 10, "\(backends) backends for pool_size=10")
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
    }
}
