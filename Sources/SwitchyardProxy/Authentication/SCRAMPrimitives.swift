import Crypto
import CryptoExtras
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The RFC 5802 / RFC 7677 building blocks shared by both sides of a SCRAM-SHA-256 exchange.
enum SCRAMPrimitives {
    /// Postgres caps iterations at INT_MAX; it also keeps PBKDF2's UInt32 round count from trapping.
    static let maxIterations = Int(Int32.max)

    /// Hi(password, salt, i). Callers validate `iterations`; PBKDF2 can then only fail inside BoringSSL
    /// (allocation failure), which we treat like any other out-of-memory condition.
    static func saltedPassword(_ password: String, salt: [UInt8], iterations: Int) -> [UInt8] {
        precondition((1...maxIterations).contains(iterations), "SCRAM iterations out of range")
        let key = try! KDF.Insecure.PBKDF2.deriveKey(
            from: Array(password.utf8), salt: salt, using: .sha256,
            outputByteCount: 32, unsafeUncheckedRounds: iterations)
        return key.withUnsafeBytes { Array($0) }
    }

    static func hmac(_ key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
    }

    static func sha256(_ bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: bytes)) }

    static func xor(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] { zip(a, b).map { $0 ^ $1 } }

    /// No early exit, so timing doesn't reveal how many leading bytes of a proof or hash were right.
    static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    static func randomBytes(_ count: Int) -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
    }

    static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    static func decodeBase64(_ text: some Collection<UInt8>) -> [UInt8]? {
        Data(base64Encoded: Data(text)).map { Array($0) }
    }

    /// Iteration counts are plain decimal (no sign, no spaces) within Postgres' range.
    static func parseIterations(_ text: some Collection<UInt8>) -> Int? {
        guard (1...10).contains(text.count) else { return nil }
        var value = 0
        for digit in text {
            guard (0x30...0x39).contains(digit) else { return nil }
            value = value * 10 + Int(digit - 0x30)
        }
        return (1...maxIterations).contains(value) ? value : nil
    }

    /// RFC 5802 nonces are printable ASCII except ','.
    static func isValidNonce(_ nonce: some Collection<UInt8>) -> Bool {
        !nonce.isEmpty && nonce.allSatisfy { (0x21...0x7E).contains($0) && $0 != UInt8(ascii: ",") }
    }

    typealias Attribute = (name: UInt8, value: ArraySlice<UInt8>)

    /// Splits `a=x,b=y` into single-letter attributes. Works on bytes, not Characters, so the
    /// AuthMessage we sign is exactly what the peer sent, whatever its encoding.
    static func attributes(_ message: ArraySlice<UInt8>) -> [Attribute]? {
        var result: [Attribute] = []
        for part in message.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            guard part.count >= 2, let name = part.first, (0x61...0x7A).contains(name | 0x20),
                  part[part.startIndex + 1] == UInt8(ascii: "=") else { return nil }
            result.append((name, part.dropFirst(2)))
        }
        return result
    }
}
