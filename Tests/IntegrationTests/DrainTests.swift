import Testing

extension IntegrationTests {
    /// Graceful shutdown: no new clients, idle clients leave now, open transactions may finish.
    @Suite struct Drain {
        /// Client A is inside a transaction, B idle, when drain starts: B is disconnected (57P01),
        /// new connections are refused, A runs another statement and commits, and its rows are in
        /// Postgres (no lost write). The drain ends as soon as A's transaction does.
        @Test(arguments: ["transaction", "session"])
        func drainLetsOpenTransactionsFinish(mode: String) async throws {
            let table = uniqueName("it_drain")
            _ = try await superuserQuery("create table \(table) (id int); grant all on \(table) to app", database: "app")
            try await withProxy(["pool_mode": mode]) { proxy in
                let a = try await RawClient.login(port: proxy.port, user: "app")
                defer { a.close() }
                let b = try await RawClient.login(port: proxy.port, user: "app")
                defer { b.close() }
                #expect(try await a.query("begin; insert into \(table) values (1)").errors.isEmpty)
                #expect(try await b.query("select 1").firstColumn == ["1"])

                let drain = Task { await proxy.server.drain(timeout: .seconds(5)) }
                // Idle B is disconnected without asking for anything.
                let bFrames = try await b.readUntilClosed(timeout: .seconds(3))
                #expect(bFrames.firstError?.sqlState == "57P01", "\(bFrames)")
                // New connections are refused (the listener closes a moment after the drain flag is
                // set, so allow it that moment; A's open transaction keeps the drain going meanwhile).
                let refused = await eventually(within: .seconds(1), every: .milliseconds(10)) {
                    do { try RawSocket.connect(port: proxy.port).close(); return false } catch { return (error as? SocketError)?.isConnectionRefused == true }
                }
                #expect(refused, "the proxy still accepts connections while draining")

                // A finishes its transaction; its write is durable.
                let insert = try await a.query("insert into \(table) values (2)")
                #expect(insert.commandTags == ["INSERT 0 1"], "\(insert)")
                let commit = try await a.query("commit")
                #expect(commit.commandTags == ["COMMIT"], "\(commit)")
                let aAfter = try await a.readUntilClosed(timeout: .seconds(3))
                #expect(aAfter.firstError?.sqlState == "57P01", "A is let go once its transaction ended: \(aAfter)")
                let (_, drainTime) = await timed { await drain.value }
                #expect(drainTime < .seconds(4), "drain waited \(drainTime) after the last transaction ended")
                #expect(try await superuserQuery("select string_agg(id::text, ',' order by id) from \(table)", database: "app") == "1,2")
            }
            _ = try await superuserQuery("drop table \(table)", database: "app")
        }

        /// A transaction still open at the drain timeout is cut off and rolled back: none of it is
        /// committed, and its backend is gone.
        @Test func drainTimeoutRollsBackStragglers() async throws {
            let table = uniqueName("it_drain_late")
            _ = try await superuserQuery("create table \(table) (id int); grant all on \(table) to app", database: "app")
            try await withProxy { proxy in
                let a = try await RawClient.login(port: proxy.port, user: "app")
                defer { a.close() }
                let begun = try await a.query("begin; insert into \(table) values (1); select pg_backend_pid()")
                let pid = try #require(Int(begun.firstColumn.first.flatMap { $0 } ?? ""), "\(begun)")

                let (_, elapsed) = await timed { await proxy.server.drain(timeout: .seconds(1)) }
                #expect(elapsed < .seconds(3))
                let frames = try await a.readUntilClosed(timeout: .seconds(5))
                #expect(frames.firstError?.sqlState == "57P01", "\(frames)")
                let gone = try await eventually(within: .seconds(5)) {
                    try await superuserQuery("select count(*) from pg_stat_activity where pid = \(pid)") == "0"
                }
                #expect(gone, "backend \(pid) survived the drain")
            }
            #expect(try await superuserQuery("select count(*) from \(table)", database: "app") == "0")
            _ = try await superuserQuery("drop table \(table)", database: "app")
        }

        /// With no transaction open, drain finishes at once, even if some connections have not
        /// logged in (a silent TCP connection, as health checks open; a client stuck mid-SCRAM):
        /// they are closed rather than waited for until the timeout.
        @Test(arguments: ["silent", "mid-authentication"])
        func drainDoesNotWaitForClientsThatNeverLoggedIn(kind: String) async throws {
            try await withProxy { proxy in
                let idle = try await RawClient.login(port: proxy.port, user: "app")
                defer { idle.close() }
                let stuck = try await RawClient.connect(port: proxy.port)
                defer { stuck.close() }
                if kind == "mid-authentication" {
                    try await stuck.send(Wire.startup(user: "app", database: "app"))
                    #expect(try await stuck.readMessage()?.id == "R", "SASL request")
                }
                let (_, elapsed) = await timed { await proxy.server.drain(timeout: .seconds(5)) }
                #expect(elapsed < .seconds(2), "drain with no open transaction took \(elapsed)")
                _ = try await stuck.readUntilClosed(timeout: .seconds(2))
            }
        }
    }
}
