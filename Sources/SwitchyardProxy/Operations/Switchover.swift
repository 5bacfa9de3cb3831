import Foundation
import Logging
import NIOCore
import PostgresNIO
import PostgresWire

/// Runs one SWITCHOVER: performs what ``SwitchoverStateMachine`` decides, against the servers (over
/// control connections as `switchover_user`) and the proxy (hold, topology, state file). Each phase
/// reports progress to the operator as it ends.
final class Switchover {
    typealias Machine = SwitchoverStateMachine

    private let runtime: ProxyRuntime
    private let monitor: ReplicaMonitor
    private let logger: Logger
    private let progress: @Sendable (String) -> Void
    private var machine: Machine
    private var report: SwitchoverReport
    private let oldPrimary: ServerDefinition
    private var primaryConnection: PostgresConnection?
    private var targetConnection: PostgresConnection?
    /// The next transaction ID on the old primary when it was fenced: if it moves, something wrote.
    private var fenceXID: Int64?
    private var holdStarted: ContinuousClock.Instant?

    init(_ request: Machine.Request, runtime: ProxyRuntime, monitor: ReplicaMonitor, logger: Logger,
         progress: @escaping @Sendable (String) -> Void) {
        self.runtime = runtime
        self.monitor = monitor
        self.progress = progress
        self.machine = Machine(request)
        self.oldPrimary = runtime.topology.primary
        var logger = logger
        logger[metadataKey: "switchover_target"] = "\(request.target)"
        logger[metadataKey: "old_primary"] = "\(oldPrimary.name)"
        self.logger = logger
        self.report = SwitchoverReport(startedAt: Date(), outcome: .dryRun, oldPrimary: oldPrimary.name, target: request.target)
    }

    /// Runs every phase to an outcome; never throws (a failure is an outcome).
    func run() async -> SwitchoverReport {
        let started = ContinuousClock.now
        var action = machine.start()
        while true {
            let phase = machine.phase
            let phaseStarted = ContinuousClock.now
            if case .finish(let outcome) = action {
                report.outcome = outcome
                break
            }
            let event = await perform(action)
            let took = ContinuousClock.now - phaseStarted
            if let phase { report.phases[phase, default: .zero] += took }
            action = machine.happened(event)
            if let phase { progress("switchover \(phase.rawValue): \(Self.describe(event)) (\(Self.milliseconds(took)) ms)") }
        }
        report.total = ContinuousClock.now - started
        report.targetKind = machine.target?.kind.rawValue
        report.finalLSN = machine.finalLSN
        report.reachedLSN = machine.reachedLSN
        for connection in [primaryConnection, targetConnection].compactMap({ $0 }) { try? await connection.close() }
        return report
    }

    private func perform(_ action: Machine.Action) async -> Machine.Event {
        switch action {
        case .runPreflight: return await preflight()
        case .drain(let timeout): return await drain(within: timeout)
        case .fence: return await fence()
        case .waitForCatchUp(let lsn): return await waitForCatchUp(lsn)
        case .promote: return await promote()
        case .publish: return await publish()
        case .checkFence: return await checkFence()
        case .rollBack(let unfence): return await rollBack(unfence: unfence)
        case .finish: preconditionFailure("finish is handled by run()")
        }
    }

    // MARK: Preflight

