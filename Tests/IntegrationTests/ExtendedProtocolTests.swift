import PostgresNIO
import Testing

extension IntegrationTests {
    /// The extended protocol (Parse/Bind/Describe/Execute/Sync) with postgres-nio and psycopg.
    @Suite struct ExtendedProtocol {
        @Test func parameterizedQueries() async throws {
            try await withProxy { proxy in
                try await withNIOConnection(port: proxy.port) { connection in
                    let text = "it's \"quoted\" — ünïcode"
                    let echoed = try await connection.values("select \(text)::text", as: String.self)
                    #expect(echoed == [text])
                    let sums = try await connection.values("select \(40)::int + \(2)::int", as: Int.self)
                    #expect(sums == [42])
                    let null = try await connection.values("select \(Optional<Int>.none)::int", as: Int?.self)
                    #expect(null == [nil])
                }
            }
        }

        /// 20 000 rows stream through intact and in order.
        @Test func manyRows() async throws {
            try await withProxy { proxy in
                try await withNIOConnection(port: proxy.port) { connection in
                    let rows = try await connection.rows("select g, repeat('x', (g % 97)::int) from generate_series(1, \(20_000)) g")
                        .map { try $0.decode((Int, String).self) }
                    #expect(rows.count == 20_000)
                    #expect(rows.enumerated().allSatisfy { $0.offset + 1 == $0.element.0 && $0.element.1.count == $0.element.0 % 97 })
                }
            }
        }

        /// 100 queries issued concurrently on ONE postgres-nio connection (it queues them and runs
        /// them back to back): each result belongs to its own query, in both pool modes.
        @Test(arguments: ["transaction", "session"])
        func pipelinedQueriesOnOneConnection(mode: String) async throws {
            try await withProxy(["pool_mode": mode]) { proxy in
                try await withNIOConnection(port: proxy.port) { connection in
                    let results = try await withThrowingTaskGroup(of: (Int, [Int]).self) { group in
                        for i in 0..<100 {
                            group.addTask {
                                (i, try await connection.values("select \(i)::int * 3 from generate_series(1, \(i % 7 + 1))", as: Int.self))
                            }
                        }
                        return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
                    }
                    #expect(results.count == 100)
                    for (i, values) in results {
                        #expect(values == Array(repeating: i * 3, count: i % 7 + 1), "query \(i)")
                    }
                }
            }
        }

        /// Wire-level pipelining in transaction pooling: 40 simple and extended queries sent without
        /// waiting, a transaction among them, either in ONE write or dribbled out 7 bytes at a time
        /// (message headers split across TCP segments). Every reply arrives in order, and the
        /// statements inside the transaction share one backend.
        @Test(arguments: [0, 7])
        func rawPipelineOfSimpleAndExtendedQueries(chunkSize: Int) async throws {
            try await withProxy(["auth_type": "trust", "pool_size": "4"]) { proxy in
                let client = try await RawClient.login(port: proxy.port)
                defer { client.close() }
                var batch: [UInt8] = []
                for i in 0..<40 {
                    switch i {
                    case 10: batch += Wire.query("begin")
                    case 11: batch += Wire.extendedQuery("select pg_backend_pid()")
                    case 12: batch += Wire.query("select pg_backend_pid()")
                    case 13: batch += Wire.query("commit")
                    default: batch += i % 2 == 0 ? Wire.query("select \(i)") : Wire.extendedQuery("select \(i)")
                    }
                }
                if chunkSize == 0 {
                    try await client.send(batch)
                } else {
                    try await client.sendSlowly(batch, chunkSize: chunkSize, pause: .milliseconds(1))
                }
                var replies: [[BackendFrame]] = []
                for _ in 0..<40 { replies.append(try await client.readUntilReady()) }

                #expect(replies.allSatisfy { $0.last?.id == "Z" && $0.errors.isEmpty }, "\(replies)")
                for i in 0..<40 where !(10...13).contains(i) {
                    #expect(replies[i].firstColumn == ["\(i)"], "reply \(i): \(replies[i])")
                }
                #expect(replies[11].firstColumn == replies[12].firstColumn, "one transaction, one backend")
                #expect(replies[12].last?.description == "Z(T)" && replies[13].last?.description == "Z(I)")
            }
        }

        /// psycopg pipeline mode: 50 statements sent before any result is read, then all checked
        /// (autocommit, and inside an explicit transaction).
        @Test(arguments: [true, false])
        func psycopgPipelineMode(autocommit: Bool) async throws {
            try await withProxy { proxy in
                let result = try await python("""
                    assert psycopg.Pipeline.is_supported(), "libpq without pipeline support"
                    with psycopg.connect(DSN, autocommit=\(autocommit ? "True" : "False")) as conn:
                        with conn.pipeline():
                            cursors = [conn.execute("select %s::int * 2, %s::text", (i, f"v{i}")) for i in range(50)]
                        rows = [c.fetchone() for c in cursors]
                        conn.commit()
                    emit(ok=all(r == (i * 2, f"v{i}") for i, r in enumerate(rows)), count=len(rows))
                    """, port: proxy.port)
                struct Output: Decodable { var ok: Bool; var count: Int }
                let output = try result.json(Output.self)
                #expect(output.ok && output.count == 50, "\(result)")
            }
        }
    }
}
