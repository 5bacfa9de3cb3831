import ArgumentParser
import Foundation
import Logging
import NIOPosix
import PostgresNIO
import SwitchyardProxy

/// Exit codes of the operator subcommands, for scripts.
enum OperatorExit {
    /// The proxy refused or failed the command (PAUSE timed out, unknown server, config rejected).
    static let commandFailed = ExitCode(1)
    /// Bad arguments or an unreadable configuration file.
    static let usage = ExitCode(2)
    /// The proxy could not be reached or refused the login.
    static let unreachable = ExitCode(3)
}

/// How the operator subcommands reach the admin console. Defaults come from the configuration
/// file: its listen address and port, the first of its admin_users, and that user's password
/// when it is stored in plaintext (PGPASSWORD overrides it).
struct ConsoleOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Configuration file to take the address and admin user from.")
    var config: String = "proxy.conf"

    @Option(name: .shortAndLong, help: "Proxy host (default: listen_addr from the configuration).")
    var host: String?

    @Option(name: .shortAndLong, help: "Proxy port (default: listen_port from the configuration).")
    var port: Int?

    @Option(name: .shortAndLong, help: "Admin user (default: the first of admin_users).")
    var user: String?

    @Flag(help: "Print JSON for scripts instead of text.")
    var json = false

    /// Runs `sql` on the console and prints its rows (as a table, or JSON).
    func run(_ sql: String, title: String? = nil) async throws {
        let client = try await connect()
        do {
            let result = try await client.run(sql)
            try? await client.close()
            if json {
                print(Output.json(["ok": true, "command": sql, "rows": result.jsonRows]))
            } else {
                if let title { print(title) }
                print(result.table)
            }
        } catch {
            try? await client.close()
            throw fail(error, command: sql)
        }
    }

    /// Runs several SHOW commands on one connection, keyed by name.
    func show(_ commands: [(key: String, sql: String)]) async throws {
        let client = try await connect()
        var results: [(String, ConsoleResult)] = []
        do {
            for command in commands { results.append((command.key, try await client.run(command.sql))) }
            try? await client.close()
        } catch {
            try? await client.close()
            throw fail(error, command: commands.map(\.sql).joined(separator: "; "))
        }
        if json {
            var object: [String: Any] = ["ok": true]
            for (key, result) in results { object[key] = result.jsonRows }
            print(Output.json(object))
        } else {
            print(results.map { "\($0.0.uppercased())\n\($0.1.table)" }.joined(separator: "\n\n"))
        }
    }

    private func connect() async throws -> ConsoleClient {
        var address = (host: host ?? "127.0.0.1", port: port ?? 6432)
        var admin = user
        var password = ProcessInfo.processInfo.environment["PGPASSWORD"]
        if host == nil || port == nil || admin == nil || password == nil {
            let configuration: ProxyConfiguration
            do {
                configuration = try ProxyConfiguration.load(path: config)
            } catch {
                // Without a readable file every connection setting must come from the command line.
                if host == nil || port == nil || admin == nil {
                    printError("\(error)\n(or give --host, --port and --user, and PGPASSWORD)")
                    throw OperatorExit.usage
                }
                return try await ConsoleClient.connect(host: address.host, port: address.port, user: admin!, password: password, failure: fail)
            }
            let listen = configuration.listenAddress
            if host == nil { address.host = (listen == "0.0.0.0" || listen == "*" || listen == "::") ? "127.0.0.1" : listen }
            if port == nil { address.port = configuration.listenPort }
            if admin == nil { admin = configuration.adminUsers.sorted().first }
            if password == nil, let admin { password = configuration.users[admin]?.clientSecret?.plaintextValue }
        }
        guard let admin else {
            printError("no admin user: set admin_users in \(config) or pass --user")
            throw OperatorExit.usage
        }
        return try await ConsoleClient.connect(host: address.host, port: address.port, user: admin, password: password, failure: fail)
    }

    /// Reports `error` (text or JSON) and returns the exit code that goes with it.
    func fail(_ error: Error, command: String?) -> ExitCode {
        let (code, fields) = ConsoleClient.describe(error)
        if json {
            var object: [String: Any] = ["ok": false, "error": fields["message"] ?? "\(error)"]
            if let command { object["command"] = command }
            for key in ["sqlstate", "detail", "hint"] { if let value = fields[key] { object[key] = value } }
            print(Output.json(object))
        } else {
            printError("switchyard: " + [fields["message"] ?? "\(error)", fields["detail"], fields["hint"]].compactMap { $0 }.joined(separator: "\n"))
        }
        return code
    }
}

/// Rows from the console, with their column names and types.
struct ConsoleResult {
    var columns: [String]
    var rows: [[Any]]

    var jsonRows: [[String: Any]] {
        rows.map { Dictionary(uniqueKeysWithValues: zip(columns, $0)) }
    }

