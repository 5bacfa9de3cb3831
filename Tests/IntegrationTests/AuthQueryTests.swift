import Foundation
import Testing

/// A role made with plain SQL, an auth_user that may look it up, and the userlist that configures
/// only the auth_user: what the auth_query tests log in with. Removed by ``remove()``.
struct AuthQueryFixture {
    let role = uniqueName("sy_role")
    let password = "role-secret"
    let lookupUser: String
    let lookupPassword = "lookup-secret"
    let directory: String
    var userlist: String { directory + "/userlist.txt" }

    /// - Parameter superuser: the auth_user reads pg_shadow itself (the default auth_query);
    ///   otherwise it calls the README's SECURITY DEFINER function.
    static func make(superuser: Bool) async throws -> AuthQueryFixture {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("switchyard-it-auth")).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let fixture = AuthQueryFixture(lookupUser: uniqueName(superuser ? "sy_lookup_su" : "sy_lookup"), directory: directory)
        try "\"\(fixture.lookupUser)\" \"\(fixture.lookupPassword)\"\n".write(toFile: fixture.userlist, atomically: true, encoding: .utf8)
        _ = try await superuserQuery("""
            CREATE ROLE \(fixture.lookupUser) LOGIN \(superuser ? "SUPERUSER" : "") PASSWORD '\(fixture.lookupPassword)';
            CREATE ROLE \(fixture.role) LOGIN PASSWORD '\(fixture.password)';
            """)
        if !superuser {
            _ = try await superuserQuery("""
                CREATE SCHEMA IF NOT EXISTS switchyard_it AUTHORIZATION postgres;
                CREATE OR REPLACE FUNCTION switchyard_it.lookup(role_name text, OUT usename name, OUT passwd text)
                  RETURNS record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
                  $$ SELECT s.usename, s.passwd FROM pg_catalog.pg_shadow s WHERE s.usename = role_name $$;
                REVOKE ALL ON FUNCTION switchyard_it.lookup(text) FROM PUBLIC;
                GRANT USAGE ON SCHEMA switchyard_it TO \(fixture.lookupUser);
                GRANT EXECUTE ON FUNCTION switchyard_it.lookup(text) TO \(fixture.lookupUser);
                """, database: "app")
        }
        return fixture
    }

    func settings(superuser: Bool, poolMode: String, ttl: String? = nil) -> [String: String] {
        var settings = ["auth_file": userlist, "auth_user": lookupUser, "pool_mode": poolMode]
        if !superuser { settings["auth_query"] = "SELECT usename, passwd FROM switchyard_it.lookup($1)" }
        if let ttl { settings["auth_cache_ttl"] = ttl }
        return settings
    }

    func remove() async {
        try? FileManager.default.removeItem(atPath: directory)
        _ = try? await superuserQuery("""
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename IN ('\(role)', '\(lookupUser)');
            """)
        for name in [role, lookupUser] {
            _ = try? await superuserQuery("REVOKE ALL ON SCHEMA switchyard_it FROM \(name)", database: "app")
            _ = try? await superuserQuery("REVOKE ALL ON FUNCTION switchyard_it.lookup(text) FROM \(name)", database: "app")
            _ = try? await superuserQuery("DROP ROLE IF EXISTS \(name)")
        }
    }
}

