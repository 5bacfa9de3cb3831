import Foundation

/// Turns INI text into a `ProxyConfiguration`, recording every issue instead of stopping at the first.
/// Readers return a default after reporting a problem, so later checks still run and report theirs.
final class ConfigurationParser {
    /// One `key = value` line; `value` is trimmed and comment-free but still quoted.
    struct Entry { var key: String, value: Substring, line: Int }
    struct Section {
        var line: Int
        var entries: [Entry] = []
        /// The line of each key's first entry: a file of 20,000 users must not take a quadratic scan.
        var firstLine: [String: Int] = [:]
    }

    static let sectionNames = ["switchyard", "servers", "users"]
    static let settingKeys = [
        "listen_addr", "listen_port", "worker_threads", "pool_mode", "pool_size", "max_client_conn",
        "max_message_size", "max_buffered_bytes", "connect_timeout", "query_wait_timeout", "server_idle_timeout",
        "idle_transaction_timeout", "message_stall_timeout", "shutdown_timeout", "pause_timeout", "server_reset_query", "server_reset_mode", "auth_type", "auth_file",
        "admin_users", "log_level", "metrics_addr", "metrics_port", "client_tls_sslmode",
        "client_tls_cert_file", "client_tls_key_file", "server_tls_sslmode", "server_tls_ca_file",
        "default_route", "replica_fallback", "max_replica_lag", "max_replica_lag_seconds", "health_check_interval",
        "health_check_hysteresis", "health_check_user", "health_check_database", "track_extra_parameters",
        "read_consistency", "read_consistency_max_wait",
        "auth_user", "auth_query", "auth_dbname", "auth_cache_ttl",
        "switchover_user", "switchover_drain_timeout", "switchover_max_lag", "state_file",
    ]
    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    /// Caps durations well below `Duration`'s range; nobody needs a timeout over a year.
    static let maxSeconds = 31_536_000.0

    let file: String
    let baseDirectory: String?
    private(set) var issues: [ConfigurationIssue] = []
    var sections: [String: Section] = [:]
    var settings: [String: Entry] = [:]

    init(file: String, baseDirectory: String?) { (self.file, self.baseDirectory) = (file, baseDirectory) }

    func fail(_ line: Int?, _ key: String?, _ message: String, in otherFile: String? = nil) {
        issues.append(ConfigurationIssue(file: otherFile ?? file, line: line, key: key, message: message))
    }

    /// Issues of the main file in line order (file-wide ones first), then those of `auth_file`.
    var sortedIssues: [ConfigurationIssue] {
        let rank = { (i: (offset: Int, element: ConfigurationIssue)) in
            (i.element.file == self.file ? 0 : 1, i.element.line ?? 0, i.offset)
        }
        return issues.enumerated().sorted { rank($0) < rank($1) }.map(\.element)
    }

    // MARK: Lexing

    /// Splits text into known sections, reporting bad syntax, unknown sections, and unknown or duplicate keys.
    /// Section entry names under `[servers]`/`[users]` keep their case: Postgres role names are case-sensitive.
    func lex(_ text: String) {
        var current: String?      // nil before the first header and inside an unknown section
        var skipping = false      // inside an unknown section: its keys were reported with the header
        for (index, raw) in Self.lines(text).enumerated() {
            let line = index + 1
            let content = Self.trim(Self.stripComment(raw))
            if content.isEmpty { continue }
            if content.first == "[" {
                let name = content.last == "]" ? Self.trim(content.dropFirst().dropLast()).lowercased() : ""
                if Self.sectionNames.contains(name) {
                    current = name
                    skipping = false
                    if sections[name] == nil { sections[name] = Section(line: line) }
                } else {
                    let what = name.isEmpty ? "malformed section header" : "unknown section [\(name)]"
                    let hint = Self.closest(name, Self.sectionNames).map { "did you mean [\($0)]?" }
                    fail(line, nil, "\(what) (\(hint ?? "expected [switchyard], [servers] or [users]"))")
                    current = nil
                    skipping = true
                }
                continue
            }
            // The line is not echoed: a malformed [users] line may be a bare password.
            guard let eq = content.firstIndex(of: "=") else { fail(line, nil, "expected 'key = value'"); continue }
            let rawKey = Self.trim(content[..<eq])
            let value = Self.trim(content[content.index(after: eq)...])
            guard !rawKey.isEmpty else { fail(line, nil, "missing key before '='"); continue }
            guard let section = current else {
                if !skipping { fail(line, String(rawKey), "key '\(Self.shown(rawKey))' appears before any [section]") }
                continue
            }
            let key = section == "switchyard" ? rawKey.lowercased() : String(rawKey)
            if section == "switchyard", !Self.settingKeys.contains(key) {
                fail(line, key, "unknown key '\(Self.shown(key))' in [switchyard]" + Self.didYouMean(key, Self.settingKeys))
            } else if let first = sections[section]!.firstLine[key] {
                fail(line, key, "duplicate key '\(Self.shown(key))' in [\(section)] (first set on line \(first))")
            } else {
                sections[section]!.entries.append(Entry(key: key, value: value, line: line))
                sections[section]!.firstLine[key] = line
            }
        }
        settings = Dictionary(uniqueKeysWithValues: (sections["switchyard"]?.entries ?? []).map { ($0.key, $0) })
    }

