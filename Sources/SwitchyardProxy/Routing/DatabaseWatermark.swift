import Synchronization

/// The write watermark of one database at `read_consistency = database`: the highest write position
/// any client of this process was told had committed there. Shared by every event loop, lock-free:
/// sessions look their database's up once, at login.
///
/// A probe that fails leaves a committed write whose position is unknown; reads at this level then go
/// to the primary until a probe *sent after the failure* succeeds, since its position covers that write.
final class DatabaseWatermark: Sendable {
    private let position = Atomic<UInt64>(0)
    private let failures = Atomic<UInt64>(0)
    /// The failure count the latest successful probe had seen before it was sent.
    private let covered = Atomic<UInt64>(0)

    /// Read just before a probe is sent; hand it back to ``advance(to:failuresBeforeProbe:)``.
    var failureCount: UInt64 { failures.load(ordering: .sequentiallyConsistent) }

    func advance(to lsn: LSN, failuresBeforeProbe: UInt64) {
        Self.raise(position, to: lsn.value)
        Self.raise(covered, to: failuresBeforeProbe)
    }

    func probeFailed() {
        failures.wrappingAdd(1, ordering: .sequentiallyConsistent)
    }

    var watermark: ReadFloor.Watermark {
        if covered.load(ordering: .sequentiallyConsistent) < failures.load(ordering: .sequentiallyConsistent) { return .unknown }
        let value = position.load(ordering: .sequentiallyConsistent)
        return value == 0 ? .none : .at(LSN(value))
    }

    private static func raise(_ atomic: borrowing Atomic<UInt64>, to value: UInt64) {
        var current = atomic.load(ordering: .sequentiallyConsistent)
        while current < value {
            let (exchanged, original) = atomic.compareExchange(expected: current, desired: value, ordering: .sequentiallyConsistent)
            if exchanged { return }
            current = original
        }
    }
}

/// Every database's ``DatabaseWatermark``, created on first use.
final class DatabaseWatermarks: Sendable {
    private let byDatabase = Mutex<[String: DatabaseWatermark]>([:])

    func watermark(for database: String) -> DatabaseWatermark {
        byDatabase.withLock { all in
            if let known = all[database] { return known }
            let created = DatabaseWatermark()
            all[database] = created
            return created
        }
    }
}
