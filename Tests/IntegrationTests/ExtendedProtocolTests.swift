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

        /// N queries in flight at once on ONE connection (pipelined by postgres-nio): each result
        /// belongs to its own query, in pool_mode transaction and session.
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
