/// Which auth_query lookups run, and which logins reuse an answer: the policy behind
/// ``RoleSecretLookup``, pure so tests can drive it with their own clock.
///
/// - Logins for a role whose lookup is running wait for that lookup instead of starting another,
///   so a burst of connections costs the server one query.
/// - An answer (a secret, or "no such role") is reused for `ttl`. Failures (server down, permission
///   denied) are not kept: the next login asks again.
/// - RELOAD may change the query or its user: ``removeAll()`` forgets every answer, and lookups
///   already running still answer their waiters but are not remembered.
struct RoleSecretCache<Waiter> {
    struct Key: Hashable, Sendable {
        /// Where the query runs: `auth_dbname`, or the client's database.
        var database: String
        var user: String
    }

    enum Decision {
        /// Answer the login with this at once.
        case cached(RoleSecretLookupResult)
        /// A lookup is running; the waiter gets its answer.
        case joined
        /// Start a lookup and report it with `finished(_:token:result:now:)`.
        case lookUp(token: UInt64)
    }

    private enum Entry {
        /// `remember` is false for lookups that started before a ``removeAll()``.
        case pending(token: UInt64, waiters: [Waiter], remember: Bool)
        case ready(RoleSecretLookupResult, expires: ContinuousClock.Instant)
    }

    /// Unknown-role floods with random names must not grow memory without bound.
    let capacity: Int
    private var entries: [Key: Entry] = [:]
    private var nextToken: UInt64 = 0

    init(capacity: Int = 10_000) { self.capacity = capacity }

    var count: Int { entries.count }

    mutating func request(_ key: Key, waiter: Waiter, now: ContinuousClock.Instant) -> Decision {
        switch entries[key] {
        case .ready(let result, let expires)? where now < expires:
            return .cached(result)
        case .pending(let token, var waiters, let remember)?:
            waiters.append(waiter)
            entries[key] = .pending(token: token, waiters: waiters, remember: remember)
            return .joined
        case .ready?, nil:
            if entries[key] == nil, entries.count >= capacity { evict(now: now) }
            nextToken += 1
            entries[key] = .pending(token: nextToken, waiters: [waiter], remember: true)
            return .lookUp(token: nextToken)
        }
    }

    /// The lookup `token` finished: returns who waited for it. A lookup that already finished
    /// (a timeout answered first) returns no one and changes nothing.
    mutating func finished(_ key: Key, token: UInt64, result: RoleSecretLookupResult, now: ContinuousClock.Instant,
                           ttl: Duration) -> [Waiter] {
        guard case .pending(token, let waiters, let remember)? = entries[key] else { return [] }
        if case .failed = result {
            entries[key] = nil
        } else if remember, ttl > .zero {
            entries[key] = .ready(result, expires: now + ttl)
        } else {
            entries[key] = nil
        }
        return waiters
    }

    /// A password check against this role's cached secret failed: ask the server next time.
    /// A running lookup is left alone; its answer is fresh.
    mutating func forget(_ key: Key) {
        if case .ready? = entries[key] { entries[key] = nil }
    }

    /// Forgets every answer (RELOAD). Running lookups still answer their waiters, but what they
    /// found under the old settings is not kept.
    mutating func removeAll() {
        for (key, entry) in entries {
            if case .pending(let token, let waiters, _) = entry {
                entries[key] = .pending(token: token, waiters: waiters, remember: false)
            } else {
                entries[key] = nil
            }
        }
    }

    /// Drops expired answers; if that frees nothing, drops every answer (running lookups stay).
    private mutating func evict(now: ContinuousClock.Instant) {
        entries = entries.filter { _, entry in
            if case .ready(_, let expires) = entry { return now < expires }
            return true
        }
        if entries.count >= capacity {
            entries = entries.filter { _, entry in
                if case .pending = entry { return true }
                return false
            }
        }
    }
}
