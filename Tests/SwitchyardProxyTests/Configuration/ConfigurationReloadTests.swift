import Foundation
import Testing
@testable import SwitchyardProxy

/// RELOAD: which settings a new file may change while running (`ProxyConfiguration.reloaded(from:)`),
/// and what SHOW CONFIG lists (`displayedSettings`).
@Suite("Configuration reload")
struct ConfigurationReloadTests {
    static let clientPassword = "Cl1ent-Pa55word-xyzzy"
    static let serverPassword = "S3rver-Pa55word-plugh"
    static let adminPassword = "Adm1n-Pa55word-frotz"

    static let baseConfig = """
        [switchyard]
        listen_addr = 127.0.0.1
        listen_port = 6432
        worker_threads = 2
        pool_mode = transaction
        pool_size = 20
        log_level = info
        admin_users = admin
        [servers]
        main = host=db.internal role=primary
        [users]
        app = password=\(clientPassword) server_user=app_pg server_password=\(serverPassword)
        admin = password=\(adminPassword)
        """

    /// The same file with every restart-only key and several reloadable ones changed.
    static let changedConfig = """
        [switchyard]
        listen_addr = 0.0.0.0
        listen_port = 7000
        worker_threads = 4
        pool_mode = session
        pool_size = 5
        max_client_conn = 50
        pause_timeout = 10
        query_wait_timeout = 3
        log_level = debug
        metrics_addr = 0.0.0.0
        metrics_port = 9200
        server_tls_sslmode = prefer
        track_extra_parameters = search_path
        admin_users = admin
        health_check_user = app
        default_route = primary
        [servers]
        main = host=db2.internal port=5433 role=primary
        r1 = host=replica.internal role=replica weight=2
        [users]
        app = password=\(clientPassword) server_user=app_pg server_password=\(serverPassword)
        admin = password=\(adminPassword)
        reporting = password=report-secret
        """

