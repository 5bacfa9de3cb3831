import Logging
import NIOCore
import PostgresWire
import Synchronization

/// Runs admin console commands against the live proxy: reads state from the shards (on their own
/// loops) and the health monitor, and changes it (pause, disable, kill, reload). Every command is
/// logged with the operator who issued it.
public final class AdminConsole: Sendable {
    private let runtime: ProxyRuntime
    private let monitor: ReplicaMonitor
    private let reloadConfiguration: @Sendable () async throws -> [String]
    private let logger: Logger
    /// SHOW SWITCHOVER's rows, oldest first; `running` refuses a second concurrent SWITCHOVER.
    private let switchovers = Mutex<(running: Bool, history: [SwitchoverReport])>((false, []))

    init(runtime: ProxyRuntime, monitor: ReplicaMonitor, reload: @escaping @Sendable () async throws -> [String], logger: Logger) {
        self.runtime = runtime
        self.monitor = monitor
        self.reloadConfiguration = reload
        self.logger = logger
    }

    /// Runs `command` for `user`; failures are thrown as ``ErrorFields``. Long commands (SWITCHOVER)
    /// report each step to `progress` as it ends, which the session sends as a NOTICE.
    func execute(_ command: AdminCommand, user: String, progress: @escaping @Sendable (String) -> Void = { _ in }) async throws -> AdminResult {
        let metadata: Logger.Metadata = ["admin_user": "\(user)", "command": "\(command)"]
        if command.isAction {
            logger.notice("admin command", metadata: metadata)
        } else {
            logger.info("admin command", metadata: metadata)
        }
        do {
            return try await run(command, progress: progress)
        } catch {
            logger.warning("admin command failed", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            throw error
        }
    }

    private func run(_ command: AdminCommand, progress: @escaping @Sendable (String) -> Void) async throws -> AdminResult {
        switch command {
        case .showHelp:
            return AdminResult(rows: AdminCommand.help.map { [.text($0.command), .text($0.description)] })
        case .showVersion:
            return AdminResult(rows: [[.text("Switchyard \(SwitchyardVersion.current)")]])
        case .showConfig:
            return AdminResult(rows: runtime.configuration.displayedSettings.map { [.text($0.key), .text($0.value), .text($0.reloadable ? "yes" : "no")] })
        case .showServers:
            return AdminResult(rows: await serverRows())
        case .showPools:
            return AdminResult(rows: await poolRows())
        case .showClients:
            return AdminResult(rows: await clientRows())
        case .showStats:
            return AdminResult(rows: await statsRows())
        case .showSwitchover:
            return AdminResult(rows: switchovers.withLock { $0.history.map(\.row) })
        case .switchover(let options):
            return try await switchover(options, progress: progress)
        case .pause(let server):
            return try await pause(server)
        case .resume(let server):
            return try await resume(server)
        case .reload:
            return AdminResult(messages: try await reloadConfiguration())
        case .disable(let name):
            let server = try existingServer(name)
            guard server.role == .replica else {
                throw ErrorFields(severity: .error, code: SQLState.objectNotInPrerequisiteState,
                                  message: "cannot disable the primary \"\(name)\": writes have nowhere else to go",
                                  hint: "PAUSE \(name) holds new transactions instead.")
            }
            let changed = runtime.setDisabled(name, true)
            monitor.publish()
            return AdminResult(messages: [changed ? "server \"\(name)\" gets no new traffic; running transactions finish" : "server \"\(name)\" was already disabled"])
        case .enable(let name):
            _ = try existingServer(name)
            // The operator vouches that a replica held back after a switchover follows the new primary.
            let wasHeldBack = runtime.topology.followingFormerPrimary.contains(name)
            if wasHeldBack { runtime.changeTopology { $0.following(name) } }
            let changed = runtime.setDisabled(name, false) || wasHeldBack
            monitor.publish()
            return AdminResult(messages: [changed ? "server \"\(name)\" is back in rotation once its health checks pass" : "server \"\(name)\" was not disabled"])
        case .kill(let name):
            _ = try existingServer(name)
            let closed = await runtime.closeConnections(to: name)
            logger.notice("killed server connections", metadata: ["server": "\(name)", "connections": "\(closed)"])
            return AdminResult(messages: ["closed \(closed) connection\(closed == 1 ? "" : "s") to server \"\(name)\""])
        }
    }

    // MARK: SWITCHOVER

    /// Runs a switchover to its outcome. Refusals and aborts are errors (55000) whose detail is the
    /// report; a switch, or a passed dry run, answers with the report's row.
    private func switchover(_ options: AdminCommand.SwitchoverOptions, progress: @escaping @Sendable (String) -> Void) async throws -> AdminResult {
        guard switchovers.withLock({ state in defer { state.running = true }; return !state.running }) else {
            throw ErrorFields(severity: .error, code: SQLState.objectNotInPrerequisiteState, message: "a switchover is already running")
        }
        defer { switchovers.withLock { $0.running = false } }
        let request = SwitchoverStateMachine.Request(target: options.target, drainTimeout: options.timeout ?? runtime.configuration.switchover.drainTimeout,
                                                     dryRun: options.dryRun, force: options.force)
        let report = await Switchover(request, runtime: runtime, monitor: monitor, logger: logger, progress: progress).run()
        switchovers.withLock { $0.history.append(report) }
        runtime.metrics.switchoverFinished(report)
        let metadata: Logger.Metadata = ["outcome": "\(report.outcome.label)", "old_primary": "\(report.oldPrimary)", "target": "\(report.target)",
                                         "final_lsn": "\(report.finalLSN?.description ?? "")", "reached_lsn": "\(report.reachedLSN?.description ?? "")",
                                         "held_clients": "\(report.heldClients)", "total_ms": "\(Switchover.milliseconds(report.total))",
                                         "detail": "\(report.detail)"]
        switch report.outcome {
        case .switched(let warnings):
            if warnings.isEmpty { logger.notice("switchover done", metadata: metadata) } else { logger.error("switchover done, with warnings", metadata: metadata) }
            return AdminResult(rows: [report.row])
        case .dryRun:
            logger.notice("switchover dry run passed", metadata: metadata)
            return AdminResult(rows: [report.row])
        case .refused, .aborted:
            logger.warning("switchover did not happen; the old primary serves", metadata: metadata)
            throw ErrorFields(severity: .error, code: SQLState.objectNotInPrerequisiteState,
                              message: "switchover to \"\(options.target)\" \(report.outcome.label): \(report.detail)",
                              hint: "SHOW SWITCHOVER lists the attempt with its timings.")
        case .failed:
            logger.critical("switchover failed after the point of no return", metadata: metadata)
            throw ErrorFields(severity: .error, code: SQLState.internalError,
                              message: "switchover to \"\(options.target)\" failed: \(report.detail)",
                              hint: "Check the target; SHOW SERVERS shows the roles in force.")
        }
    }

    // MARK: PAUSE and RESUME

    /// Holds new transactions for `server` (or all), then waits for running ones to finish. On
    /// timeout the pause is withdrawn, so a stuck transaction cannot wedge the proxy.
    private func pause(_ server: String?) async throws -> AdminResult {
        if let server { _ = try existingServer(server) }
        let what = server.map { "server \"\($0)\"" } ?? "all servers"
        let target = PauseScope(everything: server == nil, servers: server.map { [$0] } ?? [])
        let state = runtime.updatePause { scope in
            if let server { scope.servers.insert(server) } else { scope.everything = true }
        }
        await runtime.broadcastPause(state)
        switch await runtime.waitUntilQuiet(target, within: runtime.configuration.pauseTimeout) {
        case .quiet:
            break
        case .withdrawn:
            throw ErrorFields(severity: .error, code: SQLState.queryCanceled, message: "PAUSE of \(what) was cancelled by RESUME")
        case .timedOut(let busy):
            let after = runtime.updatePause { scope in
                if let server { scope.servers.remove(server) } else { scope.everything = false }
            }
            await runtime.broadcastPause(after)
            throw ErrorFields(severity: .error, code: SQLState.queryCanceled,
                              message: "PAUSE of \(what) timed out after \(runtime.configuration.pauseTimeout): \(busy) transaction\(busy == 1 ? "" : "s") still running; traffic was resumed",
                              hint: "Raise pause_timeout, or look for long or idle-in-transaction clients (SHOW CLIENTS).")
        }
        return AdminResult(messages: ["\(what) paused: running transactions finished, new ones wait for RESUME"])
    }

    private func resume(_ server: String?) async throws -> AdminResult {
        if let server { _ = try existingServer(server) }
        let before = runtime.pause
        if server != nil, before.everything {
            throw ErrorFields(severity: .error, code: SQLState.objectNotInPrerequisiteState,
                              message: "all servers are paused; RESUME without a server name resumes them")
        }
        let state = runtime.updatePause { scope in
            if let server { scope.servers.remove(server) } else { scope = PauseScope() }
        }
        await runtime.broadcastPause(state)
        let wasPaused = server.map { before.covers($0) } ?? !before.isEmpty
        return AdminResult(messages: [wasPaused ? "resumed \(server.map { "server \"\($0)\"" } ?? "all servers")" : "nothing was paused"])
    }

    // MARK: SHOW

    private func existingServer(_ name: String) throws -> ServerDefinition {
        guard let server = runtime.topology.servers.first(where: { $0.name == name }) else {
            let known = runtime.topology.servers.map(\.name).joined(separator: ", ")
            throw ErrorFields(severity: .error, code: SQLState.undefinedObject, message: "no server named \"\(name)\"",
                              detail: "Configured servers: \(known).")
        }
        return server
    }

    private func serverRows() async -> [[ColumnValue]] {
        let pools = await runtime.snapshots().flatMap(\.pools)
        let statuses = monitor.snapshot
        let disabled = runtime.disabledServers
        let paused = runtime.pause
        let topology = runtime.topology
        return topology.servers.map { server in
            let status = statuses[server.name]
            let mine = pools.filter { $0.key.server == server.name }
            let lag = status?.health?.lastProbe
            return [
                .text(server.name), .text(server.role.rawValue), .text(server.host), .integer(Int64(server.port)),
                .text(topology.fenced.contains(server.name) ? "fenced (former primary)"
                      : topology.followingFormerPrimary.contains(server.name) ? "out of rotation: streams from the former primary (ENABLE once it follows the new one)"
                      : Self.state(of: server, status: status, disabled: disabled.contains(server.name), paused: paused.covers(server.name),
                                   inRecovery: topology.primaryState == .inRecovery)),
                lag?.lagBytes.map { .integer($0) } ?? .null, lag.map { .double($0.lagSeconds) } ?? .null,
                .integer(Int64(mine.reduce(0) { $0 + $1.leased })), .integer(Int64(mine.reduce(0) { $0 + $1.idle })),
                .integer(Int64(server.weight)), status?.lastError.map { .text($0) } ?? .null,
                lag?.replayPosition.map { .text($0.description) } ?? .null,
            ]
        }
    }

    static func state(of server: ServerDefinition, status: ReplicaMonitor.ServerStatus?, disabled: Bool, paused: Bool,
                      inRecovery: Bool = false) -> String {
        if disabled { return "disabled" }
        if paused { return "paused" }
        guard let status, status.probed else { return "unchecked" }
        if let health = status.health {
            return health.isEligible ? "in rotation" : "out of rotation: \(health.reason)"
        }
        if server.role == .primary, status.lastError == nil, inRecovery { return "in recovery (not writable)" }
        return status.lastError == nil ? "up" : "down"
    }

    private func poolRows() async -> [[ColumnValue]] {
        let poolSize = runtime.configuration.poolSize
        var merged: [PoolKey: PoolSnapshot] = [:]
        for pool in await runtime.snapshots().flatMap(\.pools) {
            guard var sum = merged[pool.key] else { merged[pool.key] = pool; continue }
            sum.leased += pool.leased; sum.idle += pool.idle; sum.connecting += pool.connecting
            sum.waiting += pool.waiting; sum.paused += pool.paused
            sum.longestWait = max(sum.longestWait, pool.longestWait)
            merged[pool.key] = sum
        }
        return merged.values.sorted { ($0.key.database, $0.key.user, $0.key.server) < ($1.key.database, $1.key.user, $1.key.server) }.map { pool in
            [.text(pool.key.database), .text(pool.key.user), .text(pool.key.server), .integer(Int64(pool.leased)),
             .integer(Int64(pool.waiting)), .integer(Int64(pool.paused)), .integer(Int64(pool.leased)), .integer(Int64(pool.idle)),
             .integer(Int64(pool.connecting)), .double(pool.longestWait.milliseconds), .integer(Int64(poolSize))]
        }
    }

    private func clientRows() async -> [[ColumnValue]] {
        await runtime.snapshots().flatMap(\.clients).sorted { $0.connectedFor > $1.connectedFor }.map { client in
            [client.id.map { .integer(Int64($0)) } ?? .null, client.user.map(ColumnValue.text) ?? .null,
             client.database.map(ColumnValue.text) ?? .null, .text(client.address), .text(client.state.rawValue),
             client.server.map(ColumnValue.text) ?? .null, client.applicationName.map(ColumnValue.text) ?? .null,
             .double(client.connectedFor.milliseconds / 1000), client.readConsistency.map(ColumnValue.text) ?? .null,
             client.lastWrite.map(ColumnValue.text) ?? .null]
        }
    }

    private func statsRows() async -> [[ColumnValue]] {
        var byServer: [String: PoolTraffic] = [:]
        for pool in await runtime.snapshots().flatMap(\.pools) {
            byServer[pool.key.server, default: PoolTraffic()].add(pool.traffic)
        }
        return runtime.topology.servers.map { server in
            let traffic = byServer[server.name] ?? PoolTraffic()
            func average(_ nanoseconds: Int, _ count: Int) -> ColumnValue {
                count == 0 ? .null : .double(Double(nanoseconds) / Double(count) / 1_000_000)
            }
            let p99: ColumnValue = traffic.queries == 0 ? .null : .double(Double(traffic.queryMicroseconds.valueAtPercentile(99)) / 1000)
            return [.text(server.name), .text(server.role.rawValue), .integer(Int64(traffic.queries)), .integer(Int64(traffic.transactions)),
                    .integer(Int64(traffic.bytesReceived)), .integer(Int64(traffic.bytesSent)),
                    average(traffic.queryNanoseconds, traffic.queries), p99,
                    average(traffic.transactionNanoseconds, traffic.transactions),
                    .integer(Int64(traffic.waits)), average(traffic.waitNanoseconds, traffic.waits)]
        }
    }
}

extension TimeAmount {
    var milliseconds: Double { Double(nanoseconds) / 1_000_000 }
}
