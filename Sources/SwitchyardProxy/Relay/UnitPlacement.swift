import PostgresWire

/// Where the unit of work at the head of a client's queue goes. Pure: the session gathers the facts,
/// this decides, the session performs (``ClientSession/startUnit(target:excluding:mayWait:)``). The
/// order of the checks lives here, in one place: shutting down, a primary that is in recovery,
/// read-your-writes, and what happens when no replica is eligible.
enum UnitPlacement: Equatable {
    /// Switchyard is shutting down: the client is told so and closed.
    case terminate(ErrorFields)
    /// The unit is refused with this error, and what follows it in its batch skipped.
    case refuse(ErrorFields)
    /// The read waits until a replica reports replaying this position.
    case waitForReplay(LSN)
    /// Lease a server on `target`; a replica must have replayed `replayed`.
    case lease(RoutePlanner.Target, replayed: LSN?)

    struct Facts: Equatable {
        var draining: Bool
        /// Forced by the caller (a retry, a timed-out wait), or planned from the statement.
        var target: RoutePlanner.Target
        /// The server in the primary role reports `pg_is_in_recovery()`; its name.
        var primaryInRecovery: String?
        /// The unit may write: it would get Postgres' confusing 25006 from a standby.
        var mayWrite: Bool
    }

    /// The decision for a unit. `placeRead` (the client's read-your-writes floor) is asked at most
    /// once, and only for a replica read.
    static func decide(_ facts: Facts, placeRead: () -> ClientSession.ReadPlacement) -> UnitPlacement {
        if facts.draining {
            return .terminate(.switchyardShuttingDown)
        }
        switch facts.target {
        case .primary:
            if let primary = facts.primaryInRecovery, facts.mayWrite {
                return .refuse(ErrorFields(
                    severity: .error, code: SQLState.readOnlySQLTransaction,
                    message: "server \"\(primary)\" in the primary role is in recovery (a standby), so it cannot run writes",
                    hint: "Promote it, or configure the new primary and RELOAD. Reads still work."))
            }
            return .lease(.primary, replayed: nil)
        case .replica:
            switch placeRead() {
            case .anyReplica: return .lease(.replica, replayed: nil)
            case .replica(let position): return .lease(.replica, replayed: position)
            case .primary: return .lease(.primary, replayed: nil)
            case .wait(let position): return .waitForReplay(position)
            }
        }
    }

    /// A replica lease found no eligible replica: `replica_fallback` decides.
    static func noReplicaEligible(fallbackToPrimary: Bool) -> UnitPlacement {
        guard fallbackToPrimary else {
            return .refuse(ErrorFields(
                severity: .error, code: SQLState.cannotConnectNow, message: "no replica is available for this read",
                hint: "All replicas are down or lagging; set replica_fallback = primary to read from the primary instead."))
        }
        return .lease(.primary, replayed: nil)
    }
}

extension ErrorFields {
    /// What a client being closed because Switchyard shuts down is told, as Postgres words its own shutdown.
    static var switchyardShuttingDown: ErrorFields {
        ErrorFields(severity: .fatal, code: SQLState.adminShutdown, message: "terminating connection because Switchyard is shutting down")
    }
}
