import Testing

extension IntegrationTests {
    /// Messages the server sends besides query results: notices, parameter changes, notifications.
    @Suite struct AsyncMessages {
        /// A NoticeResponse raised inside a statement reaches the client.
        @Test(arguments: ["transaction", "session"])
        func noticeIsPassedThrough(mode: String) async throws {
            try await withProxy(["pool_mode": mode]) { proxy in
                let result = try await psql(port: proxy.port, ["DO $$ begin raise notice 'hello-notice'; end $$", "select 'after'"])
                #expect(result.succeeded, "\(result)")
                #expect(result.stderr.contains("NOTICE:  hello-notice"), "\(result)")
                #expect(result.output == "DO\nafter" || result.output == "after")
            }
        }

        /// SET of a GUC_REPORT parameter sends ParameterStatus, which the client library tracks.
        @Test func parameterStatusReachesClient() async throws {
            try await withProxy(["pool_mode": "session"]) { proxy in
                let result = try await python("""
                    with psycopg.connect(DSN, autocommit=True) as conn:
                        before = conn.info.parameter_status("application_name")
                        conn.execute("set application_name = 'it-app-name'")
                        after = conn.info.parameter_status("application_name")
                        shown = conn.execute("show application_name").fetchone()[0]
                    emit(before=before, after=after, shown=shown)
                    """, port: proxy.port)
                struct Output: Decodable { var before: String?; var after: String?; var shown: String }
                let output = try result.json(Output.self)
                #expect(output.after == "it-app-name", "\(result)")
                #expect(output.shown == "it-app-name")
                #expect(output.before != "it-app-name")
            }
        }

        /// LISTEN/NOTIFY in session pooling: the notification arrives asynchronously while the
        /// listener is idle (its socket becomes readable without it sending anything).
        @Test func listenNotifyInSessionMode() async throws {
            try await withProxy(["pool_mode": "session"]) { proxy in
                let result = try await python("""
                    import select
                    received = []
                    with psycopg.connect(DSN, autocommit=True) as listener:
                        listener.add_notify_handler(lambda n: received.append([n.channel, n.payload]))
                        listener.execute("listen it_channel")
                        with psycopg.connect(DSN, autocommit=True) as sender:
                            sender.execute("select pg_notify('it_channel', 'hello-notify')")
                        readable = select.select([listener.fileno()], [], [], 5)[0]
                        listener.execute("select 1")
                    emit(arrivedWhileIdle=bool(readable), received=received)
                    """, port: proxy.port)
                struct Output: Decodable { var arrivedWhileIdle: Bool; var received: [[String]] }
                let output = try result.json(Output.self)
                #expect(output.arrivedWhileIdle, "\(result)")
                #expect(output.received == [["it_channel", "hello-notify"]])
            }
        }

        /// Parameters in the client's StartupMessage are honoured, as Postgres honours them, or the
        /// login is refused naming the parameter; silently dropping them is wrong (a client asking
        /// for LATIN1 or a search_path would get something else without knowing).
        @Test(arguments: ["transaction", "session"], [
            ("application_name", "it-startup-app", "application_name", "it-startup-app"),
            ("client_encoding", "LATIN1", "client_encoding", "LATIN1"),
            ("options", "-c search_path=it_schema,public", "search_path", "it_schema, public"),
        ])
        func startupParametersAreHonouredOrRefused(mode: String, parameter: (name: String, value: String, setting: String, expected: String)) async throws {
            try await withProxy(["pool_mode": mode]) { proxy in
                let result = try await python("""
                    try:
                        with psycopg.connect(DSN, autocommit=True, \(parameter.name)="\(parameter.value)") as conn:
                            emit(value=conn.execute("select current_setting('\(parameter.setting)')").fetchone()[0], error=None)
                    except psycopg.OperationalError as e:
                        emit(value=None, error=str(e))
                    """, port: proxy.port)
                struct Output: Decodable { var value: String?; var error: String? }
                let output = try result.json(Output.self)
                if let error = output.error {
                    #expect(error.contains(parameter.name), "refused without naming \(parameter.name): \(error)")
                } else {
                    #expect(output.value == parameter.expected, "\(parameter.name)=\(parameter.value) was silently ignored")
                }
            }
        }
    }
}
