import Foundation
import Testing
@testable import SwitchyardProxy

@Suite("Configuration errors")
struct ConfigurationErrorTests {
    @Test func unknownKeySuggestsClosest() {
        #expect(configErrorLines("[switchyard]\npool_sise = 5\n" + minimalConfig) == [
            "proxy.conf:2: unknown key 'pool_sise' in [switchyard] (did you mean 'pool_size'?)",
        ])
        #expect(configErrorLines("[switchyard]\nfrobnicate = 1\n" + minimalConfig) == [
            "proxy.conf:2: unknown key 'frobnicate' in [switchyard]",
        ])
        let issue = configIssues("[switchyard]\nListen_Prot = 1\n" + minimalConfig)
        #expect(issue == [ConfigurationIssue(file: "proxy.conf", line: 2, key: "listen_prot",
                                             message: "unknown key 'listen_prot' in [switchyard] (did you mean 'listen_port'?)")])
    }

    /// Found by the configuration fuzz target: a pasted blob as a key was echoed whole in the error,
    /// and the suggestion's edit distances over it took minutes.
    @Test func aRunawayKeyIsCutInItsErrorAndGetsNoSuggestion() {
        let key = String(repeating: "x", count: 100_000)
        #expect(configErrorLines("[switchyard]\n\(key) = 1\n" + minimalConfig) == [
            "proxy.conf:2: unknown key '\(String(repeating: "x", count: 64))…' in [switchyard]",
        ])
        #expect(ConfigurationParser.closest("pool_sizes", ConfigurationParser.settingKeys) == "pool_size")
        #expect(ConfigurationParser.closest("idle_transaction_timeouts", ConfigurationParser.settingKeys) == "idle_transaction_timeout")
    }

    @Test func unknownSection() {
        #expect(configErrorLines(minimalConfig + "\n[databases]\nfoo = host=x\n[server]\n") == [
            "proxy.conf:5: unknown section [databases] (expected [switchyard], [servers] or [users])",
            "proxy.conf:7: unknown section [server] (did you mean [servers]?)",
        ])
    }

    @Test func wrongType() {
        #expect(configErrorLines("[switchyard]\npool_size = lots\nconnect_timeout = soon\n" + minimalConfig) == [
            "proxy.conf:2: 'pool_size' must be an integer, got 'lots'",
            "proxy.conf:3: 'connect_timeout' must be a number of seconds, got 'soon'",
        ])
    }

    @Test func outOfRange() {
        let text = """
            [switchyard]
            listen_port = 70000
            max_message_size = 100
            connect_timeout = 0
            worker_threads = -1
            query_wait_timeout = -5
            """
        #expect(configErrorLines(text + "\n" + minimalConfig) == [
            "proxy.conf:2: 'listen_port' must be between 1 and 65535, got 70000",
            "proxy.conf:3: 'max_message_size' must be between 1024 and 2147483647, got 100",
            "proxy.conf:4: 'connect_timeout' must be greater than 0 and at most 31536000 seconds, got 0",
            "proxy.conf:5: 'worker_threads' must be between 0 and 256, got -1",
            "proxy.conf:6: 'query_wait_timeout' must be between 0 and 31536000 seconds, got -5",
        ])
    }

    @Test func duplicateKeys() {
        let text = """
            [switchyard]
            pool_size = 5
            POOL_SIZE = 6
            [servers]
            main = host=x role=primary
            main = host=y role=replica
            [users]
            app = password=a-secret
            """
        #expect(configErrorLines(text) == [
            "proxy.conf:3: duplicate key 'pool_size' in [switchyard] (first set on line 2)",
            "proxy.conf:6: duplicate key 'main' in [servers] (first set on line 5)",
        ])
    }

    @Test func missingOrDoublePrimary() {
        #expect(configErrorLines("[servers]\nr = host=a role=replica\n") == [
            "proxy.conf:1: no primary server: exactly one [servers] entry needs role=primary",
        ])
        #expect(configErrorLines("[servers]\na = host=a role=primary\nb = host=b role=primary\n") == [
            "proxy.conf:3: server 'b' is a second primary (server 'a' on line 2 is already primary)",
        ])
        #expect(configErrorLines("[switchyard]\npool_size = 5\n") == [
            "proxy.conf: no servers defined: [servers] needs one entry with role=primary",
        ])
    }

    @Test func badServerEntries() {
        let text = """
            [servers]
            main = host=db role=primary prot=5432
            r1 = host=r1 role=replica port=http
            r2 = role=replica weight=0
            r3 = host=r3 role=leader
            bad.name = host=x role=replica
            r4 = host = r4
            """
        #expect(configErrorLines(text) == [
            "proxy.conf:2: server 'main': unknown key 'prot' (did you mean 'port'?)",
            "proxy.conf:3: port of server 'r1' must be an integer, got 'http'",
            "proxy.conf:4: server 'r2' needs host=...",
            "proxy.conf:4: weight of server 'r2' must be at least 1, got 0",
            "proxy.conf:5: role of server 'r3' must be one of primary, replica, standby, got 'leader'",
            "proxy.conf:6: invalid server name 'bad.name' (use letters, digits, '_' and '-')",
            "proxy.conf:7: server 'r4': expected space-separated key=value pairs (quote values containing spaces)",
        ])
    }

    @Test func badEnumValue() {
        #expect(configErrorLines("[switchyard]\npool_mode = statement\nauth_type = scram\nlog_level = warn\n" + minimalConfig) == [
            "proxy.conf:2: 'pool_mode' must be one of transaction, session, got 'statement'",
            "proxy.conf:3: 'auth_type' must be one of scram-sha-256, md5, trust, got 'scram'",
            "proxy.conf:4: 'log_level' must be one of trace, debug, info, notice, warning, error, critical, got 'warn' (did you mean 'warning'?)",
        ])
    }

    @Test func tlsFilesRequiredAndReadable() throws {
        #expect(configErrorLines("[switchyard]\nclient_tls_sslmode = require\nserver_tls_sslmode = verify-ca\n" + minimalConfig) == [
            "proxy.conf:2: 'client_tls_cert_file' is required when client_tls_sslmode = require",
            "proxy.conf:2: 'client_tls_key_file' is required when client_tls_sslmode = require",
            "proxy.conf:3: 'server_tls_ca_file' is required when server_tls_sslmode = verify-ca",
        ])
        let directory = try makeConfigTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let text = """
            [switchyard]
            client_tls_sslmode = allow
            client_tls_cert_file = missing.crt
            client_tls_key_file = "\(directory)"
            """
        #expect(configErrorLines(text + "\n" + minimalConfig, baseDirectory: directory) == [
            "proxy.conf:3: 'client_tls_cert_file': cannot use '\(directory)/missing.crt': no such file",
            "proxy.conf:4: 'client_tls_key_file': cannot use '\(directory)': it is a directory",
        ])
        // With TLS disabled, paths are kept but not checked.
        let disabled = try ProxyConfiguration.parse("[switchyard]\nclient_tls_cert_file = /nope.crt\n" + minimalConfig)
        #expect(disabled.clientTLS == ClientTLSConfiguration(mode: .disable, certificateFile: "/nope.crt"))
    }

    @Test func userErrors() {
        let md5 = "md5" + String(repeating: "ab", count: 16)
        let text = """
            [switchyard]
            admin_users = root, app
            [servers]
            main = host=db role=primary
            [users]
            app = password=\(md5)
            nopass = server_user=x
            broken = password=SCRAM-SHA-256$4096:abc
            typo = pasword=x
            """
        #expect(configErrorLines(text) == [
            "proxy.conf:2: admin user 'root' is not defined in [users] or auth_file",
            "proxy.conf:6: user 'app' has an md5 hash, which cannot check auth_type = scram-sha-256 (give a plaintext password or a SCRAM-SHA-256 verifier)",
            "proxy.conf:7: user 'nopass' needs password=... (auth_type = scram-sha-256)",
            "proxy.conf:8: user 'broken' has a malformed SCRAM-SHA-256 verifier (expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)",
            "proxy.conf:9: user 'typo': unknown key 'pasword' (did you mean 'password'?)",
        ])
        #expect(configErrorLines("[switchyard]\nauth_type = md5\n[servers]\nm = host=d role=primary\n[users]\nv = password=\(sampleSCRAMVerifier)") == [
            "proxy.conf:6: user 'v' has a SCRAM-SHA-256 verifier, which cannot check auth_type = md5 (give a plaintext password or an md5 hash)",
        ])
    }

    @Test func syntaxErrors() {
        let text = """
            listen_port = 1
            [switchyard
            [switchyard]
            just some words
            = value
            listen_addr = "unterminated
            metrics_addr = "quoted" trailing
            """
        #expect(configErrorLines(text + "\n" + minimalConfig) == [
            "proxy.conf:1: key 'listen_port' appears before any [section]",
            "proxy.conf:2: malformed section header (expected [switchyard], [servers] or [users])",
            "proxy.conf:4: expected 'key = value'",
            "proxy.conf:5: missing key before '='",
            "proxy.conf:6: 'listen_addr': unterminated quoted value, or text after the closing quote",
            "proxy.conf:7: 'metrics_addr': unterminated quoted value, or text after the closing quote",
        ])
    }

    @Test func authFileErrorsNameThatFile() throws {
        let directory = try makeConfigTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let userlist = directory + "/userlist.txt"
        try """
            "ok" "fine-secret"
            "app" "dup-topsecret"
            unquoted topsecret-1
            "ok" "again-topsecret"
            "hash" "md5\(String(repeating: "0", count: 32))"
            "open" "unterminated-topsecret
            """.write(toFile: userlist, atomically: true, encoding: .utf8)
        let issues = configIssues("[switchyard]\nauth_file = userlist.txt\n" + minimalConfig, baseDirectory: directory)
        #expect(issues.map(\.description) == [
            "\(userlist):2: user 'app' is also defined in [users] (proxy.conf:6)",
            "\(userlist):3: expected \"user\" \"password\"",
            "\(userlist):4: user 'ok' is listed twice (first on line 1)",
            "\(userlist):5: user 'hash' has an md5 hash, which cannot check auth_type = scram-sha-256 (give a plaintext password or a SCRAM-SHA-256 verifier)",
            "\(userlist):6: expected \"user\" \"password\"",
        ])
        #expect(!issues.map(\.description).joined().contains("topsecret"))
        #expect(configErrorLines("[switchyard]\nauth_file = nope.txt\n" + minimalConfig, baseDirectory: directory) == [
            "proxy.conf:2: cannot read auth_file '\(directory)/nope.txt': no such file",
        ])
    }

    @Test func unreadableConfigFile() {
        do {
            _ = try ProxyConfiguration.load(path: "/nonexistent/proxy.conf")
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "/nonexistent/proxy.conf: cannot read configuration file: no such file")
        }
    }

    @Test func allErrorsAreCollectedInLineOrder() {
        let text = """
            [users]
            app = password=app-secret
            [switchyard]
            pool_sise = 5
            listen_port = http
            pool_mode = statement
            [servers]
            r = host=a role=replica
            """
        let issues = configIssues(text, fileName: "/etc/switchyard/proxy.conf")
        #expect(issues.map(\.line) == [4, 5, 6, 7])
        #expect(issues.map(\.key) == ["pool_sise", "listen_port", "pool_mode", nil])
        do {
            _ = try ProxyConfiguration.parse(text, fileName: "/etc/switchyard/proxy.conf")
        } catch {
            #expect(error.description.split(separator: "\n").count == 4)
            #expect(error.description.hasPrefix("/etc/switchyard/proxy.conf:4: unknown key 'pool_sise'"))
            #expect(error.localizedDescription == error.description)
        }
    }

    /// Every way a secret can end up near an error: none of them may put it in the message.
    @Test func errorsNeverContainSecrets() throws {
        let text = """
            [switchyard]
            password = topsecret-a
            [servers]
            main = host=db role=primary
            [users]
            a = pasword=topsecret-b
            b = topsecret-c
            topsecret-d
            c = password="topsecret-e
            d = password=md5\(String(repeating: "f", count: 32)) server_password=topsecret-f
            e = password=SCRAM-SHA-256$topsecret-g
            f = password=topsecret-h password=topsecret-i
            g = password=topsecret-j server_password=
            """
        let issues = configIssues(text)
        #expect(issues.count == 9)
        let rendered = ConfigurationError(issues: issues).description
        #expect(!rendered.contains("topsecret"))
        #expect(!rendered.contains(String(repeating: "f", count: 32)))
    }
}