    // MARK: [switchyard] readers — each key is read once, so each problem is reported once.

    /// The unquoted value and line of a setting, or nil when absent (or badly quoted, which is reported).
    func setting(_ key: String) -> (value: String, line: Int)? {
        guard let entry = settings[key] else { return nil }
        if let value = Self.unquote(entry.value) { return (value, entry.line) }
        fail(entry.line, key, "'\(key)': unterminated quoted value, or text after the closing quote")
        return nil
    }

    func string(_ key: String, default def: String) -> String {
        guard let (value, line) = setting(key) else { return def }
        if value.isEmpty { fail(line, key, "'\(key)' must not be empty") }
        return value.isEmpty ? def : value
    }

    func int(_ key: String, default def: Int, _ range: ClosedRange<Int>) -> Int {
        guard let (value, line) = setting(key) else { return def }
        return checkInt(value, range, what: "'\(key)'", line: line, key: key) ?? def
    }

    /// Seconds, decimals allowed. Converted at millisecond precision so equal configs compare equal.
    func seconds(_ key: String, default def: Double, allowZero: Bool = true) -> Duration {
        var seconds = def
        if let (value, line) = setting(key) {
            let bounds = allowZero ? "between 0 and" : "greater than 0 and at most"
            if let n = Double(value), n.isFinite {
                if n >= 0 && (n > 0 || allowZero) && n <= Self.maxSeconds { seconds = n } else {
                    fail(line, key, "'\(key)' must be \(bounds) \(Int(Self.maxSeconds)) seconds, got \(value)")
                }
            } else { fail(line, key, "'\(key)' must be a number of seconds, got '\(value)'") }
        }
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }

    /// Like `seconds`, but 0 means "never" and becomes nil.
    func optionalSeconds(_ key: String, default def: Double) -> Duration? {
        let duration = seconds(key, default: def)
        return duration == .zero ? nil : duration
    }

    func choice<E: RawRepresentable & CaseIterable>(_ key: String, default def: E) -> E where E.RawValue == String {
        E(rawValue: oneOf(key, default: def.rawValue, E.allCases.map(\.rawValue)))!
    }

    func oneOf(_ key: String, default def: String, _ options: [String]) -> String {
        guard let (value, line) = setting(key) else { return def }
        return checkChoice(value, options, what: "'\(key)'", line: line, key: key) ?? def
    }

    /// A path setting, resolved against the config file's directory when relative; empty means unset.
    func path(_ key: String) -> (path: String, line: Int)? {
        guard let (value, line) = setting(key), !value.isEmpty else { return nil }
        return (resolve(value), line)
    }

    /// A TLS file: reported when `required` and missing, and when `checked` and not a readable file.
    func tlsFile(_ key: String, required: Bool, checked: Bool, modeKey: String, mode: String) -> String? {
        guard let (path, line) = path(key) else {
            if required { fail(settings[modeKey]?.line, key, "'\(key)' is required when \(modeKey) = \(mode)") }
            return nil
        }
        if checked, let problem = Self.fileProblem(path) { fail(line, key, "'\(key)': cannot use '\(path)': \(problem)") }
        return path
    }

    func resolve(_ path: String) -> String {
        guard let base = baseDirectory, !path.hasPrefix("/") else { return path }
        return base.hasSuffix("/") ? base + path : base + "/" + path
    }

    // MARK: Checks shared by settings and key=value lists

    func checkInt(_ value: String, _ range: ClosedRange<Int>, what: String, line: Int, key: String) -> Int? {
        guard let n = Int(value) else { fail(line, key, "\(what) must be an integer, got '\(value)'"); return nil }
        if range.contains(n) { return n }
        let bounds = range.upperBound == .max ? "at least \(range.lowerBound)" : "between \(range.lowerBound) and \(range.upperBound)"
        fail(line, key, "\(what) must be \(bounds), got \(n)")
        return nil
    }

    func checkChoice(_ value: String, _ options: [String], what: String, line: Int, key: String) -> String? {
        let lowered = value.lowercased()
        if options.contains(lowered) { return lowered }
        fail(line, key, "\(what) must be one of \(options.joined(separator: ", ")), got '\(value)'" + Self.didYouMean(lowered, options))
        return nil
    }

    // MARK: Text helpers

    static func lines(_ text: String) -> [Substring] {
        let text = text.hasPrefix("\u{FEFF}") ? String(text.dropFirst()) : text
        return text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
    }

