import Foundation

/// One problem in a configuration file, located so an operator can jump straight to it.
public struct ConfigurationIssue: Sendable, Equatable, CustomStringConvertible {
    /// The file as it was named to the parser (the config file, or the `auth_file`).
    public var file: String
    /// 1-based; nil for problems with the file as a whole (unreadable, no servers at all).
    public var line: Int?
    /// The key (or server / user name) the problem is about, if any.
    public var key: String?
    /// Human-readable; never contains a password or other secret.
    public var message: String

    public init(file: String, line: Int?, key: String?, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    /// `file:line: message`, the format editors and CI logs recognise.
    public var description: String {
        if let line { "\(file):\(line): \(message)" } else { "\(file): \(message)" }
    }
}

/// Every problem found while loading a configuration. Collected rather than thrown one at a time so
/// a single edit fixes them all.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible, LocalizedError {
    public var issues: [ConfigurationIssue]

    public init(issues: [ConfigurationIssue]) { self.issues = issues }

    /// One issue per line.
    public var description: String { issues.map(\.description).joined(separator: "\n") }
    public var errorDescription: String? { description }
}
