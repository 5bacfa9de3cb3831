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
        version: "\(SwitchyardVersion.current) (commit \(switchyardBuildCommit))",
        subcommands: [Run.self, Status.self, Pause.self, Resume.self, Reload.self, SwitchoverCommand.self, CheckConfig.self, BenchmarkClassifier.self],
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
        // Every logger reads the level from one switch, so RELOAD can change log_level.
        let levelSwitch = LogLevelSwitch(Logger.Level(rawValue: configuration.logLevel) ?? .info)
        LoggingSystem.bootstrap { label in
            SwitchedLevelLogHandler(StreamLogHandler.standardError(label: label), levelSwitch: levelSwitch)
        }
        let logger = Logger(label: "switchyard")
        let server = try ProxyServer(configuration: configuration, logLevel: levelSwitch, logger: logger)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: server),
                    // It ends first at shutdown (services stop in reverse order); that must not cancel the drain.
                    .init(service: ReloadOnHangup(server: server, logger: logger), successTerminationBehavior: .ignore),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}

/// SIGHUP re-reads the configuration, as RELOAD does; a rejected file is logged by `reload()`
/// and the running configuration stays.
struct ReloadOnHangup: Service {
    let server: ProxyServer
    let logger: Logger

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            logger.notice("SIGHUP received: reloading the configuration")
            do {
                _ = try await server.reload()
            } catch {
                // Already logged with the file's problems; nothing else to do until the file is fixed.
            }
        }
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Validate a configuration file and exit (0 valid, 2 invalid).")

    @Argument(help: "Path to the configuration file.")
    var path: String = "proxy.conf"

    @Flag(help: "Print JSON for scripts instead of text.")
    var json = false

    func run() throws {
        do {
            let configuration = try ProxyConfiguration.load(path: path)
            if json {
                print(Output.json(["ok": true, "file": path, "servers": configuration.servers.count,
                                   "users": configuration.users.count, "pool_mode": configuration.poolMode.rawValue]))
            } else {
                print("\(path): OK (\(configuration.servers.count) servers, \(configuration.users.count) users, pool_mode \(configuration.poolMode.rawValue))")
            }
        } catch {
            if json {
                let issues = error.issues.map { issue -> [String: Any] in
                    var entry: [String: Any] = ["file": issue.file, "message": issue.message]
                    if let line = issue.line { entry["line"] = line }
                    if let key = issue.key { entry["key"] = key }
                    return entry
                }
                print(Output.json(["ok": false, "file": path, "errors": issues]))
            } else {
                printError("\(error)")
            }
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
