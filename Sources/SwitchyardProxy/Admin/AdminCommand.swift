import PostgresWire

/// One admin console command, parsed from the text an operator typed. Case-insensitive, `;` optional.
public enum AdminCommand: Sendable, Equatable {
    case showHelp, showServers, showPools, showClients, showStats, showConfig, showVersion
    /// Hold new transactions (to one server, or all) once the running ones finish.
    case pause(server: String?)
    case resume(server: String?)
    case reload
    /// Keep new traffic away from a replica; its running transactions finish.
    case disable(server: String)
    case enable(server: String)
    /// Close every connection to a server now.
    case kill(server: String)
    /// Move the primary role to a proven caught-up standby.
    case switchover(SwitchoverOptions)
    /// The switchovers attempted since start.
    case showSwitchover

    /// `SWITCHOVER TO <server> [TIMEOUT <seconds>] [DRY RUN] [FORCE]`.
    public struct SwitchoverOptions: Sendable, Equatable {
        public var target: String
        /// Bounds the drain (and the catch-up); nil uses `switchover_drain_timeout`.
        public var timeout: Duration?
        public var dryRun = false
        public var force = false

        public init(target: String, timeout: Duration? = nil, dryRun: Bool = false, force: Bool = false) {
            (self.target, self.timeout, self.dryRun, self.force) = (target, timeout, dryRun, force)
        }
    }

    /// The console's name for itself, as a database.
    public static let databaseName = "switchyard"

    /// Every command with a one-line description, for SHOW HELP and the 42601 error.
    public static let help: [(command: String, description: String)] = [
        ("SHOW HELP", "this list"),
        ("SHOW SERVERS", "each server: role, state, lag, connections"),
        ("SHOW POOLS", "each user/database/server pool: clients and server connections by state, longest wait"),
        ("SHOW CLIENTS", "each client connection"),
        ("SHOW STATS", "queries, transactions, bytes and times per server"),
        ("SHOW CONFIG", "the configuration in force"),
        ("SHOW VERSION", "the Switchyard version"),
        ("SHOW SWITCHOVER", "the switchovers attempted since start, with their outcome and timings"),
        ("PAUSE [server]", "let running transactions finish, then hold new ones"),
        ("RESUME [server]", "release held transactions"),
        ("RELOAD", "re-read the configuration file"),
        ("DISABLE <server>", "send no new traffic to a replica"),
        ("ENABLE <server>", "undo DISABLE"),
        ("KILL <server>", "close every connection to a server now"),
        ("SWITCHOVER TO <server> [TIMEOUT <s>] [DRY RUN] [FORCE]", "make a caught-up standby the primary, proven and without errors"),
    ]

    /// Parses one command; the error is the ErrorResponse to send.
    public static func parse(_ text: String) throws(ErrorFields) -> AdminCommand {
        // `isWhitespace` also covers "\r\n", which Swift treats as one Character.
        var words = text.split(whereSeparator: \.isWhitespace).map(String.init)
        // A trailing `;`, alone or stuck to the last word.
        if let last = words.last, last.hasSuffix(";") {
            words[words.count - 1] = String(last.dropLast())
            if words[words.count - 1].isEmpty { words.removeLast() }
        }
        let verb = words.first?.uppercased() ?? ""
        let argument = words.count > 1 ? words[1] : nil
        func noArgument(_ command: AdminCommand) throws(ErrorFields) -> AdminCommand {
            guard words.count == 1 else { throw syntaxError(text, "\(verb) takes no argument") }
            return command
        }
        func optionalServer() throws(ErrorFields) -> String? {
            guard words.count <= 2 else { throw syntaxError(text, "\(verb) takes at most one server name") }
            return argument.map(unquote)
        }
        func server() throws(ErrorFields) -> String {
            guard words.count == 2, let argument else { throw syntaxError(text, "\(verb) needs exactly one server name") }
            return unquote(argument)
        }
        switch verb {
        case "SHOW":
            guard words.count == 2, let what = argument?.uppercased() else { throw syntaxError(text, "SHOW needs one of: HELP, SERVERS, POOLS, CLIENTS, STATS, CONFIG, VERSION, SWITCHOVER") }
            switch what {
            case "HELP": return .showHelp
            case "SERVERS": return .showServers
            case "POOLS": return .showPools
            case "CLIENTS": return .showClients
            case "STATS": return .showStats
            case "CONFIG": return .showConfig
            case "VERSION": return .showVersion
            case "SWITCHOVER": return .showSwitchover
            default: throw syntaxError(text, "unknown SHOW target \"\(argument!)\"")
            }
        case "PAUSE": return .pause(server: try optionalServer())
        case "RESUME": return .resume(server: try optionalServer())
        case "RELOAD": return try noArgument(.reload)
        case "DISABLE": return .disable(server: try server())
        case "ENABLE": return .enable(server: try server())
        case "KILL": return .kill(server: try server())
        case "SWITCHOVER": return .switchover(try switchoverOptions(Array(words.dropFirst()), text))
        default: throw syntaxError(text, verb.isEmpty ? "empty command" : "unknown command \"\(words[0])\"")
        }
    }

