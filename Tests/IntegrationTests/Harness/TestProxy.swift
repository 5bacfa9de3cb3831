import Foundation
import Logging
import NIOCore
import SwitchyardProxy

/// A Switchyard proxy running inside the test process, on a free port, in front of the test
/// cluster's primary. Start one with ``withProxy(_:_:)``, which always tears it down.
final class TestProxy: Sendable {
    let server: ProxyServer
    let configuration: ProxyConfiguration
    let port: Int

    private init(server: ProxyServer, configuration: ProxyConfiguration, port: Int) {
        self.server = server
        self.configuration = configuration
        self.port = port
    }

    /// The configuration text for `settings` (keys of `[switchyard]`, e.g. `pool_mode`), in
    /// proxy.conf's format, with the four test users.
    static func configurationText(_ settings: [String: String], primaryPort: Int = TestEnvironment.pgPort) -> String {
        var switchyard = ["listen_addr": "127.0.0.1", "listen_port": "6432", "pool_mode": "transaction", "pool_size": "10",
                          "admin_users": "admin"]
        switchyard.merge(settings) { $1 }
        let users = TestEnvironment.passwords.sorted { $0.key < $1.key }
        return """
            [switchyard]
            \(switchyard.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value)" }.joined(separator: "\n"))

            [servers]
            primary = host=\(TestEnvironment.pgHost) port=\(primaryPort) role=primary

            [users]
            \(users.map { "\($0.key) = password=\($0.value)" }.joined(separator: "\n"))
            """
    }

    static func start(_ settings: [String: String], primaryPort: Int = TestEnvironment.pgPort) async throws -> TestProxy {
        try TestEnvironment.requirePostgres()
        let text = configurationText(settings, primaryPort: primaryPort)
        var configuration = try ProxyConfiguration.parse(text, fileName: "integration-test.conf")
        // The parser insists on a real port (1...65535); 0 lets the kernel pick a free one.
        configuration.listenPort = 0
        let server = try ProxyServer(configuration: configuration, logger: proxyLogger)
        do {
            let address = try await server.start()
            guard let port = address.port else { throw HarnessError("proxy bound to \(address), which has no port") }
            return TestProxy(server: server, configuration: configuration, port: port)
        } catch {
            await server.shutdownEventLoops()
            throw error
        }
    }

    func stop() async {
        await server.drain(timeout: .seconds(1))
        await server.shutdownEventLoops()
    }

    /// The proxy's log: silent unless SWITCHYARD_TEST_LOG names a level (e.g. `debug`).
    static let proxyLogger: Logger = {
        guard let name = TestEnvironment.variables["SWITCHYARD_TEST_LOG"], let level = Logger.Level(rawValue: name) else {
            return Logger(label: "switchyard-it.proxy", factory: { _ in SwiftLogNoOpLogHandler() })
        }
        return Logger(label: "switchyard-it.proxy", factory: { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        })
    }()
}

/// Starts a proxy with `settings`, runs `body`, and always stops the proxy afterwards (drain 1 s,
/// then its event loops), even when `body` throws.
/// `primaryPort` points the proxy at another port than the cluster's primary (a dead one, say).
func withProxy<T>(
    _ settings: [String: String] = [:], primaryPort: Int = TestEnvironment.pgPort, _ body: (TestProxy) async throws -> T
) async throws -> T {
    let proxy = try await TestProxy.start(settings, primaryPort: primaryPort)
    do {
        let result = try await body(proxy)
        await proxy.stop()
        return result
    } catch {
        await proxy.stop()
        throw error
    }
}

/// A table name no other test run uses.
func uniqueName(_ prefix: String) -> String {
    "\(prefix)_\(UUID().uuidString.prefix(8).lowercased())"
}
