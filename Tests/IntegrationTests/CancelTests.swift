import Testing

extension IntegrationTests {
    /// CancelRequest: the proxy maps the key it gave the client to the backend running its query.
    ///
    /// The in-process tests run the proxy with ONE worker thread: a CancelRequest arriving on a
    /// different event loop than its target session crashes the whole proxy process (see
    /// `cancelFromAnotherEventLoopDoesNotCrashProxy`, which runs the proxy as a child process).
    @Suite struct Cancel {
        /// psycopg cancels a running pg_sleep(30) from another thread after 1 s: 57014 within
        /// ~5 s, and the connection is usable afterwards.
        @Test(arguments: ["transaction", "session"])
        func cancelRunningQuery(mode: String) async throws {
            try await withProxy(["pool_mode": mode, "worker_threads": "1"]) { proxy in
                let result = try await python("""
                    with psycopg.connect(DSN, autocommit=True) as conn:
                        threading.Timer(1.0, conn.cancel).start()
                        start = time.monotonic()
                        error = None
                        try:
                            conn.execute("select pg_sleep(30)")
                        except psycopg.Error as e:
                            error = e.sqlstate
                        elapsed = time.monotonic() - start
                        again = conn.execute("select 'usable'").fetchone()[0]
                    emit(error=error, elapsed=elapsed, again=again)
                    """, port: proxy.port, timeout: .seconds(40))
                struct Output: Decodable { var error: String?; var elapsed: Double; var again: String }
                let output = try result.json(Output.self)
                #expect(output.error == "57014", "\(result)")
                #expect(output.elapsed < 5, "cancel took \(output.elapsed) s")
                #expect(output.again == "usable")
            }
        }

        /// Cancelling client A does not touch client B's concurrent query: B's pg_sleep(3) completes.
        @Test(arguments: ["transaction", "session"])
        func cancelHitsOnlyItsOwnClient(mode: String) async throws {
            try await withProxy(["pool_mode": mode, "worker_threads": "1"]) { proxy in
                let result = try await python("""
                    results = {}
                    def run(name, conn, sql):
                        start = time.monotonic()
                        try:
                            conn.execute(sql)
                            results[name] = {"error": None, "elapsed": time.monotonic() - start}
                        except psycopg.Error as e:
                            results[name] = {"error": e.sqlstate, "elapsed": time.monotonic() - start}
                    with psycopg.connect(DSN, autocommit=True) as a, psycopg.connect(DSN, autocommit=True) as b:
                        threads = [threading.Thread(target=run, args=("a", a, "select pg_sleep(30)")),
                                   threading.Thread(target=run, args=("b", b, "select pg_sleep(3)"))]
                        for t in threads: t.start()
                        time.sleep(1)
                        a.cancel()
                        for t in threads: t.join(20)
                        results["pids_differ"] = a.info.backend_pid != b.info.backend_pid
                    emit(**results)
                    """, port: proxy.port, timeout: .seconds(40))
                struct Run: Decodable { var error: String?; var elapsed: Double }
                struct Output: Decodable { var a: Run; var b: Run; var pids_differ: Bool }
                let output = try result.json(Output.self)
                #expect(output.a.error == "57014", "\(result)")
                #expect(output.a.elapsed < 5)
                #expect(output.b.error == nil, "B was cancelled too: \(result)")
                #expect(output.b.elapsed >= 2.9)
                #expect(output.pids_differ)
            }
        }

        /// A CancelRequest with a wrong secret is ignored, as Postgres does.
        @Test func cancelWithWrongKeyIsIgnored() async throws {
            try await withProxy { proxy in
                let result = try await python("""
                    import socket, struct
                    with psycopg.connect(DSN, autocommit=True) as conn:
                        pid = conn.info.backend_pid
                        def bogus_cancel():
                            time.sleep(0.5)
                            s = socket.create_connection(("127.0.0.1", int(os.environ["PROXY_PORT"])))
                            s.sendall(struct.pack("!iiii", 16, 80877102, pid, 12345))
                            s.close()
                        threading.Thread(target=bogus_cancel).start()
                        start = time.monotonic()
                        conn.execute("select pg_sleep(2)")
                    emit(elapsed=time.monotonic() - start)
                    """, port: proxy.port, timeout: .seconds(30))
                struct Output: Decodable { var elapsed: Double }
                #expect(try result.json(Output.self).elapsed >= 1.9, "\(result)")
            }
        }

        /// The real switchyard binary as a child process, with 2 worker threads: consecutive
        /// connections are accepted on alternating event loops, so a client's CancelRequest arrives
        /// on the other loop than its session. Each cancel must work and the proxy must survive.
        @Test func cancelFromAnotherEventLoopDoesNotCrashProxy() async throws {
            let proxy = try await SwitchyardProcess.start(["worker_threads": "2", "pool_mode": "transaction"])
            defer { proxy.stop() }
            let result = try await python("""
                outcomes = []
                for attempt in range(4):
                    try:
                        with psycopg.connect(DSN, autocommit=True) as conn:
                            threading.Timer(0.5, conn.cancel).start()
                            try:
                                conn.execute("select pg_sleep(5)")
                                outcomes.append("not cancelled")
                            except psycopg.Error as e:
                                outcomes.append(e.sqlstate or type(e).__name__)
                    except psycopg.Error as e:
                        outcomes.append("connect: " + type(e).__name__)
                emit(outcomes=outcomes)
                """, port: proxy.port, timeout: .seconds(60))
            struct Output: Decodable { var outcomes: [String] }
            let outcomes = (try? result.json(Output.self).outcomes) ?? []
            #expect(proxy.isRunning, "switchyard died (signal \(proxy.terminationSignal.map(String.init) ?? "?")) handling a CancelRequest:\n\(proxy.crashSummary)")
            #expect(outcomes == Array(repeating: "57014", count: 4), "\(result)")
        }
    }
}

extension IntegrationTests {
    /// What BackendKeyData tells the client about its server process.
    @Suite struct BackendIdentity {
        /// Session pooling shows the real backend PID (operators find it in pg_stat_activity);
        /// transaction pooling a virtual one, since the backend changes between transactions.
        @Test(arguments: ["transaction", "session"])
        func backendPIDSeenByClient(mode: String) async throws {
            try await withProxy(["pool_mode": mode]) { proxy in
                let result = try await python("""
                    with psycopg.connect(DSN, autocommit=True) as conn:
                        emit(key_pid=conn.info.backend_pid, real_pid=conn.execute("select pg_backend_pid()").fetchone()[0])
                    """, port: proxy.port)
                struct Output: Decodable { var key_pid: Int; var real_pid: Int }
                let output = try result.json(Output.self)
                if mode == "session" {
                    #expect(output.key_pid == output.real_pid, "\(result)")
                } else {
                    #expect(output.key_pid != output.real_pid, "\(result)")
                }
            }
        }
    }
}
