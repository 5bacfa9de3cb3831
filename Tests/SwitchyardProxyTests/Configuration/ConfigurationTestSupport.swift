import Foundation
import Testing
@testable import SwitchyardProxy

/// Smallest valid configuration: one primary, one user.
let minimalConfig = """
    [servers]
    main = host=db.internal role=primary
    [users]
    app = password=app-secret
    """

/// The repository's example config, found relative to this file (Tests/SwitchyardProxyTests/Configuration/).
let exampleConfigPath = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("proxy.conf").path

/// Parses `text` expecting failure and returns the issues; records a test failure if it parses.
func configIssues(
    _ text: String, fileName: String = "proxy.conf", baseDirectory: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) -> [ConfigurationIssue] {
    do {
        _ = try ProxyConfiguration.parse(text, fileName: fileName, baseDirectory: baseDirectory)
        Issue.record("expected a ConfigurationError", sourceLocation: sourceLocation)
        return []
    } catch {
        return error.issues
    }
}

/// The rendered error lines for `text`.
func configErrorLines(_ text: String, baseDirectory: String? = nil) -> [String] {
    configIssues(text, baseDirectory: baseDirectory).map(\.description)
}

/// A fresh directory under the system temporary directory; the caller removes it.
func makeConfigTestDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("switchyard-config-\(UUID())").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A syntactically valid SCRAM-SHA-256 verifier (the keys are dummies, which is all parsing needs).
let sampleSCRAMVerifier = "SCRAM-SHA-256$4096:" + Data(repeating: 1, count: 16).base64EncodedString()
    + "$" + Data(repeating: 2, count: 32).base64EncodedString() + ":" + Data(repeating: 3, count: 32).base64EncodedString()