    /// The columns of the command's result. Actions answer with rows of one `result` column saying
    /// what happened, which psql prints and drivers (and `switchyard status`) can read.
    public var columns: [(name: String, type: ColumnType)] {
        switch self {
        case .showHelp: [("command", .text), ("description", .text)]
        case .showServers:
            [("name", .text), ("role", .text), ("host", .text), ("port", .int8), ("state", .text), ("lag_bytes", .int8),
             ("lag_seconds", .float8), ("active", .int8), ("idle", .int8), ("weight", .int8), ("last_error", .text),
             ("replay_lsn", .text)]
        case .showPools:
            [("database", .text), ("user", .text), ("server", .text), ("cl_active", .int8), ("cl_waiting", .int8),
             ("cl_paused", .int8), ("sv_active", .int8), ("sv_idle", .int8), ("sv_login", .int8), ("maxwait_ms", .float8),
             ("pool_size", .int8)]
        case .showClients:
            [("id", .int8), ("user", .text), ("database", .text), ("address", .text), ("state", .text), ("server", .text),
             ("application_name", .text), ("connected_seconds", .float8), ("read_consistency", .text), ("last_write_lsn", .text)]
        case .showStats:
            [("server", .text), ("role", .text), ("queries", .int8), ("transactions", .int8), ("bytes_received", .int8),
             ("bytes_sent", .int8), ("avg_query_ms", .float8), ("p99_query_ms", .float8), ("avg_transaction_ms", .float8),
             ("waits", .int8), ("avg_wait_ms", .float8)]
        case .showConfig: [("key", .text), ("value", .text), ("reloadable", .text)]
        case .showVersion: [("version", .text)]
        case .switchover, .showSwitchover: SwitchoverReport.columns
        case .pause, .resume, .reload, .disable, .enable, .kill: [("result", .text)]
        }
    }

    /// The CommandComplete tag.
    public var tag: String {
        switch self {
        case .showHelp, .showServers, .showPools, .showClients, .showStats, .showConfig, .showVersion, .showSwitchover: "SHOW"
        case .pause: "PAUSE"
        case .resume: "RESUME"
        case .reload: "RELOAD"
        case .disable: "DISABLE"
        case .enable: "ENABLE"
        case .kill: "KILL"
        case .switchover: "SWITCHOVER"
        }
    }

    /// Whether the command changes anything (such commands are logged at notice level).
    public var isAction: Bool { tag != "SHOW" }

    private static func switchoverOptions(_ words: [String], _ text: String) throws(ErrorFields) -> SwitchoverOptions {
        let usage = "SWITCHOVER TO <server> [TIMEOUT <seconds>] [DRY RUN] [FORCE]"
        guard words.count >= 2, words[0].uppercased() == "TO" else { throw syntaxError(text, "expected \(usage)") }
        var options = SwitchoverOptions(target: unquote(words[1]))
        var rest = words.dropFirst(2)
        while let word = rest.popFirst()?.uppercased() {
            switch word {
            case "TIMEOUT":
                guard options.timeout == nil, let value = rest.popFirst(), let seconds = Double(value), seconds > 0, seconds <= 3600 else {
                    throw syntaxError(text, "TIMEOUT takes a number of seconds between 0 and 3600, once")
                }
                options.timeout = .milliseconds(Int64((seconds * 1000).rounded()))
            case "DRY":
                guard !options.dryRun, rest.popFirst()?.uppercased() == "RUN" else { throw syntaxError(text, "expected DRY RUN, once") }
                options.dryRun = true
            case "FORCE":
                guard !options.force else { throw syntaxError(text, "FORCE is given twice") }
                options.force = true
            default:
                throw syntaxError(text, "unexpected \"\(word)\"; expected \(usage)")
            }
        }
        return options
    }

    private static func unquote(_ name: String) -> String {
        guard name.count >= 2, name.first == "\"", name.last == "\"" else { return name }
        return String(name.dropFirst().dropLast())
    }

    private static func syntaxError(_ text: String, _ problem: String) -> ErrorFields {
        ErrorFields(severity: .error, code: SQLState.syntaxError, message: "\(problem) in admin command",
                    detail: "Commands: " + help.map(\.command).joined(separator: ", ") + ".",
                    hint: "SHOW HELP lists the commands.")
    }
}

/// What an admin command produced: rows in the command's ``AdminCommand/columns``.
public struct AdminResult: Sendable, Equatable {
    public var rows: [[ColumnValue]]

    public init(rows: [[ColumnValue]]) { self.rows = rows }

    /// An action's answer: one `result` row per line.
    public init(messages: [String]) { rows = messages.map { [.text($0)] } }
}
