import Foundation

/// Session parameters that follow a client from server connection to server connection.
///
/// The client's view of a parameter is what it asked for at start-up and, after that, whatever
/// ParameterStatus it was last sent. Before a pooled server runs a client's work, the values that
/// differ are set on it with one `set_config` query whose answer the client never sees. A pure value.
public struct ParameterSync: Sendable, Equatable {
    /// Parameters followed by default; the names are matched case-insensitively, as Postgres does.
    public static let defaultNames: [String] = [
        "application_name", "client_encoding", "datestyle", "default_transaction_read_only", "intervalstyle",
        "search_path", "standard_conforming_strings", "timezone",
    ]

    public let names: Set<String>

    public init(extraNames: [String] = []) {
        names = Set((Self.defaultNames + extraNames).map { $0.lowercased() })
    }

    public func isTracked(_ name: String) -> Bool { names.contains(name.lowercased()) }

    /// The session parameters a StartupMessage asks for, keyed by lower-cased name: every GUC given
    /// directly or through `options` (`-c name=value`, `--name=value`), as Postgres would apply them.
    public func startupValues(_ parameters: [(String, String)]) -> [String: String] {
        var values: [String: String] = [:]
        for (name, value) in parameters {
            switch name.lowercased() {
            case "user", "database", "replication":
                continue
            case "options":
                for (option, optionValue) in Self.parseOptions(value) { values[option.lowercased()] = Self.normalized(option, optionValue) }
            default:
                values[name.lowercased()] = Self.normalized(name, value)
            }
        }
        return values
    }

    /// Postgres parses list settings given at start-up and shows them as `a, b`; set_config keeps
    /// strings as given, so spell them the way the client would have seen them.
    static func normalized(_ name: String, _ value: String) -> String {
        guard name.lowercased() == "search_path", !value.contains("\"") else { return value }
        return value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", ")
    }

    /// The `name=value` settings in a libpq `options` string; a backslash escapes the next character.
    static func parseOptions(_ options: String) -> [(String, String)] {
        var tokens: [String] = [], current = "", escaped = false
        for character in options {
            if escaped { current.append(character); escaped = false }
            else if character == "\\" { escaped = true }
            else if character.isWhitespace { if !current.isEmpty { tokens.append(current); current = "" } }
            else { current.append(character) }
        }
        if !current.isEmpty { tokens.append(current) }
        var settings: [(String, String)] = []
        var index = 0
        while index < tokens.count {
            var setting: Substring?
            if tokens[index] == "-c", index + 1 < tokens.count {
                index += 1
                setting = tokens[index][...]
            } else if tokens[index].hasPrefix("-c") {
                setting = tokens[index].dropFirst(2)
            } else if tokens[index].hasPrefix("--") {
                setting = tokens[index].dropFirst(2)
            }
            if let setting, let equals = setting.firstIndex(of: "=") {
                // Postgres accepts dashes for underscores in option names.
                let name = setting[..<equals].replacingOccurrences(of: "-", with: "_")
                settings.append((name, String(setting[setting.index(after: equals)...])))
            }
            index += 1
        }
        return settings
    }

    /// The query that gives `server` the client's values, or nil when they already agree.
    public func synchronization(client: [String: String], server: [String: String]) -> String? {
        // Checked once per transaction: the usual answer, "nothing to do", allocates nothing.
        guard client.contains(where: { server[$0.key] != $0.value }) else { return nil }
        let changes = client.filter { server[$0.key] != $0.value }.sorted { $0.key < $1.key }
        guard !changes.isEmpty else { return nil }
        let calls = changes.map { "pg_catalog.set_config(\(Self.literal($0.key)), \(Self.literal($0.value)), false)" }
        return "SELECT " + calls.joined(separator: ", ")
    }

    /// An escape-string literal, read the same whatever the server's standard_conforming_strings.
    static func literal(_ value: String) -> String {
        "E'" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "''") + "'"
    }
}
