import Testing
@testable import SwitchyardProxy

@Suite struct MD5PasswordTests {
    /// Made by PostgreSQL 15.18: `SET password_encryption = 'md5'; CREATE ROLE md5user PASSWORD 'app-secret';`
    /// then `SELECT rolpassword FROM pg_authid`. Same as python3: "md5" + hashlib.md5(b"app-secret" + b"md5user").hexdigest()
    static let stored = "md57b81bcceae28bfcc2eb842dfa40d9d9f"

    @Test func storedHashMatchesPostgres() {
        #expect(MD5Password.storedHash(user: "md5user", password: "app-secret") == Self.stored)
    }

    @Test func saltedHashMatchesPython() {
        // python3: inner = hashlib.md5(b"app-secret" + b"md5user").hexdigest()
        //          "md5" + hashlib.md5(inner.encode() + bytes([1, 2, 3, 4])).hexdigest()
        #expect(MD5Password.hash(user: "md5user", password: "app-secret", salt: [1, 2, 3, 4])
            == "md5a590741d24488f1860ba73f994a82a8e")
        // python3: inner = hashlib.md5(b"secret" + b"postgres").hexdigest()
        //          "md5" + hashlib.md5(inner.encode() + b"\x9a\x3f\x00\xff").hexdigest()
        #expect(MD5Password.hash(user: "postgres", password: "secret", salt: [0x9A, 0x3F, 0x00, 0xFF])
            == "md5c8b2f95c2bcab1003c03e3a8f8a0817e")
    }

    @Test func verifyAcceptsTheRightAnswerOnly() {
        let salt: [UInt8] = [1, 2, 3, 4]
        let response = MD5Password.hash(user: "md5user", password: "app-secret", salt: salt)
        #expect(MD5Password.verify(response: response, storedHash: Self.stored, salt: salt))
        #expect(!MD5Password.verify(response: response, storedHash: Self.stored, salt: [1, 2, 3, 5]))
        #expect(!MD5Password.verify(
            response: MD5Password.hash(user: "md5user", password: "app-secret!", salt: salt),
            storedHash: Self.stored, salt: salt))
        #expect(!MD5Password.verify(
            response: MD5Password.hash(user: "other", password: "app-secret", salt: salt),
            storedHash: Self.stored, salt: salt))
        #expect(!MD5Password.verify(response: "", storedHash: Self.stored, salt: salt))
        #expect(!MD5Password.verify(response: response.uppercased(), storedHash: Self.stored, salt: salt))
    }

    @Test func verifyRefusesAnEmptyStoredHash() {
        // python3: "md5" + hashlib.md5(bytes([1, 2, 3, 4])).hexdigest(), what a bare "md5" would expect.
        #expect(!MD5Password.verify(response: "md508d6c05a21512a79a1dfeb9d2a8f262f", storedHash: "md5", salt: [1, 2, 3, 4]))
    }

    @Test(arguments: ["", "md5", "7b81bcceae28bfcc2eb842dfa40d9d9f", "md57b81bcceae28bfcc2eb842dfa40d9d9", "SCRAM-SHA-256$4096:..."])
    func verifyRejectsMalformedStoredHashes(_ stored: String) {
        let response = MD5Password.hash(user: "md5user", password: "app-secret", salt: [1, 2, 3, 4])
        #expect(!MD5Password.verify(response: response, storedHash: stored, salt: [1, 2, 3, 4]))
    }
}
