import PostgresNIO
import Testing

extension IntegrationTests {
    /// Backends that die and clients that vanish: errors instead of hangs, and no leaked backends.
    @Suite struct Failures {
        /// The client's backend is terminated (session pooling: at any time; transaction pooling:
        /// inside a transaction). Its next query fails with 57P01 or 08006 and the connection
        /// closes (no hang); a new client then works.
        @Test(arguments: ["session", "transaction"])
        func terminatedBackend(mode: String) async throws {
            try await withProxy(["pool_mode": mode]) { proxy in
                let client = try await RawClient.login(port: proxy.port, user: "app")
                defer { client.close() }
                let pid = try #require(Int(try await client.query("begin; select pg_backend_pid()").firstColumn.first.flatMap { $0 } ?? ""))
                try await terminateBackend(pid)

                try? await client.send(Wire.query("select 1"))
                let frames = try await client.readUntilClosed(timeout: .seconds(10))
                let states = frames.errors.compactMap(\.sqlState)
                #expect(!states.isEmpty && states.allSatisfy { ["57P01", "08006"].contains($0) }, "\(frames)")
                #expect(frames.errors.allSatisfy { $0.severity == "FATAL" }, "\(frames)")
                #expect(!frames.contains { $0.id == "D" }, "select 1 must not have run: \(frames)")

                try await expectProxyServes(proxy)
            }
        }

        /// Transaction pooling: an IDLE pooled backend is terminated; the next client is not handed
        /// the dead connection.
        @Test func terminatedIdleBackendIsNotReused() async throws {
            try await withProxy(["pool_size": "1", "worker_threads": "1"]) { proxy in
                try await withNIOConnection(port: proxy.port) { client in
                    let pid = try #require(try await client.values("select pg_backend_pid()", as: Int.self).first)
                    try await terminateBackend(pid)
                    try await Task.sleep(for: .milliseconds(200))
                    let next = try await client.values("select pg_backend_pid()", as: Int.self)
                    #expect(next.count == 1 && next != [pid])
                }
            }
        }

        /// pool_size=1: a client BEGINs and then its socket dies (RST). The backend is discarded or
        /// rolled back, not leaked: a new client gets served at once, and no session of the user
        /// stays idle in transaction.
        @Test(arguments: ["transaction", "session"], [false, true])
        func clientVanishesInsideTransaction(mode: String, abortive: Bool) async throws {
            try await withProxy([
                "pool_mode": mode, "auth_type": "trust", "pool_size": "1", "worker_threads": "1", "query_wait_timeout": "3",
            ]) { proxy in
                let raw = try await RawClient.login(port: proxy.port)
                let begin = try await raw.query("begin; select pg_backend_pid()")
                #expect(begin.last?.description == "Z(T)", "\(begin)")
                let pid = try #require(begin.firstColumn.first.flatMap { $0 }, "\(begin)")
                if abortive { raw.abort() } else { raw.close() }

                let (next, elapsed) = try await timed {
                    try await psql(port: proxy.port, user: "app_trust", ["select 'served'"], timeout: .seconds(20))
                }
                #expect(next.succeeded, "\(next)")
                #expect(next.output == "served")
                #expect(elapsed < .seconds(3), "waited \(elapsed): the dead client's backend was leaked")
                let clean = try await eventually(within: .seconds(5)) {
                    try await superuserQuery(
                        "select count(*) from pg_stat_activity where pid = \(pid) and state like 'idle in transaction%'") == "0"
                }
                #expect(clean, "the dead client's backend \(pid) stayed idle in transaction")
            }
        }