    @Test func restartOnlyKeysKeepTheOldValueAndAreReported() throws {
        let old = try ProxyConfiguration.parse(Self.baseConfig)
        let new = try ProxyConfiguration.parse(Self.changedConfig)
        let (merged, ignored) = old.reloaded(from: new)

        #expect(ignored == ["listen_addr", "listen_port", "worker_threads", "pool_mode", "server_tls_*",
                            "metrics_addr", "metrics_port", "track_extra_parameters"])
        #expect(merged.listenAddress == "127.0.0.1")
        #expect(merged.listenPort == 6432)
        #expect(merged.workerThreads == 2)
        #expect(merged.poolMode == .transaction)
        #expect(merged.logLevel == "debug", "log_level reloads")
        #expect(merged.metricsAddress == "127.0.0.1")
        #expect(merged.metricsPort == nil)
        #expect(merged.serverTLS == ServerTLSConfiguration(mode: .disable))
        #expect(merged.clientTLS == ClientTLSConfiguration())
        #expect(merged.trackedParameters == [])
    }

    @Test func reloadableKeysTakeTheNewValue() throws {
        let old = try ProxyConfiguration.parse(Self.baseConfig)
        let new = try ProxyConfiguration.parse(Self.changedConfig)
        let merged = old.reloaded(from: new).configuration

        #expect(merged.poolSize == 5)
        #expect(merged.maxClientConnections == 50)
        #expect(merged.pauseTimeout == .seconds(10))
        #expect(merged.queryWaitTimeout == .seconds(3))
        #expect(merged.servers == [
            ServerDefinition(name: "main", host: "db2.internal", port: 5433, role: .primary),
            ServerDefinition(name: "r1", host: "replica.internal", port: 5432, role: .replica, weight: 2),
        ])
        #expect(Set(merged.users.keys) == ["app", "admin", "reporting"])
        #expect(merged.users == new.users)
        #expect(merged.routing == new.routing)
        #expect(merged.routing.defaultRoute == .primary)
        #expect(merged.routing.healthCheckUser == "app")
    }

    @Test func mergedConfigurationIsTheNewOneWithTheRestartOnlyKeysRestored() throws {
        let old = try ProxyConfiguration.parse(Self.baseConfig)
        let new = try ProxyConfiguration.parse(Self.changedConfig)
        var expected = new
        expected.listenAddress = old.listenAddress
        expected.listenPort = old.listenPort
        expected.workerThreads = old.workerThreads
        expected.poolMode = old.poolMode
        expected.clientTLS = old.clientTLS
        expected.serverTLS = old.serverTLS
        expected.metricsAddress = old.metricsAddress
        expected.metricsPort = old.metricsPort
        expected.trackedParameters = old.trackedParameters
        #expect(old.reloaded(from: new).configuration == expected)
    }

    @Test func reloadingAnUnchangedFileReportsNothing() throws {
        let old = try ProxyConfiguration.parse(Self.baseConfig)
        let same = try ProxyConfiguration.parse(Self.baseConfig)
        let (merged, ignored) = old.reloaded(from: same)
        #expect(ignored == [])
        #expect(merged == old)
    }

    @Test func onlyReloadableChangesReportNothing() throws {
        let old = try ProxyConfiguration.parse(Self.baseConfig)
        let new = try ProxyConfiguration.parse(Self.baseConfig.replacingOccurrences(of: "pool_size = 20", with: "pool_size = 7"))
        let (merged, ignored) = old.reloaded(from: new)
        #expect(ignored == [])
        #expect(merged.poolSize == 7)
    }

    @Test func singleRestartOnlyChangeIsReportedAlone() throws {
        let old = try ProxyConfiguration.parse(Self.baseConfig)
        let new = try ProxyConfiguration.parse(Self.baseConfig.replacingOccurrences(of: "listen_port = 6432", with: "listen_port = 6500"))
        let (merged, ignored) = old.reloaded(from: new)
        #expect(ignored == ["listen_port"])
        #expect(merged.listenPort == 6432)
        #expect(merged == old)
    }

    // MARK: SHOW CONFIG

    @Test func displayedSettingsNeverShowAPassword() throws {
        for text in [Self.baseConfig, Self.changedConfig] {
            let config = try ProxyConfiguration.parse(text)
            let settings = config.displayedSettings
            #expect(!settings.isEmpty)
            for (key, value, _) in settings {
                for secret in [Self.clientPassword, Self.serverPassword, Self.adminPassword, "report-secret"] {
                    #expect(!value.contains(secret), "\(key) shows a password")
                }
                #expect(!key.contains("password"))
            }
        }
    }

    @Test func displayedSettingsNeverShowAHashOrVerifier() throws {
        let md5 = "md5" + String(repeating: "ab", count: 16)
        let config = try ProxyConfiguration.parse("""
            [switchyard]
            auth_type = md5
            [servers]
            main = host=db role=primary
            [users]
            hashed = password=\(md5)
            """)
        #expect(config.displayedSettings.allSatisfy { !$0.value.contains(md5) })
        let scram = try ProxyConfiguration.parse("""
            [servers]
            main = host=db role=primary
            [users]
            verified = password=\(sampleSCRAMVerifier)
            """)
        #expect(scram.displayedSettings.allSatisfy { !$0.value.contains("SCRAM-SHA-256") })
    }

    @Test func displayedSettingsValues() throws {
        let config = try ProxyConfiguration.parse(Self.changedConfig)
        let settings = config.displayedSettings
        let keys = settings.map(\.key)
        #expect(Set(keys).count == keys.count, "each key once")
        let values = Dictionary(uniqueKeysWithValues: settings.map { ($0.key, $0.value) })
        #expect(values["listen_addr"] == "0.0.0.0")
        #expect(values["listen_port"] == "7000")
        #expect(values["worker_threads"] == "4")
        #expect(values["pool_mode"] == "session")
        #expect(values["pool_size"] == "5")
        #expect(values["max_client_conn"] == "50")
        #expect(values["pause_timeout"] == "10.0")
        #expect(values["query_wait_timeout"] == "3.0")
        #expect(values["idle_transaction_timeout"] == "0")
        #expect(values["log_level"] == "debug")
        #expect(values["metrics_port"] == "9200")
        #expect(values["server_tls_sslmode"] == "prefer")
        #expect(values["client_tls_sslmode"] == "disable")
        #expect(values["track_extra_parameters"] == "search_path")
        #expect(values["default_route"] == "primary")
        #expect(values["health_check_user"] == "app")
        #expect(values["admin_users"] == "admin")
        #expect(values["servers"] == "main=db2.internal:5433/primary r1=replica.internal:5432/replica")
        #expect(values["users"] == "admin,app,reporting")
        #expect(values["server_reset_query"] == "DISCARD ALL")
        #expect(values["config_file"] == "")
    }

    @Test func displayedSettingsDefaults() throws {
        let values = Dictionary(uniqueKeysWithValues: try ProxyConfiguration.parse(minimalConfig).displayedSettings.map { ($0.key, $0.value) })
        #expect(values["pause_timeout"] == "30.0")
        #expect(values["metrics_port"] == "0")
        #expect(values["pool_size"] == "20")
        #expect(values["users"] == "app")
    }

    @Test func displayedSettingsSayWhichKeysReload() throws {
        let config = try ProxyConfiguration.parse(Self.baseConfig)
        let reloadable = Dictionary(uniqueKeysWithValues: config.displayedSettings.map { ($0.key, $0.reloadable) })
        for key in ["listen_addr", "listen_port", "worker_threads", "pool_mode", "metrics_addr", "metrics_port",
                    "client_tls_sslmode", "server_tls_sslmode", "track_extra_parameters", "config_file"] {
            #expect(reloadable[key] == false, "\(key) needs a restart")
        }
        for key in ["pool_size", "max_client_conn", "pause_timeout", "query_wait_timeout", "servers", "users", "admin_users", "log_level",
                    "default_route", "max_replica_lag", "health_check_interval"] {
            #expect(reloadable[key] == true, "\(key) reloads")
        }
    }

    /// What SHOW CONFIG calls restart-only must be what `reloaded(from:)` keeps.
    @Test func displayedRestartOnlyKeysMatchTheRestartOnlyList() throws {
        let config = try ProxyConfiguration.parse(Self.baseConfig)
        for setting in config.displayedSettings where setting.key != "config_file" {
            #expect(setting.reloadable == !ProxyConfiguration.restartOnlyKeys.contains(setting.key), "\(setting.key)")
        }
    }

    // MARK: pause_timeout

    @Test func pauseTimeoutDefaultsToThirtySeconds() throws {
        let config = try ProxyConfiguration.parse(minimalConfig)
        #expect(config.pauseTimeout == .seconds(30))
    }

    @Test func pauseTimeoutParsesFractionalSeconds() throws {
        let config = try ProxyConfiguration.parse("[switchyard]\npause_timeout = 2.5\n" + minimalConfig)
        #expect(config.pauseTimeout == .milliseconds(2500))
    }

    @Test(arguments: ["0", "-1", "soon"])
    func pauseTimeoutRejectsNonPositiveValues(value: String) {
        let issues = configIssues("[switchyard]\npause_timeout = \(value)\n" + minimalConfig)
        #expect(issues.count == 1)
        #expect(issues.first?.key == "pause_timeout")
        #expect(issues.first?.line == 2)
    }

    @Test func pauseTimeoutZeroMessage() {
        let lines = configErrorLines("[switchyard]\npause_timeout = 0\n" + minimalConfig)
        #expect(lines.count == 1)
        #expect(lines.first?.hasPrefix("proxy.conf:2: 'pause_timeout' must be greater than 0") == true)
    }
}
