import Testing

extension IntegrationTests {
    /// Hostile or broken byte streams: a FATAL ErrorResponse and a closed socket, never a crash,
    /// a hang or a huge allocation; other clients keep working.
    @Suite struct MalformedInput {
        /// After login, a 'Q' whose length word (2) is below the minimum of 4 → 08P01, then close.
        @Test func bogusMessageLengthAfterLogin() async throws {
            try await withProxy(["auth_type": "trust"]) { proxy in
                let client = try await RawClient.login(port: proxy.port)
                defer { client.close() }
                try await client.send([UInt8(ascii: "Q")] + Wire.int32(2))
                let frames = try await client.readUntilClosed()
                #expect(frames.firstError?.sqlState == "08P01", "\(frames)")
                #expect(frames.firstError?.severity == "FATAL")
                try await expectProxyServes(proxy)
            }
        }

        /// A message longer than max_message_size is refused from its header alone → 08P01.
        @Test func messageOverMaxMessageSize() async throws {
            try await withProxy(["auth_type": "trust", "max_message_size": "4096"]) { proxy in
                let client = try await RawClient.login(port: proxy.port)
                defer { client.close() }
                let small = try await client.query("select length('\(String(repeating: "a", count: 3000))')")
                #expect(small.firstColumn == ["3000"], "a message under the limit passes: \(small)")
                try await client.send(Wire.query("select '\(String(repeating: "a", count: 10_000))'"))
                let frames = try await client.readUntilClosed()
                #expect(frames.firstError?.sqlState == "08P01", "\(frames)")
                #expect(frames.firstError?.severity == "FATAL")
                try await expectProxyServes(proxy)
            }
        }

        /// Garbage as the very first packet (an absurd length word) → an error and a close; the
        /// proxy survives and serves the next client.
        @Test(arguments: [
            [0x7F, 0xFF, 0xFF, 0xF0, 0xDE, 0xAD, 0xBE, 0xEF] as [UInt8],  // 2 GB "startup packet"
            [0x00, 0x00, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00],             // length 2
            [0x47, 0x45, 0x54, 0x20, 0x2F, 0x20, 0x48, 0x54],             // "GET / HT" (HTTP to the PG port)
        ])
        func garbageFirstPacket(bytes: [UInt8]) async throws {
            try await withProxy { proxy in
                let client = try await RawClient.connect(port: proxy.port)
                defer { client.close() }
                try await client.send(bytes)
                let frames = try await client.readUntilClosed()
                #expect(frames.allSatisfy { $0.isError }, "\(frames)")
                if let error = frames.firstError { #expect(error.sqlState == "08P01" && error.severity == "FATAL", "\(frames)") }
                try await expectProxyServes(proxy)
            }
        }

        /// Protocol 2.0 is refused with a FATAL naming the unsupported protocol (as Postgres does).
        @Test func protocolTwoIsRefused() async throws {
            try await withProxy { proxy in
                let client = try await RawClient.connect(port: proxy.port)
                defer { client.close() }
                try await client.send(Wire.startup([("user", "app"), ("database", "app")], version: 2 << 16))
                let frames = try await client.readUntilClosed()
                let error = try #require(frames.firstError, "\(frames)")
                #expect(error.severity == "FATAL")
                #expect(error.message?.contains("unsupported frontend protocol") == true, "\(error)")
                #expect(error.sqlState == "0A000" || error.sqlState == "08P01", "\(error)")
            }
        }

        /// GSSENCRequest and SSLRequest (TLS off) each get a single 'N', after which the client may
        /// go on in plaintext on the same connection.
        @Test(arguments: ["gss", "ssl", "gss+ssl"])
        func encryptionRequestsAreDeclined(requests: String) async throws {
            try await withProxy(["auth_type": "trust"]) { proxy in
                let client = try await RawClient.connect(port: proxy.port)
                defer { client.close() }
                for request in requests.split(separator: "+") {
                    try await client.send(request == "gss" ? Wire.gssEncryptionRequest : Wire.sslRequest)
                    #expect(try await client.readByte() == UInt8(ascii: "N"))
                }
                try await client.login(user: "app_trust", database: "app", password: nil)
                #expect(try await client.query("select 'plaintext ok'").firstColumn == ["plaintext ok"])
            }
        }

        /// CVE-2021-23214: an SSLRequest with a StartupMessage glued behind it in the same write
        /// must not be processed (those bytes were not protected by the handshake).
        @Test(arguments: ["disable", "allow"])
        func dataAfterSSLRequestIsRejected(tls: String) async throws {
            let certificate = try await SelfSignedCertificate.make()
            var settings = ["auth_type": "trust", "client_tls_sslmode": tls]
            if tls != "disable" {
                settings["client_tls_cert_file"] = certificate.certificatePath
                settings["client_tls_key_file"] = certificate.keyPath
            }
            try await withProxy(settings) { proxy in
                let client = try await RawClient.connect(port: proxy.port)
                defer { client.close() }
                try await client.send(Wire.sslRequest + Wire.startup(user: "app_trust", database: "app"))
                let reply = try await offload { () -> [UInt8] in
                    var bytes: [UInt8] = []
                    while true {
                        let chunk = try client.socket.receive(timeout: .seconds(10))
                        if chunk.isEmpty { return bytes }
                        bytes += chunk
                    }
                }
                // Either nothing or an 08P01 ErrorResponse, then a close: no 'S'/'N', no authentication.
                let text = String(decoding: reply, as: UTF8.self)
                #expect(reply.isEmpty || reply.first == UInt8(ascii: "E"), "unexpected reply: \(text.prefix(80))")
                #expect(reply.isEmpty || text.contains("C08P01"), "\(text.prefix(200))")
                try await expectProxyServes(proxy)
            }
        }
    }
}

/// A fresh client can log in and query: the proxy survived whatever the test did.
func expectProxyServes(_ proxy: TestProxy, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let user = proxy.configuration.clientAuthMethod == .trust ? "app_trust" : "app"
    let result = try await psql(port: proxy.port, user: user, ["select 'alive'"], timeout: .seconds(20))
    #expect(result.output == "alive", "\(result)", sourceLocation: sourceLocation)
}
