import Testing

extension IntegrationTests {
    /// Big values stream through the relay: this process (which runs the proxy) never holds a
    /// whole row, and a slow reader stalls the server instead of filling our memory.
    @Suite struct LargeData {
        /// A 100 MB text value, counted byte for byte after psql; the proxy's memory grows far less.
        @Test func hundredMegabyteTextRow() async throws {
            try await withProxy { proxy in
                let (result, growth) = try await ProcessMemory.measurePeakGrowth {
                    try await bash("psql -X -At -d '\(conninfo(port: proxy.port))' -c \"select repeat('x', 100*1024*1024)\" | wc -c",
                                   environment: libpqEnvironment(password: "app-secret"), timeout: .seconds(90))
                }
                #expect(result.succeeded, "\(result)")
                #expect(result.output == "\(100 * 1024 * 1024 + 1)", "100 MiB of x plus psql's newline")
                #expect(growth < .megabytes(40), "proxy process grew by \(growth.inMegabytes) relaying a 100 MB row")
            }
        }

        /// A 100 MB bytea value in binary format (psycopg), exact length and content check.
        @Test func hundredMegabyteByteaRow() async throws {
            try await withProxy { proxy in
                let (result, growth) = try await ProcessMemory.measurePeakGrowth {
                    try await python("""
                        with psycopg.connect(DSN) as conn:
                            value = conn.cursor(binary=True).execute("select decode(repeat('ab', 100*1024*1024), 'hex')").fetchone()[0]
                            ok = value == b"\\xab" * (100*1024*1024)
                            again = conn.execute("select 'usable'").fetchone()[0]
                        emit(length=len(value), ok=ok, again=again)
                        """, port: proxy.port, timeout: .seconds(90))
                }
                struct Output: Decodable { var length: Int; var ok: Bool; var again: String }
                let output = try result.json(Output.self)
                #expect(output.length == 100 * 1024 * 1024, "\(result)")
                #expect(output.ok && output.again == "usable")
                #expect(growth < .megabytes(40), "proxy process grew by \(growth.inMegabytes) relaying a 100 MB bytea")
            }
        }

        /// Backpressure: a client asks for 300 MB and reads nothing for 3 s. The proxy stops reading
        /// from the server (this process grows < 64 MB); then the client reads everything intact.
        @Test func slowReaderDoesNotBufferInProxy() async throws {
            try await withProxy(["auth_type": "trust"]) { proxy in
                let client = try await RawClient.login(port: proxy.port)
                defer { client.close() }
                let (_, growth) = try await ProcessMemory.measurePeakGrowth {
                    try await client.send(Wire.query("select repeat('x', 1024*1024) from generate_series(1, 300)"))
                    try await Task.sleep(for: .seconds(3))
                }
                #expect(growth < .megabytes(64), "proxy process grew by \(growth.inMegabytes) while the client read nothing")

                let (frames, elapsed) = try await timed { try await client.readUntilReady(timeout: .seconds(60), keepingBodiesUpTo: 1024) }
                let rows = frames.filter { $0.id == "D" }
                #expect(rows.count == 300)
                #expect(rows.allSatisfy { $0.bodyLength == 2 + 4 + 1024 * 1024 }, "DataRow: column count, length, 1 MiB")
                #expect(frames.commandTags == ["SELECT 300"])
                #expect(frames.last?.id == "Z")
                #expect(elapsed < .seconds(60))
            }
        }

        /// Upload backpressure: while the server is busy (pg_sleep), the client pushes a 100 MB
        /// Query behind it. The proxy stops reading the client when the server stops reading, so
        /// this process grows far less than 100 MB; then both queries complete correctly.
        @Test func largeUploadIsNotBuffered() async throws {
            try await withProxy(["auth_type": "trust"]) { proxy in
                let client = try await RawClient.login(port: proxy.port)
                defer { client.close() }
                let size = 100 * 1024 * 1024
                let (_, growth) = try await ProcessMemory.measurePeakGrowth {
                    try await client.send(Wire.query("select pg_sleep(2)"))
                    try await client.sendLargeQuery(prefix: "select length('", filler: UInt8(ascii: "y"), count: size, suffix: "')")
                }
                #expect(growth < .megabytes(64), "proxy process grew by \(growth.inMegabytes) relaying a 100 MB query")
                let sleep = try await client.readUntilReady(timeout: .seconds(30))
                #expect(sleep.errors.isEmpty, "\(sleep)")
                let length = try await client.readUntilReady(timeout: .seconds(60))
                #expect(length.firstColumn == ["\(size)"], "\(length)")
            }
        }

        /// A client that floods the proxy before its login finished (while it waits for a backend)
        /// is not buffered without bound: the proxy stops reading it.
        @Test func floodBeforeReadyForQueryIsNotBuffered() async throws {
            try await withProxy(["auth_type": "trust", "pool_size": "1", "worker_threads": "1", "query_wait_timeout": "10"]) { proxy in
                let holder = try await RawClient.login(port: proxy.port)
                defer { holder.close() }
                #expect(try await holder.query("begin").last?.description == "Z(T)")

                let flooder = try await RawClient.connect(port: proxy.port)
                defer { flooder.close() }
                // Start-up parameters no earlier login had: the login must wait for the server (a login like an
                // earlier one completes at once when all are in use, and its messages are then held within
                // max_buffered_bytes: MemoryBudgetTests).
                try await flooder.send(Wire.startup([("user", "app_trust"), ("database", "app"), ("application_name", "flooder")]))
                let authOK = try await flooder.readMessage()
                #expect(authOK?.id == "R", "trust: AuthenticationOk, then the proxy waits for a backend")
                let (_, growth) = try await ProcessMemory.measurePeakGrowth {
                    let upload = Task {
                        try await flooder.sendLargeQuery(prefix: "select length('", filler: UInt8(ascii: "z"), count: 200 * 1024 * 1024, suffix: "')")
                    }
                    try await Task.sleep(for: .seconds(3))
                    flooder.socket.shutdownBoth()
                    _ = await upload.result
                }
                #expect(growth < .megabytes(64), "proxy process grew by \(growth.inMegabytes) buffering a client that was still logging in")
            }
        }
    }
}
