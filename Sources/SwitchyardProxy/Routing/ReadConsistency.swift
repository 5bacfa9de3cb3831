/// How fresh a replica read must be (`read_consistency`, a user's `read_consistency=`, or
/// `SET switchyard.read_consistency`).
public enum ReadConsistency: String, Sendable, Equatable, CaseIterable {
    /// Any replica within `max_replica_lag`: a read may miss the client's own last write.
    case eventual
    /// A read never sees a state older than this client's own last write.
    case session
    /// A read sees every write any client of this Switchyard was told had committed to the database.
    case database
}

/// What a replica must have replayed before it may serve a client's read: the client's own write
/// watermark, its database's, and a token it set (`switchyard.min_read_lsn`). A pure value, one per
/// client session.
///
/// Watermarks are `pg_current_wal_insert_lsn()` read on the primary after a unit of work that may have
/// written: at or past that unit's commit record. A watermark whose probe failed is *unknown*, and an
/// unknown floor sends reads to the primary (always fresh) until a later probe succeeds.
public struct ReadFloor: Sendable, Equatable {
    /// A position known, or the admission that it is not.
    public enum Watermark: Sendable, Equatable {
        case none
        case at(LSN)
        /// A write's probe failed: its position is not known.
        case unknown

        /// For SHOW CLIENTS: the position, "unknown", or nil before any write.
        public var shown: String? {
            switch self {
            case .none: return nil
            case .at(let position): return position.description
            case .unknown: return "unknown"
            }
        }
    }

    /// Where a read may go.
    public enum Requirement: Sendable, Equatable {
        /// Any eligible replica.
        case anyReplica
        /// A replica whose replay position covers this one.
        case replayed(LSN)
        /// Only the primary is known to be fresh enough.
        case primary
    }

    public var level: ReadConsistency
    /// The client's own last write (kept whatever the level: `SHOW switchyard.last_write_lsn`).
    public private(set) var lastWrite = Watermark.none
    /// `SET switchyard.min_read_lsn`: a causal token carried from another connection or proxy.
    public var minimumRead: LSN?

    public init(level: ReadConsistency) {
        self.level = level
    }

    /// Whether a unit of work on the primary must learn its write position.
    public var tracksWrites: Bool { level != .eventual }

    /// A probe after a unit of work on the primary answered.
    public mutating func wrote(at position: LSN) {
        untrackedWrite = false
        if case .at(let known) = lastWrite, known > position { return }
        lastWrite = .at(position)
    }

    /// A probe after a unit of work on the primary failed: the write's position is not known.
    public mutating func writePositionLost() {
        lastWrite = .unknown
        untrackedWrite = false
    }

    /// A write ran while this client's reads went to the primary anyway (`switchyard.route = primary`), so
    /// its position was not learnt: a read that goes to a replica after all (a hint, a changed route)
    /// runs on the primary until the next write records a position.
    public private(set) var untrackedWrite = false

    public mutating func writeNotTracked() {
        untrackedWrite = true
    }

    /// The requirement of a read, given the database's watermark (consulted only at `database` level).
    public func requirement(database: Watermark) -> Requirement {
        var floor = minimumRead
        func include(_ watermark: Watermark) -> Bool {
            switch watermark {
            case .none: return true
            case .at(let position): floor = max(floor ?? position, position); return true
            case .unknown: return false
            }
        }
        if untrackedWrite, level != .eventual { return .primary }
        switch level {
        case .eventual: break
        case .session: guard include(lastWrite) else { return .primary }
        case .database: guard include(lastWrite), include(database) else { return .primary }
        }
        return floor.map { .replayed($0) } ?? .anyReplica
    }
}
