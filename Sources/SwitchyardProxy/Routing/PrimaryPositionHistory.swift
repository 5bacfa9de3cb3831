import DequeModule

/// The primary's WAL position over time, as the health monitor samples it each round, so a replica's
/// lag in seconds is the age of the WAL it has replayed, not how long its replay has been stuck.
///
/// The age is bounded from above twice: by the newest sample the replica had already replayed (the
/// primary was at that position then), and by the age of the last transaction it replayed
/// (`pg_last_xact_replay_timestamp()`, written on the primary no later than the position replayed).
/// The smaller bound is reported; it overstates the lag by at most one `health_check_interval`, and a
/// replica that has replayed everything the primary wrote has no lag, however idle the primary is.
/// A pure value; times are seconds on any monotonic clock.
public struct PrimaryPositionHistory: Sendable {
    private var samples: Deque<(time: Double, position: LSN)> = []
    let capacity: Int

    public init(capacity: Int = 600) {
        self.capacity = capacity
    }

    public mutating func record(_ position: LSN, at time: Double) {
        if let last = samples.last, last.position > position { samples.removeAll() }   // a new primary, say
        samples.append((time, position))
        if samples.count > capacity { samples.removeFirst() }
    }

    /// Seconds (at most) that a replica which has replayed `replayed` is behind, at `now`.
    /// `lastReplayedCommitAge`: `now() - pg_last_xact_replay_timestamp()` on the replica, if it has one.
    public func lagSeconds(replayed: LSN, lastReplayedCommitAge: Double?, now: Double) -> Double {
        guard let newest = samples.last else { return max(0, lastReplayedCommitAge ?? 0) }
        if replayed.covers(insertPosition: newest.position) { return 0 }
        var bound = lastReplayedCommitAge.map { max(0, $0) }
        if let sample = samples.last(where: { replayed.covers(insertPosition: $0.position) }) {
            bound = min(bound ?? .infinity, now - sample.time)
        } else if bound == nil, let oldest = samples.first {
            // Behind everything sampled, with no transaction replayed: at least this old.
            bound = now - oldest.time
        }
        return max(0, bound ?? 0)
    }
}
