import Testing

extension IntegrationTests {
    /// `max_buffered_bytes`: large client messages Switchyard must hold whole are charged to one
    /// process-wide budget. Past it they wait (the client is pushed back by TCP), and one that could never
    /// fit is answered 54000 without being read into memory. Run through a routing proxy with a replica.
    @Suite struct MemoryBudget {
        static let megabyte = 1 << 20

        /// A statement of `bytes` bytes whose result is its own length, as an extended-protocol round trip.
        static func sizedStatement(_ bytes: Int) -> [UInt8] {
            let prefix = "select length('", suffix = "')"
            return Wire.extendedQuery(prefix + String(repeating: "x", count: bytes - prefix.utf8.count - suffix.utf8.count) + suffix)
        }

        /// Larger than the whole budget: 54000 (an ERROR between statements, in the place Postgres would put
        /// a failed statement's error), the client keeps its session; inside a transaction, where the answer
        /// cannot be put in order without the server, the session ends with a FATAL 54000.
        @Test func aMessageTheBudgetCouldNeverHoldGets54000() async throws {
            let metricsPort = try routingFreePort()
            try await withRoutingProxy(["max_buffered_bytes": "\(Self.megabyte)", "metrics_port": "\(metricsPort)"]) { proxy in
                let client = try await RawClient.login(port: proxy.port, user: "app", database: "app")
                defer { client.close() }
                try await client.send(Self.sizedStatement(2 * Self.megabyte))
                let extended = try await client.readUntilReady(timeout: .seconds(30))
                #expect(extended.map(\.id) == ["E", "Z"], "no ParseComplete, no rows: \(extended)")
                #expect(extended.firstError?.sqlState == "54000" && extended.firstError?.severity == "ERROR", "\(extended)")

                try await client.sendLargeQuery(prefix: "select length('", filler: UInt8(ascii: "y"), count: 2 * Self.megabyte, suffix: "')")
                let simple = try await client.readUntilReady(timeout: .seconds(30))
                #expect(simple.map(\.id) == ["E", "Z"], "\(simple)")
                #expect(simple.firstError?.sqlState == "54000", "\(simple)")

                let after = try await client.query("select 'still usable'")
                #expect(after.firstColumn == ["still usable"], "\(after)")
                // Under the budget, the same kind of statement runs.
                try await client.send(Self.sizedStatement(Self.megabyte / 2))
                #expect(try await client.readUntilReady(timeout: .seconds(30)).firstColumn == ["\(Self.megabyte / 2 - 17)"])

                // Pipelined behind a statement of the open transaction: that one is answered first, then the
                // FATAL, then the close, as Postgres orders a session it ends.
                _ = try await client.query("begin")
                try await client.send(Wire.query("select 'first'") + Self.sizedStatement(2 * Self.megabyte))
                let inTransaction = try await client.readUntilClosed(timeout: .seconds(30))
                #expect(inTransaction.map(\.id) == ["T", "D", "C", "Z", "E"], "\(inTransaction)")
                #expect(inTransaction.firstColumn == ["first"])
                #expect(inTransaction.firstError?.sqlState == "54000" && inTransaction.firstError?.severity == "FATAL", "\(inTransaction)")

                let samples = try await scrape(metricsPort)
                #expect(samples["switchyard_buffer_refusals_total"] == 3, "\(samples.filter { $0.key.contains("buffer") })")
                #expect((samples["switchyard_buffered_bytes_peak"] ?? .infinity) <= Double(Self.megabyte))
                let alive = try await psql(port: proxy.port, user: "app", ["select 'alive'"], timeout: .seconds(20))
                #expect(alive.output == "alive", "\(alive)")
            }
        }

        /// A client that sends the first megabyte of a 3 MB statement into a 5 MB budget and then stops holds
        /// 3 MB that a second such statement needs: after `message_stall_timeout` it gets FATAL 08P01 and is
        /// closed, and the second one, which was waiting for room, runs.
        @Test func aClientStalledPartwayThroughAMessageIsClosedAndOthersGetItsRoom() async throws {
            let size = 3 * Self.megabyte
            try await withRoutingProxy(["max_buffered_bytes": "\(5 * Self.megabyte)", "message_stall_timeout": "1"]) { proxy in
                let stalled = try await RawClient.login(port: proxy.port, user: "app", database: "app")
                defer { stalled.close() }
                let waiting = try await RawClient.login(port: proxy.port, user: "app", database: "app")
                defer { waiting.close() }
                let statement = Self.sizedStatement(size)
                try await stalled.send(Array(statement[..<Self.megabyte]))
                try await Task.sleep(for: .milliseconds(200))
                let started = ContinuousClock.now
                try await waiting.send(statement)
                let answer = try await waiting.readUntilReady(timeout: .seconds(30))
                #expect(answer.firstColumn == ["\(size - 17)"], "\(answer)")
                let closed = try await stalled.readUntilClosed(timeout: .seconds(10))
                #expect(closed.firstError?.sqlState == "08P01" && closed.firstError?.severity == "FATAL", "\(closed)")
                // The waiter waited for the stall to be noticed (about 1 s), not for query_wait_timeout (30 s).
                #expect(ContinuousClock.now - started < .seconds(10))
            }
        }

