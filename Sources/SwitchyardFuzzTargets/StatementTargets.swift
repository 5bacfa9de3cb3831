import NIOCore
import SwitchyardProxy

/// The classifier decides which server runs a statement and what it does to the session. Two safety
/// properties: a statement that writes never goes to a replica, whatever comes before it; and the
/// relay's cheap first-word check never skips a statement with a session effect (it would miss a
/// LISTEN or a CREATE TEMP, and hand a pinned session's server to someone else).
enum StatementTargets {
    static let classifier = StatementClassifier()
    /// A write the classifier must always send to the primary, appended behind the fuzzer's text.
    static let write: [UInt8] = Array("; insert into fuzz_target values (1)".utf8)

    static func classifier(_ input: [UInt8]) -> String? {
        let raw = input.withUnsafeBytes { classifier.classify($0) }
        if let text = String(validating: input, as: UTF8.self), classifier.classify(text) != raw {
            return "the String and the byte entry points disagree: \(classifier.classify(text)) vs \(raw)"
        }
        if raw.sessionEffect != nil || raw.pinsServerConnection, !SessionEffect.mayBeginStatement(ByteBuffer(bytes: input)) {
            return "the first-word check skips \(String(decoding: input, as: UTF8.self).debugDescription), which has a session effect"
        }
        // Behind text that cannot open a string, a quoted name, a comment or a dollar quote, and with
        // its parentheses balanced, a second statement starts for certain: if it writes, the whole goes
        // to the primary.
        guard !input.contains(where: { openers.contains($0) }), parenthesesBalance(input) else { return nil }
        let withWrite = (input + write).withUnsafeBytes { classifier.classify($0) }
        if withWrite.route != .primary {
            return "\(String(decoding: input, as: UTF8.self).debugDescription) followed by an INSERT routes to \(withWrite.route)"
        }
        return nil
    }

    /// Bytes that may start a string, quoted identifier, comment, dollar quote or escape; and NUL,
    /// which ends a statement's text on the wire.
    private static let openers = Set("'\"$-/\\".utf8).union([0])

    private static func parenthesesBalance(_ input: [UInt8]) -> Bool {
        var depth = 0
        for byte in input {
            if byte == UInt8(ascii: "(") { depth += 1 }
            if byte == UInt8(ascii: ")") { depth -= 1; if depth < 0 { return false } }
        }
        return depth == 0
    }
}
