import DequeModule

/// The statements Switchyard prepared on one server connection for transaction-mode clients, by
/// server-side name. Bounded: a server keeps every prepared plan in memory, so the oldest one is
/// closed when a new one would pass ``limit``. A value the server connection owns; only
/// ``StatementMap`` changes it.
struct ServerStatements {
    static let limit = 1000

    private(set) var names: Set<String> = []
    /// Oldest first. A name prepared again after a failure appears twice; eviction skips the entries
    /// no longer in `names`, and the queue is compacted before it can grow past twice the limit.
    private var order: Deque<String> = []
    /// Prepared here, but their plans went stale after DDL (0A000): closed before being prepared again.
    private var stale: Set<String> = []

    func contains(_ name: String) -> Bool { names.contains(name) }
    /// Entries in the eviction queue (for tests of its bound).
    var queuedCount: Int { order.count }
    var count: Int { names.count }

    /// The statement to close before one more is prepared, if the server holds ``limit`` already.
    mutating func evictOldestIfFull() -> String? {
        guard names.count >= Self.limit else { return nil }
        while let oldest = order.popFirst() {
            if names.remove(oldest) != nil { return oldest }
        }
        return nil
    }

    /// Whether `name`'s plan went stale here (it must be closed first); forgets that it did.
    mutating func takeStale(_ name: String) -> Bool {
        stale.remove(name) != nil
    }

    /// A Parse of `name` went out (the server may still refuse it: ``prepareFailed(_:)``).
    mutating func prepared(_ name: String) {
        names.insert(name)
        order.append(name)
        if order.count > 2 * Self.limit { compact() }
    }

    /// Keeps each live name once, at its latest Parse.
    private mutating func compact() {
        var seen = Set<String>()
        var kept = Deque<String>()
        for name in order.reversed() where names.contains(name) && seen.insert(name).inserted { kept.prepend(name) }
        order = kept
    }

    /// The server refused (or skipped) the Parse of `name`.
    mutating func prepareFailed(_ name: String) {
        names.remove(name)
    }

    /// Postgres answered a Bind of `name` with "cached plan must not change result type".
    mutating func planWentStale(_ name: String) {
        names.remove(name)
        stale.insert(name)
    }

    /// DISCARD ALL or DEALLOCATE ALL ran here: the server has no prepared statements any more.
    mutating func removeAll() {
        names.removeAll()
        order.removeAll()
        stale.removeAll()
    }
}