    /// Aligned columns, as psql prints them.
    var table: String {
        guard !rows.isEmpty else { return "(no rows)" }
        let text = rows.map { $0.map { value -> String in
            switch value {
            case is NSNull: return ""
            case let number as Double: return String(format: "%.3f", number)
            default: return "\(value)"
            }
        } }
        let widths = columns.indices.map { index in max(columns[index].count, text.map { $0[index].count }.max() ?? 0) }
        func line(_ cells: [String]) -> String {
            zip(cells, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }
        return ([line(columns), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")] + text.map(line))
            .joined(separator: "\n")
    }
}

/// A postgres-nio connection to the admin console (which speaks the extended protocol too).
struct ConsoleClient {
    let connection: PostgresConnection
    let logger = Logger(label: "switchyard-cli")

    static func connect(host: String, port: Int, user: String, password: String?,
                        failure: (Error, String?) -> ExitCode) async throws -> ConsoleClient {
        let configuration = PostgresConnection.Configuration(
            host: host, port: port, username: user, password: password, database: AdminCommand.databaseName, tls: .disable)
        do {
            let connection = try await PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration, id: 1, logger: Logger(label: "switchyard-cli"))
            return ConsoleClient(connection: connection)
        } catch {
            _ = failure(error, nil)
            throw OperatorExit.unreachable
        }
    }

    func run(_ sql: String) async throws -> ConsoleResult {
        let rows = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        var result = ConsoleResult(columns: [], rows: [])
        for try await row in rows {
            if result.columns.isEmpty { result.columns = row.map(\.columnName) }
            result.rows.append(try row.map { cell -> Any in
                switch cell.dataType {
                case .int8: return try cell.decode(Int64?.self) ?? NSNull()
                case .float8: return try cell.decode(Double?.self) ?? NSNull()
                default: return try cell.decode(String?.self) ?? NSNull()
                }
            })
        }
        return result
    }

    func close() async throws { try await connection.close() }

    /// The exit code and ErrorResponse fields (message, sqlstate, detail, hint) of a failure.
    static func describe(_ error: Error) -> (ExitCode, [String: String]) {
        guard let psql = error as? PSQLError else { return (OperatorExit.unreachable, ["message": "\(error)"]) }
        guard let info = psql.serverInfo else {
            return (OperatorExit.unreachable, ["message": "could not reach the admin console: \(psql.underlying.map { "\($0)" } ?? "\(psql.code)")"])
        }
        var fields: [String: String] = [:]
        fields["message"] = info[.message]
        fields["sqlstate"] = info[.sqlState]
        fields["detail"] = info[.detail]
        fields["hint"] = info[.hint]
        // A refused login (wrong password, not an admin) is not the command failing.
        let loginRefused = ["28P01", "28000", "42501", "53300", "57P03"].contains(info[.sqlState] ?? "")
        return (loginRefused ? OperatorExit.unreachable : OperatorExit.commandFailed, fields)
    }
}

enum Output {
    static func json(_ object: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show servers and pools (SHOW SERVERS and SHOW POOLS on the admin console).",
        discussion: "Exit codes: 0 ok, 1 the console refused the command, 2 bad arguments or configuration, 3 proxy unreachable or login refused.")
    @OptionGroup var console: ConsoleOptions

    func run() async throws {
        try await console.show([("servers", "SHOW SERVERS"), ("pools", "SHOW POOLS")])
    }
}

struct Pause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Let running transactions finish, then hold new ones (all servers, or one).",
        discussion: "Waits up to pause_timeout; on timeout the pause is withdrawn and the exit code is 1.")
    @OptionGroup var console: ConsoleOptions
    @Argument(help: "Pause only this server.") var server: String?

    func run() async throws {
        try await console.run(server.map { "PAUSE \($0)" } ?? "PAUSE")
    }
}

struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Release transactions held by PAUSE.")
    @OptionGroup var console: ConsoleOptions
    @Argument(help: "Resume only this server.") var server: String?

    func run() async throws {
        try await console.run(server.map { "RESUME \($0)" } ?? "RESUME")
    }
}

struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the running proxy re-read its configuration file.",
        discussion: "An invalid file is rejected (exit code 1) and the running configuration stays in force.")
    @OptionGroup var console: ConsoleOptions

    func run() async throws {
        try await console.run("RELOAD")
    }
}

struct SwitchoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchover",
        abstract: "Make a caught-up standby the primary (SWITCHOVER TO on the admin console).",
        discussion: """
            Runs preflight, drain, fence, catch-up, promotion and flip; clients are held, not refused. \
            Exit codes: 0 switched (or the dry run passed), 1 refused or aborted with the old primary still serving, \
            2 bad arguments, 3 proxy unreachable.
            """)
    @OptionGroup var console: ConsoleOptions
    @Argument(help: "The server to promote (a standby or replica of the primary).") var server: String
    @Flag(help: "Run every check and change nothing.") var dryRun = false
    @Option(help: "Seconds the drain (and the catch-up) may take (default: switchover_drain_timeout).") var timeout: Double?
    @Flag(help: "At the drain deadline, terminate the transactions still running instead of aborting.") var force = false

    func run() async throws {
        var sql = "SWITCHOVER TO \"\(server)\""
        if let timeout { sql += " TIMEOUT \(timeout)" }
        if dryRun { sql += " DRY RUN" }
        if force { sql += " FORCE" }
        try await console.run(sql, title: "switchover")
    }
}
