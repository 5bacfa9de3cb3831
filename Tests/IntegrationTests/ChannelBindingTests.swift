import Testing

extension IntegrationTests {
    /// SCRAM-SHA-256-PLUS over TLS, tried with libpq: directly, and through a relay that terminates
    /// TLS with a certificate of its own (the man in the middle channel binding exists to stop).
    @Suite struct ChannelBinding {
        static func tlsSettings(_ certificate: SelfSignedCertificate) -> [String: String] {
            ["client_tls_sslmode": "allow", "client_tls_cert_file": certificate.certificatePath,
             "client_tls_key_file": certificate.keyPath]
        }

        @Test func psqlWithChannelBindingRequireConnects() async throws {
            let certificate = try await SelfSignedCertificate.make()
            defer { certificate.remove() }
            try await withProxy(Self.tlsSettings(certificate)) { proxy in
                let bound = try await psql(port: proxy.port, sslmode: "require channel_binding=require", ["select current_user"])
                #expect(bound.succeeded, "\(bound)")
                #expect(bound.output == "app", "\(bound)")
                // Without TLS there is nothing to bind to, and libpq refuses by itself.
                let plain = try await psql(port: proxy.port, sslmode: "disable channel_binding=require", ["select 1"])
                #expect(!plain.succeeded, "\(plain)")
            }
        }

        /// A TLS relay with another certificate: libpq binds to the relay's certificate, so the
        /// login is refused with Postgres' FATAL 28000. A relay that also strips -PLUS from the
        /// mechanism list makes libpq (channel_binding=prefer) send "y": refused as a downgrade.
        /// Plain SCRAM through the relay (channel_binding=disable) still works.
        @Test(arguments: [
            ("relay", "require", "28000", "SCRAM channel binding check failed"),
            ("strip-plus", "prefer", "28000", "SCRAM channel binding negotiation error"),
            ("relay", "disable", nil, nil),
        ] as [(String, String, String?, String?)])
        func relayWithAnotherCertificateIsRefused(mode: String, channelBinding: String, sqlState: String?, message: String?) async throws {
            let certificate = try await SelfSignedCertificate.make()
            let relayCertificate = try await SelfSignedCertificate.make()
            defer { certificate.remove(); relayCertificate.remove() }
            try await withProxy(Self.tlsSettings(certificate)) { proxy in
                let result = try await python(Self.relayScript + """
                    relay_port = start_relay(int(os.environ["PROXY_PORT"]), os.environ["RELAY_CERT"], os.environ["RELAY_KEY"],
                                             os.environ["RELAY_MODE"])
                    try:
                        with psycopg.connect(dsn(port=relay_port, sslmode="require",
                                                 channel_binding=os.environ["CHANNEL_BINDING"])) as conn:
                            emit(sqlstate=None, message=None, user=conn.execute("select current_user").fetchone()[0])
                    except psycopg.OperationalError as e:
                        emit(sqlstate=e.sqlstate, message=str(e), user=None)
                    """, port: proxy.port, environment: [
                        "RELAY_CERT": relayCertificate.certificatePath, "RELAY_KEY": relayCertificate.keyPath,
                        "RELAY_MODE": mode, "CHANNEL_BINDING": channelBinding,
                    ], timeout: .seconds(40))
                struct Output: Decodable { var sqlstate: String?; var message: String?; var user: String? }
                let output = try result.json(Output.self)
                // libpq reports a failed connection without a result, so psycopg may not know the SQLSTATE.
                #expect(output.sqlstate == nil || output.sqlstate == sqlState, "\(result)")
                if let message {
                    #expect(output.message?.contains(message) == true, "\(result)")
                } else {
                    #expect(output.user == "app", "\(result)")
                }
            }
        }

        /// A TLS-terminating relay on a free port, in a thread: answers SSLRequest with S, wraps the
        /// client in TLS with its own certificate, and opens TLS to Switchyard. "strip-plus" rewrites
        /// Switchyard's AuthenticationSASL to offer only SCRAM-SHA-256.
        static let relayScript = """
            import socket, ssl, struct

            def read_exact(sock, count):
                data = b""
                while len(data) < count:
                    chunk = sock.recv(count - len(data))
                    if not chunk:
                        raise EOFError
                    data += chunk
                return data

            def pump(one, other):
                # One thread for both directions: an SSL socket must not be read and written from two
                # threads at once (OpenSSL's state is not shared safely), which dropped relayed logins.
                import select
                peers = {one: other, other: one}
                try:
                    while True:
                        ready = [s for s in peers if s.pending()]
                        if not ready:
                            ready, _, _ = select.select(list(peers), [], [], 20)
                            if not ready:
                                break
                        for source in ready:
                            data = source.recv(65536)
                            if not data:
                                raise EOFError
                            peers[source].sendall(data)
                except (OSError, EOFError):
                    pass
                for s in peers:
                    try:
                        s.close()
                    except OSError:
                        pass

            def serve(client, upstream_port, cert, key, mode):
                client.settimeout(20)
                assert read_exact(client, 8) == struct.pack("!ii", 8, 80877103)
                client.sendall(b"S")
                server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                server_side.load_cert_chain(cert, key)
                client = server_side.wrap_socket(client, server_side=True)
                upstream = socket.create_connection(("127.0.0.1", upstream_port), timeout=20)
                upstream.sendall(struct.pack("!ii", 8, 80877103))
                assert read_exact(upstream, 1) == b"S"
                client_side = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                client_side.check_hostname = False
                client_side.verify_mode = ssl.CERT_NONE
                upstream = client_side.wrap_socket(upstream)
                length = struct.unpack("!i", read_exact(client, 4))[0]
                upstream.sendall(struct.pack("!i", length) + read_exact(client, length - 4))
                kind = read_exact(upstream, 1)
                length = struct.unpack("!i", read_exact(upstream, 4))[0]
                body = read_exact(upstream, length - 4)
                if mode == "strip-plus" and kind == b"R" and body[:4] == struct.pack("!i", 10):
                    body = struct.pack("!i", 10) + b"SCRAM-SHA-256\\0\\0"
                client.sendall(kind + struct.pack("!i", len(body) + 4) + body)
                threading.Thread(target=pump, args=(client, upstream), daemon=True).start()

            def start_relay(upstream_port, cert, key, mode):
                listener = socket.socket()
                listener.bind(("127.0.0.1", 0))
                listener.listen(4)
                def accept():
                    while True:
                        client, _ = listener.accept()
                        threading.Thread(target=serve, args=(client, upstream_port, cert, key, mode), daemon=True).start()
                threading.Thread(target=accept, daemon=True).start()
                return listener.getsockname()[1]

            """
    }
}