        /// idle_transaction_timeout=1: a client idle inside BEGIN for 2.5 s is disconnected with
        /// FATAL 25P03, and its backend is rolled back and gone, not leaked. Also when the last thing
        /// it sent was answered by Switchyard itself (SHOW switchyard.route, a refused SET).
        @Test(arguments: [nil, "show switchyard.route", "set switchyard.route to nowhere"])
        func idleInTransactionTimeout(lastStatement: String?) async throws {
            try await withProxy(["idle_transaction_timeout": "1"]) { proxy in
                let client = try await RawClient.login(port: proxy.port, user: "app")
                defer { client.close() }
                let pid = try #require(Int(try await client.query("begin; select pg_backend_pid()").firstColumn.first.flatMap { $0 } ?? ""))
                if let lastStatement {
                    try await client.send(Wire.query(lastStatement))
                    let answer = try await client.readUntilReady(timeout: .seconds(5))
                    #expect(answer.last?.id == "Z", "\(answer)")
                }
                try await Task.sleep(for: .milliseconds(2500))

                try? await client.send(Wire.query("select 1"))
                let frames = try await client.readUntilClosed(timeout: .seconds(10))
                #expect(frames.firstError?.sqlState == "25P03", "\(frames)")
                #expect(frames.firstError?.severity == "FATAL")
                #expect(!frames.contains { $0.id == "D" }, "select 1 must not have run: \(frames)")
                let gone = try await eventually(within: .seconds(5)) {
                    try await superuserQuery("select count(*) from pg_stat_activity where pid = \(pid)") == "0"
                }
                #expect(gone, "backend \(pid) outlived its client's idle-in-transaction timeout")
            }
        }

        /// The idle-in-transaction timer only fires on idle clients: one that keeps working inside
        /// its transaction (each statement well under the timeout) is never cut off.
        @Test func busyTransactionIsNotTimedOut() async throws {
            try await withProxy(["idle_transaction_timeout": "1"]) { proxy in
                try await withNIOConnection(port: proxy.port) { client in
                    try await client.run("begin")
                    for _ in 0..<6 {
                        try await client.run("select pg_sleep(0.5)")
                    }
                    try await client.run("commit")
                }
            }
        }

        /// The server is down (nothing listens on its port): logins fail promptly with 08001 and
        /// a message naming the server, instead of hanging until some timeout.
        @Test func serverDownFailsLoginsPromptly() async throws {
            let deadPort = try freePort()
            try await withProxy(["connect_timeout": "2"], primaryPort: deadPort) { proxy in
                let (error, elapsed) = await timed { await expectConnectFailure(port: proxy.port) }
                #expect(error?.sqlState == "08001", "\(String(reflecting: error))")
                #expect(error?.serverMessage?.contains("could not connect to server \"primary\"") == true,
                        "\(String(reflecting: error))")
                #expect(elapsed < .seconds(3), "login failure took \(elapsed)")
            }
        }

        /// More clients than `pool_size` log in while the server is down: every one of them is told
        /// promptly (each failed attempt starts one for the clients still queued), none waits out
        /// `query_wait_timeout`.
        @Test func serverDownFailsEveryQueuedLoginPromptly() async throws {
            let deadPort = try freePort()
            try await withProxy(["connect_timeout": "2", "pool_size": "1", "worker_threads": "1", "query_wait_timeout": "30"],
                                primaryPort: deadPort) { proxy in
                let (errors, elapsed) = await timed {
                    await withTaskGroup(of: (any Error)?.self) { group in
                        for _ in 0..<6 { group.addTask { await expectConnectFailure(port: proxy.port) } }
                        return await group.reduce(into: []) { $0.append($1) }
                    }
                }
                #expect(errors.count == 6 && errors.allSatisfy { $0?.sqlState == "08001" }, "\(errors.map { String(reflecting: $0) })")
                #expect(elapsed < .seconds(10), "the last queued login failed only after \(elapsed)")
            }
        }
    }
}

/// Terminates a backend directly in Postgres, as an operator would.
func terminateBackend(_ pid: Int) async throws {
    #expect(try await superuserQuery("select pg_terminate_backend(\(pid))") == "t")
}

/// The error a client sees when its server connection dies: the server's FATAL 57P01, the
/// proxy's 08006, or the connection simply closing.
func isConnectionLoss(_ error: (any Error)?) -> Bool {
    guard let error else { return false }
    if error is ConnectionClosedError { return true }
    if let state = error.sqlState { return ["57P01", "08006", "08003", "08000"].contains(state) }
    if let error = error as? PSQLError {
        return [.serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .connectionError].contains(error.code)
    }
    return false
}