    private func preflight() async -> Machine.Event {
        let configuration = runtime.configuration
        let topology = runtime.topology
        let name = machine.request.target
        guard let user = configuration.switchoverUser else {
            return .preflightFailed("switchover_user is not set: the fence and the promotion need a [users] entry with the privileges listed in the README")
        }
        guard configuration.switchover.stateFile != nil else {
            return .preflightFailed("state_file is not set: without it a restarted proxy would send writes to the fenced former primary")
        }
        guard runtime.poolMode == .transaction else {
            return .preflightFailed("pool_mode = session is not supported yet: clients keep their server connection, so the drain could not finish")
        }
        guard let target = topology.server(named: name) else {
            return .preflightFailed("no server named \"\(name)\"; configured: \(topology.servers.map(\.name).joined(separator: ", "))")
        }
        guard target.name != oldPrimary.name else { return .preflightFailed("\"\(name)\" is already the primary") }
        guard runtime.pause.isEmpty else { return .preflightFailed("a PAUSE is in force; RESUME first") }
        guard topology.primaryState == .writable else { return .preflightFailed("the primary \"\(oldPrimary.name)\" is itself in recovery") }
        let primaryFacts: (systemID: String, lsn: LSN)
        do {
            let connection = try await connect(oldPrimary, user)
            primaryConnection = connection
            let rows = try await connection.query("""
                select pg_is_in_recovery(), (select system_identifier::text from pg_control_system()), pg_current_wal_lsn()::text
                """, logger: logger)
            var facts: (Bool, String, String)?
            for try await row in rows.decode((Bool, String, String).self) { facts = row }
            guard let facts, !facts.0, let lsn = LSN(facts.2) else { return .preflightFailed("the primary \"\(oldPrimary.name)\" reports being in recovery") }
            primaryFacts = (facts.1, lsn)
            if let missing = try await missingPrivileges(on: connection, [
                ("select pg_has_role('pg_signal_backend', 'member')", "membership in pg_signal_backend"),
                ("select has_function_privilege('pg_reload_conf()', 'execute')", "EXECUTE on pg_reload_conf()"),
                ("select has_parameter_privilege('default_transaction_read_only', 'alter system')", "ALTER SYSTEM on default_transaction_read_only"),
            ]) {
                return .preflightFailed("switchover_user \"\(user.serverUser)\" lacks \(missing) on \(oldPrimary.name)")
            }
        } catch {
            return .preflightFailed("cannot reach the primary \"\(oldPrimary.name)\": \(ReplicaMonitor.describe(error))")
        }
        do {
            let connection = try await connect(target, user)
            targetConnection = connection
            let rows = try await connection.query("""
                select pg_is_in_recovery(), (select system_identifier::text from pg_control_system()), \
                coalesce(pg_last_wal_replay_lsn()::text, ''), case when pg_is_in_recovery() then pg_is_wal_replay_paused() else false end
                """, logger: logger)
            var facts: (Bool, String, String, Bool)?
            for try await row in rows.decode((Bool, String, String, Bool).self) { facts = row }
            guard let (inRecovery, systemID, replayed, paused) = facts else { return .preflightFailed("no answer from \"\(name)\"") }
            guard inRecovery else {
                if topology.fenced.contains(name) {
                    // The revert that loses everything written since: only once it streams from the primary again.
                    return .preflightFailed("\"\(name)\" is the fenced former primary, not a standby of \(oldPrimary.name): switching back would lose every write made on \(oldPrimary.name) since the switchover; make it a standby of \(oldPrimary.name) first (pg_basebackup or pg_rewind)")
                }
                return .preflightFailed("\"\(name)\" is not in recovery: it is a primary of its own, not a standby of \(oldPrimary.name); switching would lose the writes made since they parted")
            }
            guard systemID == primaryFacts.systemID else {
                return .preflightFailed("\"\(name)\" is not a physical standby of \(oldPrimary.name): system identifiers differ (\(systemID) vs \(primaryFacts.systemID))")
            }
            guard !paused else { return .preflightFailed("WAL replay is paused on \"\(name)\" (pg_wal_replay_resume() resumes it)") }
            guard let replay = LSN(replayed) else { return .preflightFailed("\"\(name)\" reports no replay position") }
            let lag = Int64(primaryFacts.lsn.value) - Int64(replay.value)
            guard lag <= runtime.configuration.switchover.maxLagBytes else {
                return .preflightFailed("\"\(name)\" is \(lag) bytes behind \(oldPrimary.name) (replayed \(replay), primary at \(primaryFacts.lsn)); switchover_max_lag is \(runtime.configuration.switchover.maxLagBytes)")
            }
            if let missing = try await missingPrivileges(on: connection, [
                ("select has_function_privilege('pg_promote(boolean, integer)', 'execute')", "EXECUTE on pg_promote(boolean, integer)"),
            ]) {
                return .preflightFailed("switchover_user \"\(user.serverUser)\" lacks \(missing) on \(name)")
            }
            return .preflightPassed(Machine.Target(kind: .physicalStandby, lagBytes: max(0, lag)))
        } catch {
            return .preflightFailed("cannot reach the target \"\(name)\": \(ReplicaMonitor.describe(error))")
        }
    }