extension IntegrationTests {
    /// auth_user + auth_query: roles that exist only in the database log in through Switchyard.
    @Suite struct AuthQuery {
        /// `CREATE ROLE r LOGIN PASSWORD 'p'` and nothing else: r logs in, in both pool modes and with
        /// both lookup styles, Switchyard logs in to Postgres as r (SCRAM pass-through), and a wrong
        /// password or an unknown role get Postgres' FATAL 28P01.
        @Test(arguments: [("transaction", false), ("session", true), ("transaction", true), ("session", false)])
        func roleFromTheDatabaseLogsIn(poolMode: String, superuser: Bool) async throws {
            let fixture = try await AuthQueryFixture.make(superuser: superuser)
            do {
                try await withProxy(fixture.settings(superuser: superuser, poolMode: poolMode)) { proxy in
                    let cold = ContinuousClock.now
                    let first = try await psql(port: proxy.port, user: fixture.role, password: fixture.password,
                                               ["select current_user", "select session_user"])
                    let coldLogin = ContinuousClock.now - cold
                    #expect(first.succeeded, "\(first)")
                    #expect(first.lines == [fixture.role, fixture.role], "\(first)")

                    let warm = ContinuousClock.now
                    let again = try await psql(port: proxy.port, user: fixture.role, password: fixture.password, ["select 1"])
                    let warmLogin = ContinuousClock.now - warm
                    #expect(again.output == "1", "\(again)")
                    print("auth_query \(poolMode) \(superuser ? "pg_shadow" : "function"): first login \(coldLogin), cached \(warmLogin)")

                    // The extended protocol, with postgres-nio's own SCRAM client.
                    let connection = try await connectNIO(port: proxy.port, user: fixture.role, password: fixture.password)
                    let names = try? await connection.values("select current_user::text", as: String.self)
                    try? await connection.close()
                    #expect(names == [fixture.role])

                    // The server saw the role itself, logged in with SCRAM: no password was configured for it.
                    let sessions = try await superuserQuery(
                        "select count(*) from pg_stat_activity where usename = '\(fixture.role)' and backend_type = 'client backend'")
                    #expect((Int(sessions) ?? 0) >= 1, "no server session of \(fixture.role): \(sessions)")

                    let wrong = try await psql(port: proxy.port, user: fixture.role, password: "not-it", ["select 1"])
                    #expect(!wrong.succeeded)
                    #expect(wrong.stderr.contains("FATAL:  password authentication failed for user \"\(fixture.role)\""), "\(wrong)")
                    let wrongError = await expectConnectFailure(port: proxy.port, user: fixture.role, password: "not-it")
                    #expect(wrongError?.sqlState == "28P01", "\(String(reflecting: wrongError))")

                    let ghost = uniqueName("sy_ghost")
                    let unknown = try await psql(port: proxy.port, user: ghost, password: "whatever", ["select 1"])
                    #expect(unknown.stderr.contains("FATAL:  password authentication failed for user \"\(ghost)\""), "\(unknown)")
                    let unknownError = await expectConnectFailure(port: proxy.port, user: ghost, password: "whatever")
                    #expect(unknownError?.sqlState == "28P01")

                    // A failed attempt does not lock the role out.
                    let after = try await psql(port: proxy.port, user: fixture.role, password: fixture.password, ["select current_user"])
                    #expect(after.output == fixture.role, "\(after)")
                }
            } catch {
                await fixture.remove()
                throw error
            }
            await fixture.remove()
        }

        /// ALTER ROLE ... PASSWORD: the new password works at once (auth_cache_ttl = 0), and once the
        /// old server connections are gone, new ones log in with the keys of the new password.
        @Test func passwordChangeTakesEffect() async throws {
            let fixture = try await AuthQueryFixture.make(superuser: false)
            do {
                try await withProxy(fixture.settings(superuser: false, poolMode: "transaction", ttl: "0")) { proxy in
                    let before = try await psql(port: proxy.port, user: fixture.role, password: fixture.password, ["select 1"])
                    #expect(before.output == "1", "\(before)")
                    _ = try await superuserQuery("ALTER ROLE \(fixture.role) PASSWORD 'changed-secret'")
                    _ = try await superuserQuery("""
                        SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '\(fixture.role)'
                        """)
                    let old = try await psql(port: proxy.port, user: fixture.role, password: fixture.password, ["select 1"])
                    #expect(old.stderr.contains("password authentication failed"), "\(old)")
                    // Retry: the pool may still hold a connection the server just terminated.
                    var output = ""
                    for _ in 0..<3 where output != fixture.role {
                        let new = try await psql(port: proxy.port, user: fixture.role, password: "changed-secret", ["select current_user"])
                        output = new.output
                    }
                    #expect(output == fixture.role)
                }
            } catch {
                await fixture.remove()
                throw error
            }
            await fixture.remove()
        }

