import Foundation
import Testing
@testable import SwitchyardProxy

@Suite("Configuration parsing")
struct ConfigurationParsingTests {
    @Test func exampleConfigLoads() throws {
        let config = try ProxyConfiguration.load(path: exampleConfigPath)
        #expect(config.sourcePath == exampleConfigPath)
        #expect(config.listenAddress == "127.0.0.1" && config.listenPort == 6432)
        #expect(config.poolMode == .transaction && config.poolSize == 20)
        #expect(config.clientAuthMethod == .scramSHA256)
        #expect(config.metricsPort == 9127)
        #expect(config.adminUsers == ["admin"])
        #expect(config.servers == [
            ServerDefinition(name: "primary", host: "127.0.0.1", port: 15432, role: .primary),
            ServerDefinition(name: "replica1", host: "127.0.0.1", port: 15433, role: .replica),
            ServerDefinition(name: "replica2", host: "127.0.0.1", port: 15434, role: .replica),
        ])
        #expect(config.primary.name == "primary")
        #expect(Set(config.users.keys) == ["app", "app_md5", "app_plain", "app_trust", "admin", "switchover"])
        #expect(config.switchover.user == "switchover")
        #expect(config.switchover.stateFile?.hasSuffix("/switchyard-state.json") == true, "resolved against the file's directory")
        #expect(config.users["app_md5"] == UserDefinition(
            name: "app_md5", clientSecret: .plaintext("md5-secret"), serverPassword: "md5-secret"))
        #expect(config.users["app_trust"]?.serverUser == "app_trust")
    }

    /// proxy.conf's commented-out `;key = value` lines claim to show the defaults: uncommenting them changes nothing.
    /// (Prose comments start with "; ", settings with ";" directly followed by the key.)
    @Test func exampleConfigCommentedValuesAreTheDefaults() throws {
        let text = try String(contentsOfFile: exampleConfigPath, encoding: .utf8)
        let pathKeys: Set = ["auth_file", "client_tls_cert_file", "client_tls_key_file", "server_tls_ca_file"]
        var uncommented: [String] = []
        let expanded = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            guard line.hasPrefix(";"), line.dropFirst().first?.isLowercase == true,
                  let key = line.dropFirst().split(separator: " ").first.map(String.init),
                  !pathKeys.contains(key) else { return String(line) }
            uncommented.append(key)
            return String(line.dropFirst())
        }.joined(separator: "\n")
        #expect(uncommented.count == 29)
        #expect(try ProxyConfiguration.parse(expanded) == ProxyConfiguration.parse(text))
    }

    @Test func defaults() throws {
        let config = try ProxyConfiguration.parse(minimalConfig)
        #expect(config.listenAddress == "127.0.0.1")
        #expect(config.listenPort == 6432)
        #expect(config.workerThreads == ProcessInfo.processInfo.activeProcessorCount)
        #expect(config.poolMode == .transaction)
        #expect(config.poolSize == 20)
        #expect(config.maxClientConnections == 1000)
        #expect(config.maxMessageSize == 1_073_741_824)
        #expect(config.maxBufferedBytes == 536_870_912)
        #expect(config.connectTimeout == .seconds(5))
        #expect(config.queryWaitTimeout == .seconds(30))
        #expect(config.serverIdleTimeout == .seconds(600))
        #expect(config.idleTransactionTimeout == nil)
        #expect(config.shutdownTimeout == .seconds(30))
        #expect(config.serverResetQuery == "DISCARD ALL")
        #expect(config.clientAuthMethod == .scramSHA256)
        #expect(config.adminUsers.isEmpty)
        #expect(config.switchover == SwitchoverConfiguration(user: nil, drainTimeout: .seconds(5), maxLagBytes: 16 << 20, stateFile: nil))
        #expect(config.logLevel == "info")
        #expect(config.metricsAddress == "127.0.0.1" && config.metricsPort == nil)
        #expect(config.clientTLS == ClientTLSConfiguration())
        #expect(config.serverTLS == ServerTLSConfiguration())
        #expect(config.servers == [ServerDefinition(name: "main", host: "db.internal", port: 5432, role: .primary, weight: 1)])
        #expect(config.users == ["app": UserDefinition(
            name: "app", clientSecret: .plaintext("app-secret"), serverUser: "app", serverPassword: "app-secret")])
        #expect(config.sourcePath == nil)
    }

    @Test func explicitValues() throws {
        let config = try ProxyConfiguration.parse("""
            [switchyard]
            worker_threads = 8
            health_check_user = app
            pool_mode = Session
            connect_timeout = 0.25
            query_wait_timeout = 0
            server_idle_timeout = 0
            idle_transaction_timeout = 1.5
            server_reset_query =
            metrics_port = 9127
            max_message_size = 1024
            [servers]
            main = host=db role=primary
            r1 = host=r1 port=6000 role=replica weight=3
            [users]
            app = password=app-secret
            """)
        #expect(config.workerThreads == 8)
        #expect(config.poolMode == .session)
        #expect(config.connectTimeout == .milliseconds(250))
        #expect(config.queryWaitTimeout == nil && config.serverIdleTimeout == nil)
        #expect(config.idleTransactionTimeout == .milliseconds(1500))
        #expect(config.serverResetQuery == nil)
        #expect(config.metricsPort == 9127)
        #expect(config.maxMessageSize == 1024)
        #expect(config.servers[1] == ServerDefinition(name: "r1", host: "r1", port: 6000, role: .replica, weight: 3))
    }

    @Test func quotedValuesAndComments() throws {
        let config = try ProxyConfiguration.parse(#"""
            # hash comment
            [SwitchYard]   ; comment after a header
            server_reset_query = "SET search_path = \"a;b\" ; RESET ALL"  ; comment
            listen_addr = 0.0.0.0 # comment
            LISTEN_PORT=7000
            log_level = DEBUG
            admin_users = alice, bob ,
            [servers]
            main = host=db role=primary   ; the primary
            [users]
            alice = password="p a;ss#w\"o\\rd" server_user=alice_pg
            bob = password=semi;colon#hash
            """#)
        #expect(config.serverResetQuery == #"SET search_path = "a;b" ; RESET ALL"#)
        #expect(config.listenAddress == "0.0.0.0" && config.listenPort == 7000)
        #expect(config.logLevel == "debug")
        #expect(config.adminUsers == ["alice", "bob"])
        #expect(config.users["alice"] == UserDefinition(
            name: "alice", clientSecret: .plaintext(#"p a;ss#w"o\rd"#), serverUser: "alice_pg",
            serverPassword: #"p a;ss#w"o\rd"#))
        #expect(config.users["bob"]?.clientSecret == .plaintext("semi;colon#hash"))
    }

    @Test func secretKinds() throws {
        let md5 = "md5" + String(repeating: "0123456789abcdef", count: 2)
        let scram = try ProxyConfiguration.parse("""
            [servers]
            main = host=db role=primary
            [users]
            v = password="\(sampleSCRAMVerifier)" server_password=pg-pass
            w = password=\(sampleSCRAMVerifier) server_user=other
            u = password=md5\(String(repeating: "AB", count: 16))
            """)
        // Like PostgreSQL, only lowercase hex makes an md5 hash; anything else is a plaintext password.
        #expect(scram.users["u"]?.clientSecret == .plaintext("md5" + String(repeating: "AB", count: 16)))
        #expect(scram.users["v"] == UserDefinition(
            name: "v", clientSecret: .scramVerifier(sampleSCRAMVerifier), serverPassword: "pg-pass"))
        #expect(scram.users["w"] == UserDefinition(
            name: "w", clientSecret: .scramVerifier(sampleSCRAMVerifier), serverUser: "other", serverPassword: nil))

        let md5Config = try ProxyConfiguration.parse("""
            [switchyard]
            auth_type = md5
            [servers]
            main = host=db role=primary
            [users]
            h = password=\(md5)
            """)
        #expect(md5Config.users["h"]?.clientSecret == .md5Hash(md5))

        let trust = try ProxyConfiguration.parse("""
            [switchyard]
            auth_type = trust
            [servers]
            main = host=db role=primary
            [users]
            t = server_user=pg_t
            """)
        #expect(trust.users["t"] == UserDefinition(name: "t", clientSecret: nil, serverUser: "pg_t"))
    }

    @Test func authFileMergesUsers() throws {
        let directory = try makeConfigTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try """
            ; PgBouncer userlist
            "carol" "carol-secret"

            "we""ird" "\(sampleSCRAMVerifier)"   "extra fields are ignored"
            """.write(toFile: directory + "/userlist.txt", atomically: true, encoding: .utf8)
        try (minimalConfig + "\n[switchyard]\nauth_file = userlist.txt\nadmin_users = carol\n")
            .write(toFile: directory + "/proxy.conf", atomically: true, encoding: .utf8)

        let config = try ProxyConfiguration.load(path: directory + "/proxy.conf")
        #expect(Set(config.users.keys) == ["app", "carol", "we\"ird"])
        #expect(config.users["carol"] == UserDefinition(
            name: "carol", clientSecret: .plaintext("carol-secret"), serverPassword: "carol-secret"))
        #expect(config.users["we\"ird"] == UserDefinition(name: "we\"ird", clientSecret: .scramVerifier(sampleSCRAMVerifier)))
    }

    @Test func tlsFilesResolveAgainstBaseDirectory() throws {
        let directory = try makeConfigTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for name in ["server.crt", "server.key", "root.crt"] {
            try "x".write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
        }
        let config = try ProxyConfiguration.parse("""
            [switchyard]
            client_tls_sslmode = require
            client_tls_cert_file = server.crt
            client_tls_key_file = \(directory)/server.key
            server_tls_sslmode = verify-full
            server_tls_ca_file = root.crt
            """ + "\n" + minimalConfig, baseDirectory: directory)
        #expect(config.clientTLS == ClientTLSConfiguration(
            mode: .require, certificateFile: directory + "/server.crt", keyFile: directory + "/server.key"))
        #expect(config.serverTLS == ServerTLSConfiguration(mode: .verifyFull, caFile: directory + "/root.crt"))
    }

    @Test func descriptionsNeverShowSecrets() throws {
        let config = try ProxyConfiguration.parse("""
            [servers]
            main = host=db role=primary
            [users]
            app = password=plain-topsecret server_password=server-topsecret
            v = password=\(sampleSCRAMVerifier)
            """)
        var dumped = ""
        dump(config, to: &dumped)
        for text in [String(describing: config), String(reflecting: config), dumped,
                     String(describing: config.users["app"]!), String(reflecting: config.users["app"]!.clientSecret)] {
            #expect(!text.contains("topsecret"))
            #expect(!text.contains(sampleSCRAMVerifier.dropFirst(20).prefix(10)))
        }
        #expect(String(describing: ClientSecret.plaintext("x-topsecret")) == "plaintext(<redacted>)")
        #expect(String(describing: config.users["app"]!).contains("serverPassword: <redacted>"))
    }
}

@Suite struct SwitchoverConfigurationTests {
    @Test func keysAndTheirChecks() throws {
        let text = """
            [switchyard]
            switchover_user = ops
            switchover_drain_timeout = 1.5
            switchover_max_lag = 1024
            state_file = /var/lib/switchyard/state.json
            [servers]
            a = host=h role=primary
            b = host=h role=standby
            [users]
            ops = password=x
            """
        let config = try ProxyConfiguration.parse(text)
        #expect(config.switchover == SwitchoverConfiguration(user: "ops", drainTimeout: .milliseconds(1500), maxLagBytes: 1024,
                                                             stateFile: "/var/lib/switchyard/state.json"))
        #expect(config.servers[1].role == .standby)
        let typo = text.replacingOccurrences(of: "switchover_user = ops", with: "switchover_user = opz")
        #expect(throws: ConfigurationError.self) { try ProxyConfiguration.parse(typo) }
        do { _ = try ProxyConfiguration.parse(typo) } catch {
            #expect("\(error)".contains("switchover_user 'opz' is not defined in [users] or auth_file"))
        }
    }
}