    private func missingPrivileges(on connection: PostgresConnection, _ checks: [(query: String, what: String)]) async throws -> String? {
        var missing: [String] = []
        for check in checks {
            let rows = try await connection.query(PostgresQuery(unsafeSQL: check.query), logger: logger)
            for try await granted in rows.decode(Bool.self) where !granted { missing.append(check.what) }
        }
        return missing.isEmpty ? nil : missing.joined(separator: ", ")
    }

    // MARK: Drain and fence

    /// Holds new work for the old primary (replica reads go on) and waits for the running units.
    private func drain(within timeout: Duration) async -> Machine.Event {
        holdStarted = .now
        let scope = runtime.updatePause { $0.servers.insert(oldPrimary.name) }
        await runtime.broadcastPause(scope)
        return .drainEnded(await runtime.waitUntilQuiet(PauseScope(servers: [oldPrimary.name]), within: timeout))
    }

    /// Read-only by default, every other client backend terminated, then the WAL end and the next
    /// transaction ID read: nothing committed can come after them.
    private func fence() async -> Machine.Event {
        guard let connection = primaryConnection else { return .fenceFailed("no connection to \(oldPrimary.name)") }
        // Recorded first, so a restart after a crash from here on can settle the switch (SwitchoverRecovery).
        if let problem = record(.fencing) { return .fenceFailed(problem) }
        // Our own idle connections would be terminated anyway; closing them first keeps the pools tidy.
        _ = await runtime.closeConnections(to: oldPrimary.name)
        do {
            _ = try await connection.query("alter system set default_transaction_read_only = on", logger: logger)
            _ = try await connection.query("select pg_reload_conf()", logger: logger)
            _ = try await connection.query("""
                select count(pg_terminate_backend(pid)) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()
                """, logger: logger)
            let rows = try await connection.query(
                "select pg_current_wal_insert_lsn()::text, pg_snapshot_xmax(pg_current_snapshot())::text::int8", logger: logger)
            for try await (lsn, xid) in rows.decode((String, Int64).self) {
                guard let lsn = LSN(lsn) else { break }
                fenceXID = xid
                return .fenced(finalLSN: lsn)
            }
            return .fenceFailed("\(oldPrimary.name) reported no WAL position")
        } catch {
            return .fenceFailed("fencing \(oldPrimary.name): \(ReplicaMonitor.describe(error))")
        }
    }

    // MARK: Catch-up and promotion

    /// Until the target has replayed everything up to the final position. A remote wait, so it asks
    /// the target every 2 ms; no event loop is involved.
    private func waitForCatchUp(_ final: LSN) async -> Machine.Event {
        guard let connection = targetConnection else { return .catchUpFailed("no connection to the target") }
        let deadline = ContinuousClock.now + machine.request.drainTimeout
        var last: LSN?
        do {
            while true {
                let rows = try await connection.query("select coalesce(pg_last_wal_replay_lsn()::text, '')", logger: logger)
                for try await text in rows.decode(String.self) { last = LSN(text) }
                if let last, last.covers(insertPosition: final) { return .caughtUp(reached: last) }
                guard ContinuousClock.now < deadline else {
                    return .catchUpFailed("\(machine.request.target) replayed only up to \(last?.description ?? "nothing") of \(final) within \(machine.request.drainTimeout)")
                }
                try await Task.sleep(for: .milliseconds(2))
            }
        } catch {
            return .catchUpFailed("\(machine.request.target) stopped answering during catch-up: \(ReplicaMonitor.describe(error))")
        }
    }

