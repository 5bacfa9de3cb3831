import Crypto

/// Postgres' legacy `md5` password authentication, kept for clients and servers that still use it.
///
/// The stored form is `"md5" + hex(md5(password ‖ user))`; on the wire the client answers a 4-byte salt
/// with `"md5" + hex(md5(hex(md5(password ‖ user)) ‖ salt))`, so a stored hash is enough to verify.
public enum MD5Password {
    /// What Postgres keeps in `pg_authid.rolpassword` for an md5 role.
    public static func storedHash(user: String, password: String) -> String {
        "md5" + md5Hex(Array(password.utf8) + Array(user.utf8))
    }

    /// The client's answer to an AuthenticationMD5Password challenge.
    public static func hash(user: String, password: String, salt: [UInt8]) -> String {
        "md5" + md5Hex(Array(md5Hex(Array(password.utf8) + Array(user.utf8)).utf8) + salt)
    }

    /// The answer to a server's challenge from the stored hash alone (auth_query pass-through):
    /// the inner md5 of the answer is exactly the hash's hex digits.
    public static func hash(storedHash: String, salt: [UInt8]) -> String {
        "md5" + md5Hex(Array(storedHash.utf8.dropFirst(3)) + salt)
    }

    /// Checks a client's answer against a stored hash, in constant time so timing doesn't leak how
    /// close a guess was. A stored hash that isn't `md5` + 32 hex digits never verifies.
    public static func verify(response: String, storedHash: String, salt: [UInt8]) -> Bool {
        let stored = Array(storedHash.utf8)
        guard stored.count == 35, stored.starts(with: "md5".utf8) else { return false }
        let expected = "md5" + md5Hex(Array(stored.dropFirst(3)) + salt)
        return SCRAMPrimitives.constantTimeEquals(Array(response.utf8), Array(expected.utf8))
    }

    private static func md5Hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        let digest = Insecure.MD5.hash(data: bytes)
        return String(decoding: digest.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xF)]] }, as: UTF8.self)
    }
}
