import Testing

extension IntegrationTests {
    /// Clients authenticate to the proxy with SCRAM; the proxy logs in to Postgres with whatever
    /// the server asks for (SCRAM, md5, cleartext, trust).
    @Suite struct Authentication {
        @Test(arguments: ["app", "app_md5", "app_plain", "app_trust"])
        func userLogsInWhateverTheBackendMethod(user: String) async throws {
            try await withProxy { proxy in
                let result = try await psql(port: proxy.port, user: user, ["select current_user"])
                #expect(result.succeeded, "\(result)")
                #expect(result.output == user)
                // The extended protocol too, with postgres-nio's own SCRAM client.
                let names = try await withNIOConnection(port: proxy.port, user: user) { try await $0.values("select current_user::text", as: String.self) }
                #expect(names == [user])
            }
        }

        /// Wrong password → FATAL 28P01 with PostgreSQL's exact wording.
        @Test func wrongPasswordIsRejected() async throws {
            try await withProxy { proxy in
                let result = try await psql(port: proxy.port, user: "app", password: "not-the-password", ["select 1"])
                #expect(!result.succeeded)
                #expect(result.stderr.contains("FATAL:  password authentication failed for user \"app\""), "\(result)")

                let error = await expectConnectFailure(port: proxy.port, user: "app", password: "not-the-password")
                #expect(error?.sqlState == "28P01", "\(String(reflecting: error))")
                #expect(error?.serverMessage == "password authentication failed for user \"app\"")
            }
        }

        /// An unknown user fails exactly like a known user with a wrong password: nothing reveals
        /// whether the user exists.
        @Test func unknownUserLooksLikeWrongPassword() async throws {
            try await withProxy { proxy in
                let result = try await psql(port: proxy.port, user: "nobody_here", password: "whatever", ["select 1"])
                #expect(!result.succeeded)
                #expect(result.stderr.contains("FATAL:  password authentication failed for user \"nobody_here\""), "\(result)")

                let unknown = await expectConnectFailure(port: proxy.port, user: "nobody_here", password: "whatever")
                let known = await expectConnectFailure(port: proxy.port, user: "app", password: "whatever")
                #expect(unknown?.sqlState == "28P01")
                #expect(unknown?.sqlState == known?.sqlState)
                #expect(unknown?.serverSeverity == known?.serverSeverity)
                #expect(unknown?.serverMessage?.replacingOccurrences(of: "nobody_here", with: "app") == known?.serverMessage)
            }
        }

        /// A database Postgres does not have → FATAL 3D000, passed on from the server.
        @Test func unknownDatabaseIsReported() async throws {
            try await withProxy { proxy in
                let result = try await psql(port: proxy.port, database: "no_such_db", ["select 1"])
                #expect(!result.succeeded)
                #expect(result.stderr.contains("database \"no_such_db\" does not exist"), "\(result)")

                let error = await expectConnectFailure(port: proxy.port, database: "no_such_db")
                #expect(error?.sqlState == "3D000", "\(String(reflecting: error))")
            }
        }

        /// auth_type = md5: clients authenticate with md5 (salted per connection) instead of SCRAM.
        @Test func md5ClientAuthentication() async throws {
            try await withProxy(["auth_type": "md5"]) { proxy in
                let good = try await psql(port: proxy.port, ["select current_user"])
                #expect(good.output == "app", "\(good)")
                let bad = try await psql(port: proxy.port, user: "app", password: "wrong", ["select 1"])
                #expect(bad.stderr.contains("FATAL:  password authentication failed for user \"app\""), "\(bad)")
            }
        }
    }
}