    /// Requests promotion and watches for its end. `pg_promote(wait => true)` looks only every 100 ms,
    /// which would be most of the hold; asking `pg_is_in_recovery()` every 2 ms ends it as soon as the
    /// target accepts writes.
    private func promote() async -> Machine.Event {
        let name = machine.request.target
        guard let connection = targetConnection else { return .promotionFailed("no connection to the target", targetPromoting: false) }
        if let problem = record(.promoting) { return .promotionFailed(problem, targetPromoting: false) }
        do {
            let rows = try await connection.query("select pg_promote(false)", logger: logger)
            var requested = false
            for try await done in rows.decode(Bool.self) { requested = done }
            guard requested else { return .promotionFailed("pg_promote on \(name) could not signal the promotion", targetPromoting: false) }
        } catch {
            // Refused before anything was requested (privileges, not a standby): the target stays a standby.
            return .promotionFailed("pg_promote on \(name): \(ReplicaMonitor.describe(error))", targetPromoting: !Self.isRefusal(error))
        }
        let deadline = ContinuousClock.now + .seconds(30)
        do {
            while ContinuousClock.now < deadline {
                let rows = try await connection.query("select pg_is_in_recovery()", logger: logger)
                var inRecovery = true
                for try await value in rows.decode(Bool.self) { inRecovery = value }
                if !inRecovery { return .promoted }
                try await Task.sleep(for: .milliseconds(2))
            }
            return .promotionFailed("\(name) was still in recovery 30 s after pg_promote", targetPromoting: true)
        } catch {
            return .promotionFailed("\(name) stopped answering while promoting: \(ReplicaMonitor.describe(error))", targetPromoting: true)
        }
    }

    /// A server error that means the request was turned down, not lost on the way.
    private static func isRefusal(_ error: Error) -> Bool {
        guard let psql = error as? PSQLError, let code = psql.serverInfo?[.sqlState] else { return false }
        return code.hasPrefix("42") || code == "55000"
    }

    // MARK: Flip, check, roll back

    /// Records the new primary, publishes it to every loop, then lets the held clients go on to it.
    private func publish() async -> Machine.Event {
        let name = machine.request.target
        var problem: String?
        let before = runtime.topology
        if let switched = before.switchedOver(to: name), let path = runtime.configuration.switchover.stateFile {
            do { try SwitchoverStateFile(primary: name, fenced: switched.fenced.sorted()).write(to: path) } catch { problem = error.description }
        }
        report.heldClients = await runtime.snapshots().flatMap(\.clients).filter { $0.state == .paused }.count
        runtime.changeTopology { $0.switchedOver(to: name) ?? $0 }
        monitor.publish()
        // Each loop runs the topology change before this, so held units re-route to the new primary.
        let scope = runtime.updatePause { $0.servers.remove(oldPrimary.name) }
        await runtime.broadcastPause(scope)
        if let holdStarted { report.longestHold = ContinuousClock.now - holdStarted }
        logger.notice("switchover: new primary in force", metadata: [
            "new_primary": "\(name)", "held_clients": "\(report.heldClients)", "state_file_problem": "\(problem ?? "none")",
        ])
        return .published(stateFileProblem: problem)
    }

    private func checkFence() async -> Machine.Event {
        guard let connection = primaryConnection, let fenceXID else { return .fenceChecked(.unknown("no connection to \(oldPrimary.name)")) }
        do {
            let rows = try await connection.query("select pg_snapshot_xmax(pg_current_snapshot())::text::int8", logger: logger)
            for try await xid in rows.decode(Int64.self) {
                return xid == fenceXID ? .fenceChecked(.held) : .fenceChecked(.broken("transaction IDs \(fenceXID)..\(xid - 1) were assigned after the fence"))
            }
            return .fenceChecked(.unknown("no answer"))
        } catch {
            return .fenceChecked(.unknown(ReplicaMonitor.describe(error)))
        }
    }

