import PostgresWire
import Testing
@testable import SwitchyardProxy

@Suite struct RoleSecretCacheTests {
    typealias Cache = RoleSecretCache<Int>
    let key = Cache.Key(database: "db", user: "role")
    let start = ContinuousClock.now
    static let secret = RoleSecret.md5(storedHash: "md5" + String(repeating: "a", count: 32))

    func found(_ at: ContinuousClock.Instant) -> RoleSecretLookupResult { .found(Self.secret, fetchedAt: at) }

    func token(_ decision: Cache.Decision) -> UInt64? {
        if case .lookUp(let token) = decision { token } else { nil }
    }

    @Test func concurrentLoginsShareOneLookupAndLaterOnesReuseItsAnswer() throws {
        var cache = Cache()
        let first = try #require(token(cache.request(key, waiter: 1, now: start)))
        guard case .joined = cache.request(key, waiter: 2, now: start) else { Issue.record("expected to join"); return }
        #expect(cache.finished(key, token: first, result: found(start), now: start, ttl: .seconds(10)) == [1, 2])
        guard case .cached(.found) = cache.request(key, waiter: 3, now: start + .seconds(9)) else { Issue.record("expected cache hit"); return }
        // Expired: ask again.
        #expect(token(cache.request(key, waiter: 4, now: start + .seconds(10))) != nil)
    }

    @Test func unknownRolesAreRememberedButFailuresAreNot() throws {
        var cache = Cache()
        let lookup = try #require(token(cache.request(key, waiter: 1, now: start)))
        _ = cache.finished(key, token: lookup, result: .notFound, now: start, ttl: .seconds(10))
        guard case .cached(.notFound) = cache.request(key, waiter: 2, now: start) else { Issue.record("expected cache hit"); return }

        let other = Cache.Key(database: "db", user: "other")
        let failing = try #require(token(cache.request(other, waiter: 1, now: start)))
        let error = ErrorFields(severity: .fatal, code: "08001", message: "down")
        #expect(cache.finished(other, token: failing, result: .failed(error), now: start, ttl: .seconds(10)) == [1])
        #expect(token(cache.request(other, waiter: 2, now: start)) != nil)
    }

    @Test func zeroTTLOnlyMergesConcurrentLookups() throws {
        var cache = Cache()
        let lookup = try #require(token(cache.request(key, waiter: 1, now: start)))
        _ = cache.request(key, waiter: 2, now: start)
        #expect(cache.finished(key, token: lookup, result: found(start), now: start, ttl: .zero) == [1, 2])
        #expect(token(cache.request(key, waiter: 3, now: start)) != nil)
    }

    @Test func forgetDropsAnAnswerButNotARunningLookup() throws {
        var cache = Cache()
        let lookup = try #require(token(cache.request(key, waiter: 1, now: start)))
        cache.forget(key)
        #expect(cache.finished(key, token: lookup, result: found(start), now: start, ttl: .seconds(10)) == [1])
        cache.forget(key)
        #expect(token(cache.request(key, waiter: 2, now: start)) != nil)
    }

    @Test func reloadForgetsAnswersAndDoesNotKeepWhatRunningLookupsFind() throws {
        var cache = Cache()
        let running = try #require(token(cache.request(key, waiter: 1, now: start)))
        let done = Cache.Key(database: "db", user: "done")
        let finished = try #require(token(cache.request(done, waiter: 1, now: start)))
        _ = cache.finished(done, token: finished, result: found(start), now: start, ttl: .seconds(10))
        cache.removeAll()
        #expect(token(cache.request(done, waiter: 2, now: start)) != nil)
        // The old lookup still answers its waiters, and one that joined after the reload…
        guard case .joined = cache.request(key, waiter: 3, now: start) else { Issue.record("expected to join"); return }
        #expect(cache.finished(key, token: running, result: found(start), now: start, ttl: .seconds(10)) == [1, 3])
        // …but its answer (from the old settings) is not kept.
        #expect(token(cache.request(key, waiter: 4, now: start)) != nil)
    }

    @Test func aSecondAnswerToTheSameLookupIsIgnored() throws {
        var cache = Cache()
        let lookup = try #require(token(cache.request(key, waiter: 1, now: start)))
        let timeout = ErrorFields(severity: .fatal, code: "08001", message: "timed out")
        #expect(cache.finished(key, token: lookup, result: .failed(timeout), now: start, ttl: .seconds(10)) == [1])
        #expect(cache.finished(key, token: lookup, result: found(start), now: start, ttl: .seconds(10)) == [])
    }

    @Test func capacityBoundsMemory() throws {
        var cache = Cache(capacity: 4)
        for index in 0..<20 {
            let key = Cache.Key(database: "db", user: "random\(index)")
            let lookup = try #require(token(cache.request(key, waiter: index, now: start)))
            _ = cache.finished(key, token: lookup, result: .notFound, now: start, ttl: .seconds(60))
            #expect(cache.count <= 4)
        }
    }
}

@Suite struct RoleSecretTests {
    @Test func parsesWhatPgShadowHolds() throws {
        let verifier = SCRAMSecretTests.postgresVerifier
        #expect(RoleSecret(rolpassword: verifier) == .scram(try SCRAMSecret(verifier: verifier)))
        let md5 = "md5" + String(repeating: "0123456789abcdef", count: 2)
        #expect(RoleSecret(rolpassword: md5) == .md5(storedHash: md5))
    }

    @Test(arguments: [nil, "", "plaintext-password", "md5" + String(repeating: "A", count: 32), "SCRAM-SHA-256$broken"])
    func unusableSecretsAreNoSecret(_ value: String?) {
        #expect(RoleSecret(rolpassword: value) == nil)
    }

    @Test func descriptionsHideTheSecret() {
        let md5 = "md5" + String(repeating: "0123456789abcdef", count: 2)
        #expect(!"\(RoleSecret.md5(storedHash: md5))".contains("0123"))
        #expect(!"\(PassThroughCredential(secret: .md5(storedHash: md5), fetchedAt: .now))".contains("0123"))
    }
}