        /// auth_type = md5: a role stored as an md5 hash logs in with md5, and the hash answers the
        /// server's md5 challenge; a role with a SCRAM verifier is asked for SCRAM instead, as Postgres'
        /// md5 method does. The server must ask the md5 role for md5: the test adds a pg_hba line for
        /// the group `switchyard_md5_roles` (once; it matches only that test-only group).
        @Test func md5RoleLogsInWithItsHash() async throws {
            let fixture = try await AuthQueryFixture.make(superuser: true)
            let md5Role = uniqueName("sy_md5")
            do {
                try await Self.allowMD5ForTestGroup()
                _ = try await superuserQuery("""
                    SET password_encryption = 'md5';
                    CREATE ROLE \(md5Role) LOGIN PASSWORD 'md5-role-secret' IN ROLE switchyard_md5_roles;
                    """)
                var settings = fixture.settings(superuser: true, poolMode: "transaction")
                settings["auth_type"] = "md5"
                try await withProxy(settings) { proxy in
                    let md5 = try await psql(port: proxy.port, user: md5Role, password: "md5-role-secret", ["select current_user"])
                    #expect(md5.output == md5Role, "\(md5)")
                    let method = try await superuserQuery("""
                        select count(*) from pg_stat_activity where usename = '\(md5Role)' and backend_type = 'client backend'
                        """)
                    #expect(method != "0", "the server connection for \(md5Role) is gone: \(method)")
                    let scram = try await psql(port: proxy.port, user: fixture.role, password: fixture.password, ["select current_user"])
                    #expect(scram.output == fixture.role, "\(scram)")
                    let wrong = try await psql(port: proxy.port, user: md5Role, password: "nope", ["select 1"])
                    #expect(wrong.stderr.contains("FATAL:  password authentication failed for user \"\(md5Role)\""), "\(wrong)")
                }
            } catch {
                _ = try? await superuserQuery("DROP ROLE IF EXISTS \(md5Role)")
                await fixture.remove()
                throw error
            }
            _ = try? await superuserQuery("""
                SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '\(md5Role)'
                """)
            _ = try? await superuserQuery("DROP ROLE IF EXISTS \(md5Role)")
            await fixture.remove()
        }

        /// `host all +switchyard_md5_roles 127.0.0.1/32 md5`, before the catch-all scram-sha-256 line.
        static func allowMD5ForTestGroup() async throws {
            _ = try await superuserQuery("""
                DO $$ BEGIN CREATE ROLE switchyard_md5_roles NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$
                """)
            let path = try await superuserQuery("SHOW hba_file")
            let text = try String(contentsOfFile: path, encoding: .utf8)
            let line = "host    all          +switchyard_md5_roles 127.0.0.1/32 md5"
            guard !text.contains(line) else { return }
            var lines = text.components(separatedBy: "\n")
            // The first host line for every user: "host all all ..." (first match wins in pg_hba).
            let catchAll = lines.firstIndex { line in
                let fields = line.split(whereSeparator: \.isWhitespace)
                return fields.count >= 3 && fields[0] == "host" && fields[2] == "all"
            }
            lines.insert(line, at: catchAll ?? lines.count)
            try lines.joined(separator: "\n").write(toFile: path, atomically: false, encoding: .utf8)
            _ = try await superuserQuery("SELECT pg_reload_conf()")
            try await Task.sleep(for: .milliseconds(300))
        }

        /// An auth_user that may not read pg_shadow: the client gets a fixed FATAL, not the server's text.
        @Test func lookupThatCannotRunIsReported() async throws {
            let fixture = try await AuthQueryFixture.make(superuser: false)
            do {
                var settings = fixture.settings(superuser: false, poolMode: "transaction")
                settings["auth_query"] = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1"
                try await withProxy(settings) { proxy in
                    let result = try await psql(port: proxy.port, user: fixture.role, password: fixture.password, ["select 1"])
                    #expect(!result.succeeded)
                    #expect(result.stderr.contains("could not look up the password of user \"\(fixture.role)\" with auth_query"), "\(result)")
                    #expect(!result.stderr.contains("permission denied"), "\(result)")
                }
            } catch {
                await fixture.remove()
                throw error
            }
            await fixture.remove()
        }
    }
}