    /// Un-fences the old primary when the fence went up, then releases the held clients onto it.
    private func rollBack(unfence: Bool) async -> Machine.Event {
        let problem = unfence ? await lowerFence() : nil
        let scope = runtime.updatePause { $0.servers.remove(oldPrimary.name) }
        await runtime.broadcastPause(scope)
        if let holdStarted { report.longestHold = ContinuousClock.now - holdStarted }
        return .rolledBack(problem: problem)
    }

    /// Un-fences the old primary and records that no switch is in progress; the problem, if any.
    private func lowerFence() async -> String? {
        let problem: String
        do {
            if primaryConnection?.isClosed ?? true {
                guard let user = runtime.configuration.switchoverUser else { return "switchover_user is gone from the configuration; run \(Self.unfenceByHand) on \(oldPrimary.name)" }
                primaryConnection = try await connect(oldPrimary, user)
            }
            try await Self.unfence(primaryConnection!, logger: logger)
            return record(nil)
        } catch {
            problem = "could not un-fence \(oldPrimary.name) (run \(Self.unfenceByHand) there): \(ReplicaMonitor.describe(error))"
        }
        logger.error("switchover: rolling back failed to un-fence the old primary", metadata: ["error": "\(problem)"])
        return problem
    }

    /// Lifts the fence: the old primary takes writes again.
    static func unfence(_ connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("alter system reset default_transaction_read_only", logger: logger)
        try await connection.query("select pg_reload_conf()", logger: logger)
    }

    /// What an operator runs on the old primary when the proxy could not un-fence it.
    static let unfenceByHand = "ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf();"

    /// Writes the switch in progress (`step`), or none, to `state_file`; the problem if that failed.
    private func record(_ step: SwitchoverStateFile.Step?) -> String? {
        guard let path = runtime.configuration.switchover.stateFile else { return "state_file is not set" }
        let topology = runtime.topology
        let state = SwitchoverStateFile(primary: oldPrimary.name, fenced: topology.fenced.sorted(),
                                        switchingTo: step == nil ? nil : machine.request.target, step: step)
        do { try state.write(to: path) } catch { return error.description }
        return nil
    }

    private func connect(_ server: ServerDefinition, _ user: UserDefinition) async throws -> PostgresConnection {
        try await ControlConnection.connect(to: server, as: user, configuration: runtime.configuration,
                                            on: runtime.allShards[0].eventLoop, logger: logger)
    }

    // MARK: Progress lines

    static func describe(_ event: Machine.Event) -> String {
        switch event {
        case .preflightPassed(let target): "target is a \(target.kind.rawValue), \(target.lagBytes) bytes behind"
        case .preflightFailed(let reason): "refused: \(reason)"
        case .drainEnded(.quiet): "running transactions finished; new ones are held"
        case .drainEnded(.timedOut(let busy)): "\(busy) transaction\(busy == 1 ? "" : "s") still running at the deadline"
        case .drainEnded(.withdrawn): "the hold was lifted by RESUME"
        case .fenced(let lsn): "old primary is read-only; final WAL position \(lsn)"
        case .fenceFailed(let reason), .catchUpFailed(let reason): "failed: \(reason)"
        case .caughtUp(let lsn): "target replayed up to \(lsn)"
        case .promoted: "target promoted"
        case .promotionFailed(let reason, _): "failed: \(reason)"
        case .published(let problem): "new primary in force; held clients released" + (problem.map { "; \($0)" } ?? "")
        case .fenceChecked(.held): "the fence held: nothing was written to the former primary"
        case .fenceChecked(.broken(let what)): "FENCE BROKEN: \(what)"
        case .fenceChecked(.unknown(let why)): "could not check the fence: \(why)"
        case .rolledBack(let problem): "rolled back; the old primary serves again" + (problem.map { "; \($0)" } ?? "")
        }
    }

    static func milliseconds(_ duration: Duration) -> String { String(format: "%.1f", duration.inSeconds * 1000) }
}
