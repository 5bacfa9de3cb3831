import Testing
@testable import SwitchyardProxy

@Suite struct SCRAMSecretTests {
    /// Made by PostgreSQL 15.18: `SET password_encryption = 'scram-sha-256'; CREATE ROLE app PASSWORD 'app-secret';`
    /// then `SELECT rolpassword FROM pg_authid WHERE rolname = 'app'`. Python's hashlib.pbkdf2_hmac agrees.
    static let postgresVerifier =
        "SCRAM-SHA-256$4096:VrsvQpT7Kmh35hqMMNxc3g==$IPTnBudCeF6heDLENRYJ6zisXA3ajyJaT0fKwL8m5xk=:Ujhw5TAT7Y2zBu9fW7xqkQVJZcHJ3hzIVOrrPvMFr/0="

    @Test func parsesAndRoundTripsAPostgresVerifier() throws {
        let secret = try SCRAMSecret(verifier: Self.postgresVerifier)
        #expect(secret.iterations == 4096)
        #expect(secret.salt.count == 16)
        #expect(secret.storedKey.count == 32 && secret.serverKey.count == 32)
        #expect(secret.verifier == Self.postgresVerifier)
    }

    @Test func deriveMatchesPostgres() throws {
        let parsed = try SCRAMSecret(verifier: Self.postgresVerifier)
        let derived = SCRAMSecret.derive(password: "app-secret", salt: parsed.salt)
        #expect(derived == parsed)
        #expect(derived.verifier == Self.postgresVerifier)
        #expect(SCRAMSecret.derive(password: "app-secret!", salt: parsed.salt) != parsed)
    }

    @Test func deriveMatchesRFC7677Salt() throws {
        let salt = try #require(SCRAMPrimitives.decodeBase64("W22ZaJ0SNY7soEsUEjb6gQ==".utf8))
        let secret = SCRAMSecret.derive(password: "pencil", salt: salt)
        #expect(try SCRAMSecret(verifier: secret.verifier) == secret)
        #expect(secret.verifier.hasPrefix("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"))
    }

    @Test func deriveAcceptsEmptyAndNonASCIIPasswords() throws {
        let empty = SCRAMSecret.derive(password: "", salt: [1, 2, 3], iterations: 1)
        let unicode = SCRAMSecret.derive(password: "pässwörd", salt: [1, 2, 3], iterations: 1)
        #expect(empty != unicode)
        #expect(try SCRAMSecret(verifier: unicode.verifier) == unicode)
    }

    @Test(arguments: [
        "",
        "md57b81bcceae28bfcc2eb842dfa40d9d9f",
        "SCRAM-SHA-1$4096:VrsvQpT7Kmh35hqMMNxc3g==$IPTnBudCeF6heDLENRYJ6zisXA3ajyJaT0fKwL8m5xk=:Ujhw5TAT7Y2zBu9fW7xqkQVJZcHJ3hzIVOrrPvMFr/0=",
        "SCRAM-SHA-256$4096:VrsvQpT7Kmh35hqMMNxc3g==$IPTnBudCeF6heDLENRYJ6zisXA3ajyJaT0fKwL8m5xk=",
        "SCRAM-SHA-256$0:VrsvQpT7Kmh35hqMMNxc3g==$IPTnBudCeF6heDLENRYJ6zisXA3ajyJaT0fKwL8m5xk=:Ujhw5TAT7Y2zBu9fW7xqkQVJZcHJ3hzIVOrrPvMFr/0=",
        "SCRAM-SHA-256$-1:VrsvQpT7Kmh35hqMMNxc3g==$IPTnBudCeF6heDLENRYJ6zisXA3ajyJaT0fKwL8m5xk=:Ujhw5TAT7Y2zBu9fW7xqkQVJZcHJ3hzIVOrrPvMFr/0=",
        "SCRAM-SHA-256$4096x:VrsvQpT7Kmh35hqMMNxc3g==$IPTnBudCeF6heDLENRYJ6zisXA3ajyJaT0fKwL8m5xk=:Ujhw5TAT7Y2zBu9fW7xqkQVJZcHJ3hzIVOrrPvMFr/0=",
        "SCRAM-SHA-256$99999999999:VrsvQpT7Kmh35hqMMNxc3g==$IPTnBudCeF6heDLENRYJ6zisXA3ajyJaT0fKwL8m5xk=:Ujhw5TAT7Y2zBu9fW7xqkQVJZcHJ3hzIVOrrPvMFr/0=",
        "SCRAM-SHA-256$4096:not base64!$IPTnBudCeF6heDLENRYJ6zisXA3ajyJaT0fKwL8m5xk=:Ujhw5TAT7Y2zBu9fW7xqkQVJZcHJ3hzIVOrrPvMFr/0=",
        "SCRAM-SHA-256$4096:$IPTnBudCeF6heDLENRYJ6zisXA3ajyJaT0fKwL8m5xk=:Ujhw5TAT7Y2zBu9fW7xqkQVJZcHJ3hzIVOrrPvMFr/0=",
        "SCRAM-SHA-256$4096:VrsvQpT7Kmh35hqMMNxc3g==$AAAA:Ujhw5TAT7Y2zBu9fW7xqkQVJZcHJ3hzIVOrrPvMFr/0=",
        "SCRAM-SHA-256$4096:VrsvQpT7Kmh35hqMMNxc3g==$IPTnBudCeF6heDLENRYJ6zisXA3ajyJaT0fKwL8m5xk=:Ujhw5TAT7Y2zBu9fW7xqkQVJZcHJ3hzIVOrrPvMFr/0=$extra",
    ])
    func rejectsInvalidVerifiers(_ verifier: String) {
        #expect(throws: SCRAMError.self) { try SCRAMSecret(verifier: verifier) }
    }

    @Test func descriptionsNeverContainKeyMaterial() throws {
        let secret = try SCRAMSecret(verifier: Self.postgresVerifier)
        #expect(!"\(secret)".contains("IPTnBudCeF6"))
        #expect(!"\(secret)".contains("Ujhw5TAT7Y2"))
        // A StoredKey of the wrong length, next to a real ServerKey.
        let badKey = "SCRAM-SHA-256$4096:VrsvQpT7Kmh35hqMMNxc3g==$IPTnBudCeF6heDLENRYJ6w==:Ujhw5TAT7Y2zBu9fW7xqkQVJZcHJ3hzIVOrrPvMFr/0="
        do {
            _ = try SCRAMSecret(verifier: badKey)
            Issue.record("expected invalidVerifier")
        } catch {
            guard case .invalidVerifier = error else { Issue.record("unexpected \(error)"); return }
            #expect(!error.description.contains("IPTnBudCeF6"))
            #expect(!error.description.contains("Ujhw5TAT7Y2"))
        }
    }
}
