/// One probe's findings about a replica.
public struct ReplicaProbe: Sendable, Equatable {
    public var inRecovery: Bool
    /// WAL bytes the replica has still to replay, or nil when the primary's position is unknown.
    public var lagBytes: Int64?
    public var lagSeconds: Double
    /// `pg_last_wal_replay_lsn()`, for SHOW SERVERS.
    public var replayPosition: LSN?

    public init(inRecovery: Bool, lagBytes: Int64?, lagSeconds: Double, replayPosition: LSN? = nil) {
        self.inRecovery = inRecovery
        self.lagBytes = lagBytes
        self.lagSeconds = lagSeconds
        self.replayPosition = replayPosition
    }
}

/// Whether a replica may serve reads, with hysteresis: one bad probe takes it out of rotation at
/// once, but only `hysteresis` consecutive good probes bring it back, so a replica hovering at the
/// lag limit does not flap. A pure value, one per replica.
public struct ReplicaHealth: Sendable, Equatable {
    public enum State: String, Sendable, Equatable {
        /// Never probed successfully yet.
        case unknown
        case eligible
        /// Out of rotation; `reason` says why.
        case excluded
    }

    public private(set) var state: State = .unknown
    public private(set) var reason = "not probed yet"
    public private(set) var lastProbe: ReplicaProbe?
    private var consecutiveGood = 0
    let maxLagBytes: Int64
    let maxLagSeconds: Double
    let hysteresis: Int

    public init(maxLagBytes: Int64, maxLagSeconds: Double, hysteresis: Int) {
        self.maxLagBytes = maxLagBytes
        self.maxLagSeconds = maxLagSeconds
        self.hysteresis = hysteresis
    }

    public var isEligible: Bool { state == .eligible }

    /// Records a successful probe; returns true when eligibility changed.
    public mutating func probeSucceeded(_ probe: ReplicaProbe) -> Bool {
        lastProbe = probe
        let problem: String?
        if !probe.inRecovery {
            problem = "not in recovery (promoted?)"
        } else if let bytes = probe.lagBytes, bytes > maxLagBytes {
            problem = "lag \(bytes) bytes over max_replica_lag \(maxLagBytes)"
        } else if probe.lagSeconds > maxLagSeconds {
            problem = "lag \(probe.lagSeconds) s over max_replica_lag_seconds \(maxLagSeconds)"
        } else {
            problem = nil
        }
        if let problem { return exclude(problem) }
        consecutiveGood += 1
        // A replica that was never excluded joins at its first good probe.
        guard state != .eligible, state == .unknown || consecutiveGood >= hysteresis else { return false }
        state = .eligible
        reason = "healthy"
        return true
    }

    /// Records a failed probe (connection or query error); returns true when eligibility changed.
    public mutating func probeFailed(_ error: String) -> Bool {
        lastProbe = nil
        return exclude("unreachable: \(error)")
    }

    private mutating func exclude(_ why: String) -> Bool {
        consecutiveGood = 0
        reason = why
        let changed = state != .excluded
        state = .excluded
        return changed
    }
}

/// Parses a textual LSN (`16/B374D848`) into a byte position.
public func parseLSN(_ text: String) -> Int64? {
    LSN(text).map { Int64(bitPattern: $0.value) }
}
