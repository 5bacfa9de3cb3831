import SwitchyardProxy

/// The configuration parser reads what an operator typed: a typo must become a clear error, never a
/// crash, at start-up or on RELOAD (where a crash would take every client down).
enum ConfigurationTarget {
    /// Relative paths resolve here, where nothing exists.
    static let baseDirectory = "/nonexistent/switchyard-fuzz"

    static func run(_ input: [UInt8]) -> String? {
        let text = String(decoding: input, as: UTF8.self)
        // Validation opens the files a configuration names (auth_file, TLS files): keep the fuzzer away
        // from device files, which could block or never end.
        guard !["/dev", "/proc", "/sys", ".."].contains(where: text.contains) else { return nil }
        do {
            let configuration = try ProxyConfiguration.parse(text, fileName: "fuzz.conf", baseDirectory: baseDirectory)
            // What parsed once parses again to the same value: nothing depends on hidden state.
            let again = try ProxyConfiguration.parse(text, fileName: "fuzz.conf", baseDirectory: baseDirectory)
            return configuration == again ? nil : "the same text parsed to two configurations"
        } catch {
            return error.issues.isEmpty ? "a rejected configuration with no issue to report" : nil
        }
    }
}