    static func trim(_ s: Substring) -> Substring {
        let head = s.drop(while: \.isWhitespace)
        return head.dropLast(head.reversed().prefix(while: \.isWhitespace).count)
    }

    /// Cuts a `;` or `#` comment that starts the line or follows whitespace, outside double quotes.
    static func stripComment(_ line: Substring) -> Substring {
        var inQuotes = false, escaped = false, afterSpace = true
        for i in line.indices {
            let c = line[i]
            if inQuotes {
                if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { inQuotes = false }
            } else if c == "\"" {
                inQuotes = true
            } else if (c == ";" || c == "#") && afterSpace {
                return line[..<i]
            }
            afterSpace = c.isWhitespace
        }
        return line
    }

    /// Reads `"..."` starting on the opening quote, decoding `\"` and `\\`; nil if unterminated.
    static func readQuoted(_ s: Substring, _ i: inout Substring.Index) -> String? {
        var out = ""
        i = s.index(after: i)
        while i < s.endIndex {
            var c = s[i]
            i = s.index(after: i)
            if c == "\"" { return out }
            if c == "\\", i < s.endIndex, s[i] == "\"" || s[i] == "\\" { (c, i) = (s[i], s.index(after: i)) }
            out.append(c)
        }
        return nil
    }

    /// A whole value: literal unless it starts with `"`, in which case it must be exactly one quoted string.
    static func unquote(_ value: Substring) -> String? {
        guard value.first == "\"" else { return String(value) }
        var i = value.startIndex
        guard let string = readQuoted(value, &i), i == value.endIndex else { return nil }
        return string
    }

    /// Splits `host=db port=5432 password="a b"` into pairs (keys lower-cased); nil on a syntax error.
    /// No spaces around `=`, so `host= port=1` cannot silently make "port=1" the host.
    static func splitPairs(_ s: Substring) -> [(key: String, value: String)]? {
        var pairs: [(key: String, value: String)] = []
        var i = s.startIndex
        func skip(while predicate: (Character) -> Bool) { while i < s.endIndex, predicate(s[i]) { i = s.index(after: i) } }
        skip(while: \.isWhitespace)
        while i < s.endIndex {
            let keyStart = i
            skip { $0 != "=" && !$0.isWhitespace }
            guard i > keyStart, i < s.endIndex, s[i] == "=" else { return nil }
            let key = s[keyStart..<i].lowercased()
            i = s.index(after: i)
            let valueStart = i
            if i < s.endIndex, s[i] == "\"" {
                guard let value = readQuoted(s, &i), i == s.endIndex || s[i].isWhitespace else { return nil }
                pairs.append((key, value))
            } else { skip { !$0.isWhitespace }; pairs.append((key, String(s[valueStart..<i]))) }
            skip(while: \.isWhitespace)
        }
        return pairs
    }

    /// The candidate closest to a misspelt `word`, if within edit distance 3.
    static func closest(_ word: String, _ candidates: [String]) -> String? {
        guard !word.isEmpty else { return nil }
        // The distance is at least the difference in length, so most candidates (all, for a long
        // word: a 200 KB key once took minutes) need no computing.
        let length = word.count
        var best: (candidate: String, distance: Int)?
        for candidate in candidates where abs(candidate.count - length) <= 3 {
            let distance = editDistance(word, candidate)
            if distance <= 3, distance < best?.distance ?? .max { best = (candidate, distance) }
        }
        return best?.candidate
    }

    /// A key as error messages quote it: a runaway one (a pasted blob) is cut, not echoed whole.
    static func shown(_ key: some StringProtocol) -> String {
        key.count <= 64 ? String(key) : key.prefix(64) + "…"
    }

    static func didYouMean(_ word: String, _ candidates: [String]) -> String {
        closest(word, candidates).map { " (did you mean '\($0)'?)" } ?? ""
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let b = Array(b)
        var row = Array(0...b.count)
        for (i, ca) in a.enumerated() {
            var diagonal = row[0]
            row[0] = i + 1
            for (j, cb) in b.enumerated() {
                (diagonal, row[j + 1]) = (row[j + 1], min(row[j + 1] + 1, row[j] + 1, diagonal + (ca == cb ? 0 : 1)))
            }
        }
        return row[b.count]
    }

    /// Why `path` cannot be read as a regular file, or nil if it can.
    static func fileProblem(_ path: String) -> String? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return "no such file" }
        if isDirectory.boolValue { return "it is a directory" }
        return FileManager.default.isReadableFile(atPath: path) ? nil : "not readable"
    }

    /// A UTF-8 text file's contents, or the reason it cannot be read.
    static func readText(_ path: String) -> (text: String?, problem: String) {
        if let problem = fileProblem(path) { return (nil, problem) }
        let text = FileManager.default.contents(atPath: path).flatMap { String(data: $0, encoding: .utf8) }
        return (text, text == nil ? "not readable as UTF-8 text" : "")
    }
}
