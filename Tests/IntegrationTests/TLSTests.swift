import Testing

extension IntegrationTests {
    /// TLS between clients and the proxy.
    @Suite struct TLS {
        /// client_tls_sslmode=require: psql with sslmode=require gets a TLS session and queries work;
        /// sslmode=disable is refused with a FATAL that mentions SSL.
        @Test func requireMode() async throws {
            let certificate = try await SelfSignedCertificate.make()
            defer { certificate.remove() }
            try await withProxy([
                "client_tls_sslmode": "require", "client_tls_cert_file": certificate.certificatePath,
                "client_tls_key_file": certificate.keyPath,
            ]) { proxy in
                let secure = try await psql(port: proxy.port, sslmode: "require", ["\\conninfo", "select 'over-tls'"])
                #expect(secure.succeeded, "\(secure)")
                #expect(secure.stdout.contains("SSL connection"), "\(secure)")
                #expect(secure.lines.last == "over-tls", "\(secure)")

                let plain = try await psql(port: proxy.port, sslmode: "disable", ["select 1"])
                #expect(!plain.succeeded)
                #expect(plain.stderr.contains("FATAL"), "\(plain)")
                #expect(plain.stderr.contains("SSL"), "\(plain)")
            }
        }

        /// The extended protocol and large results work over TLS too (postgres-nio is not TLS-
        /// configured here, so psycopg with sslmode=require).
        @Test func largeResultOverTLS() async throws {
            let certificate = try await SelfSignedCertificate.make()
            defer { certificate.remove() }
            try await withProxy([
                "client_tls_sslmode": "allow", "client_tls_cert_file": certificate.certificatePath,
                "client_tls_key_file": certificate.keyPath,
            ]) { proxy in
                let result = try await python("""
                    with psycopg.connect(dsn(sslmode="require")) as conn:
                        ssl = conn.pgconn.ssl_in_use
                        value = conn.execute("select repeat(%s, 5*1024*1024)", ("ab",)).fetchone()[0]
                    with psycopg.connect(dsn(sslmode="disable")) as plain:
                        plain_ok = plain.execute("select 1").fetchone()[0] == 1
                    emit(ssl=ssl, length=len(value), plain_ok=plain_ok)
                    """, port: proxy.port)
                struct Output: Decodable { var ssl: Bool; var length: Int; var plain_ok: Bool }
                let output = try result.json(Output.self)
                #expect(output.ssl, "\(result)")
                #expect(output.length == 10 * 1024 * 1024)
                #expect(output.plain_ok, "client_tls_sslmode=allow still admits plaintext clients")
            }
        }

        /// With client_tls_sslmode=require, a client on TLS can still cancel: libpq sends its
        /// CancelRequest on a new, unencrypted connection, which must not be refused.
        @Test func cancelWhileTLSIsRequired() async throws {
            let certificate = try await SelfSignedCertificate.make()
            defer { certificate.remove() }
            try await withProxy([
                "client_tls_sslmode": "require", "client_tls_cert_file": certificate.certificatePath,
                "client_tls_key_file": certificate.keyPath, "worker_threads": "1",
            ]) { proxy in
                let result = try await python("""
                    with psycopg.connect(dsn(sslmode="require"), autocommit=True) as conn:
                        threading.Timer(1.0, conn.cancel).start()
                        start = time.monotonic()
                        try:
                            conn.execute("select pg_sleep(20)")
                            error = None
                        except psycopg.Error as e:
                            error = e.sqlstate
                        emit(error=error, elapsed=time.monotonic() - start)
                    """, port: proxy.port, timeout: .seconds(40))
                struct Output: Decodable { var error: String?; var elapsed: Double }
                let output = try result.json(Output.self)
                #expect(output.error == "57014" && output.elapsed < 5, "\(result)")
            }
        }
    }
}
