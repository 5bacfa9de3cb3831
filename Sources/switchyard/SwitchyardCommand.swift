import ArgumentParser
import Logging
import ServiceLifecycle
import SwitchyardProxy
import UnixSignals

@main
struct SwitchyardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchyard",
        abstract: "A PostgreSQL wire-protocol proxy: pooling, read routing and zero-downtime switchover.",
        subcommands: [Run.self, CheckConfig.self, BenchmarkClassifier.self],
        defaultSubcommand: Run.self)
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the proxy (the default).")

    @Option(name: .shortAndLong, help: "Path to the configuration file.")
    var config: String = "proxy.conf"

    func run() async throws {
        let configuration: ProxyConfiguration
        do {
            configuration = try ProxyConfiguration.load(path: config)
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "switchyard")
        let server = try ProxyServer(configuration: configuration, logger: logger)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Validate a configuration file and exit (0 valid, 2 invalid).")

    @Argument(help: "Path to the configuration file.")
    var path: String = "proxy.conf"

    func run() throws {
        do {
            let configuration = try ProxyConfiguration.load(path: path)
            print("\(path): OK (\(configuration.servers.count) servers, \(configuration.users.count) users, pool_mode \(configuration.poolMode.rawValue))")
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
    }
}

func printError(_ message: String) {
    var standardError = StandardError()
    print(message, to: &standardError)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        FileHandleWriter.writeToStandardError(string)
    }
}