        /// Four clients each send a 3 MB statement into a 5 MB budget, all of them holding a first part
        /// before any finishes: only one fits at a time, so the others wait for room instead of failing or
        /// growing the process, and every client gets its right answer. Nothing stays charged afterwards.
        @Test func messagesWaitForRoomAndAllRun() async throws {
            let metricsPort = try routingFreePort()
            let size = 3 * Self.megabyte
            try await withRoutingProxy(["max_buffered_bytes": "\(5 * Self.megabyte)", "metrics_port": "\(metricsPort)"]) { proxy in
                var clients: [RawClient] = []
                defer { for client in clients { client.close() } }
                for _ in 0..<4 { clients.append(try await RawClient.login(port: proxy.port, user: "app", database: "app")) }
                let statement = Self.sizedStatement(size)
                // Every client's first megabyte is sent before any client sends the rest.
                for client in clients { try await client.send(Array(statement[..<Self.megabyte])) }
                let answers = try await withThrowingTaskGroup(of: [BackendFrame].self) { group in
                    for client in clients {
                        group.addTask {
                            try await client.send(Array(statement[Self.megabyte...]))
                            return try await client.readUntilReady(timeout: .seconds(60))
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                for answer in answers {
                    #expect(answer.firstColumn == ["\(size - 17)"], "\(answer)")
                }
                let samples = try await scrape(metricsPort)
                let budget = samples.filter { $0.key.contains("buffer") }
                #expect((samples["switchyard_buffer_waits_total"] ?? 0) >= 1, "someone waited: \(budget)")
                #expect(samples["switchyard_buffer_refusals_total"] == 0, "\(budget)")
                #expect((samples["switchyard_buffered_bytes_peak"] ?? .infinity) <= Double(5 * Self.megabyte), "\(budget)")
                #expect((samples["switchyard_buffered_bytes_peak"] ?? 0) >= Double(size), "\(budget)")
                #expect(samples["switchyard_buffered_bytes"] == 0, "every charge given back: \(budget)")
            }
        }

        /// Waiting for room ends at query_wait_timeout, as waiting for a server does: a client whose large
        /// message found no room in time gets 54000 and keeps its session; the one holding the room is served.
        @Test func aWaitForRoomEndsAtQueryWaitTimeout() async throws {
            let size = 3 * Self.megabyte
            try await withRoutingProxy(["max_buffered_bytes": "\(5 * Self.megabyte)", "query_wait_timeout": "1"]) { proxy in
                let holder = try await RawClient.login(port: proxy.port, user: "app", database: "app")
                let waiter = try await RawClient.login(port: proxy.port, user: "app", database: "app")
                defer { holder.close(); waiter.close() }
                let statement = Self.sizedStatement(size)
                try await holder.send(Array(statement[..<Self.megabyte]))   // charged, then silent
                try await Task.sleep(for: .milliseconds(200))
                let (answer, waited) = try await timed {
                    async let sent: Void = waiter.send(statement)
                    let frames = try await waiter.readUntilReady(timeout: .seconds(20))
                    try await sent
                    return frames
                }
                #expect(answer.map(\.id) == ["E", "Z"], "\(answer)")
                #expect(answer.firstError?.sqlState == "54000" && answer.firstError?.severity == "ERROR", "\(answer)")
                #expect(waited >= .milliseconds(900) && waited < .seconds(10), "gave up at the timeout: \(waited)")
                #expect(try await waiter.query("select 'waiter usable'").firstColumn == ["waiter usable"])
                try await holder.send(Array(statement[Self.megabyte...]))
                #expect(try await holder.readUntilReady(timeout: .seconds(30)).firstColumn == ["\(size - 17)"])
            }
        }

        /// Copies of large named statements (kept so any server can be given them) may take at most half the
        /// budget: past it, a named Parse over 64 KiB gets 54000 and the session goes on; DEALLOCATE (Close)
        /// makes room again, and every statement kept still runs.
        @Test func statementCopiesTakeAtMostHalfTheBudget() async throws {
            let metricsPort = try routingFreePort()
            try await withRoutingProxy(["max_buffered_bytes": "\(Self.megabyte)", "metrics_port": "\(metricsPort)"]) { proxy in
                let client = try await RawClient.login(port: proxy.port, user: "app", database: "app")
                defer { client.close() }
                let size = 300 << 10
                func parse(_ name: String, filler: Character) -> [UInt8] {
                    let sql = "select length('" + String(repeating: filler, count: size) + "')"
                    return Wire.message("P", Wire.cString(name) + Wire.cString(sql) + [0, 0]) + Wire.message("S")
                }
                func run(_ name: String) -> [UInt8] {
                    Wire.message("B", Wire.cString("") + Wire.cString(name) + [0, 0, 0, 0, 0, 0])
                        + Wire.message("E", Wire.cString("") + Wire.int32(0)) + Wire.message("S")
                }
                try await client.send(parse("big1", filler: "x"))
                #expect(try await client.readUntilReady(timeout: .seconds(30)).map(\.id) == ["1", "Z"])
                // 600 KiB of copies would pass half of 1 MiB.
                try await client.send(parse("big2", filler: "y"))
                let refused = try await client.readUntilReady(timeout: .seconds(30))
                #expect(refused.map(\.id) == ["E", "Z"], "\(refused)")
                #expect(refused.firstError?.sqlState == "54000" && refused.firstError?.severity == "ERROR", "\(refused)")
                try await client.send(run("big1"))
                #expect(try await client.readUntilReady(timeout: .seconds(30)).firstColumn == ["\(size)"])
                let samples = try await scrape(metricsPort)
                #expect((samples["switchyard_buffered_bytes_retained"] ?? 0) >= Double(size), "\(samples.filter { $0.key.contains("buffer") })")

                try await client.send(Wire.message("C", [UInt8(ascii: "S")] + Wire.cString("big1")) + Wire.message("S"))
                #expect(try await client.readUntilReady(timeout: .seconds(30)).map(\.id) == ["3", "Z"])
                try await client.send(parse("big2", filler: "y"))
                #expect(try await client.readUntilReady(timeout: .seconds(30)).map(\.id) == ["1", "Z"], "room again after the Close")
                try await client.send(run("big2"))
                #expect(try await client.readUntilReady(timeout: .seconds(30)).firstColumn == ["\(size)"])
            }
        }

        /// A statement copy refused inside a transaction, behind a pipelined INSERT, a sleep and a local SHOW
        /// that waits for them, ends the session the way Postgres ends one on a message it cannot take: what came before is
        /// answered, then FATAL 54000, then the close, and nothing sent after it runs (no second INSERT).
        @Test func aRefusedCopyInAPipelineRunsNothingAfterIt() async throws {
            try await withRoutingProxy(["max_buffered_bytes": "\(Self.megabyte)"]) { proxy in
                _ = try await superuserQuery("drop table if exists copy_cap_pipeline; create table copy_cap_pipeline (n int); grant all on copy_cap_pipeline to app", database: "app")
                let client = try await RawClient.login(port: proxy.port, user: "app", database: "app")
                defer { client.close() }
                let size = 300 << 10
                func parse(_ name: String, filler: Character) -> [UInt8] {
                    Wire.message("P", Wire.cString(name) + Wire.cString("select length('" + String(repeating: filler, count: size) + "')") + [0, 0])
                }
                try await client.send(parse("kept", filler: "x") + Wire.message("S"))
                #expect(try await client.readUntilReady(timeout: .seconds(30)).map(\.id) == ["1", "Z"])
                _ = try await client.query("begin")
                // The sleep keeps the SHOW (a local command, which waits for the answers ahead of it) and so the
                // refused Parse queued until the whole Parse has arrived: it is refused on arrival, not on replay.
                try await client.send(Wire.query("insert into copy_cap_pipeline values (1)") + Wire.query("select pg_sleep(0.5)")
                                      + Wire.query("show switchyard.last_write_lsn")
                                      + parse("refused", filler: "y") + Wire.message("S") + Wire.query("insert into copy_cap_pipeline values (2)"))
                let frames = try await client.readUntilClosed(timeout: .seconds(30))
                #expect(frames.last?.sqlState == "54000" && frames.last?.severity == "FATAL", "the FATAL comes last: \(frames)")
                #expect(frames.commandTags.first == "INSERT 0 1", "the INSERT before it was answered first: \(frames)")
                #expect(frames.commandTags.filter { $0.hasPrefix("INSERT") }.count == 1, "nothing after the refusal ran: \(frames)")
            }
        }
    }
}
