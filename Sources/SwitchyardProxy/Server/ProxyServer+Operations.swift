import Logging
import NIOCore
import NIOPosix
import PostgresWire

extension ProxyServer {
    /// Re-reads the configuration file (RELOAD, SIGHUP) without dropping clients: added servers
    /// join, removed or changed ones drain, pool sizes and timeouts apply, users and passwords
    /// are replaced. An invalid file changes nothing. Returns what changed, for the operator.
    /// - Throws: ``ErrorFields`` (SQLSTATE F0000) naming the problems when the file is rejected.
    public func reload() async throws -> [String] {
        let logger = runtime.logger
        guard reloading.withLock({ busy in defer { busy = true }; return !busy }) else {
            throw ErrorFields(severity: .error, code: SQLState.objectNotInPrerequisiteState, message: "a reload is already running")
        }
        defer { reloading.withLock { $0 = false } }
        let old = runtime.configuration
        guard let path = old.sourcePath else {
            throw ErrorFields(severity: .error, code: SQLState.configFileError,
                              message: "this proxy was not started from a configuration file; nothing to reload")
        }
        let candidate: ProxyConfiguration
        let credentials: ClientCredentialStore
        do {
            candidate = try ProxyConfiguration.load(path: path)
            credentials = try ClientCredentialStore(configuration: candidate)
        } catch {
            runtime.metrics.failedReloads.increment()
            logger.error("configuration reload rejected; the previous configuration stays in force",
                         metadata: ["file": "\(path)", "error": "\(error)"])
            throw ErrorFields(severity: .error, code: SQLState.configFileError,
                              message: "configuration rejected; the previous configuration stays in force",
                              detail: "\(error)")
        }
        let (configuration, ignored) = old.reloaded(from: candidate)
        guard let topology = runtime.replaceConfiguration(configuration, credentials: credentials) else {
            runtime.metrics.failedReloads.increment()
            let inForce = runtime.topology.primary.name
            logger.error("configuration reload rejected: it names another primary than the one a switchover put in force",
                         metadata: ["file": "\(path)", "primary_in_force": "\(inForce)", "primary_in_file": "\(configuration.primary.name)"])
            throw ErrorFields(severity: .error, code: SQLState.configFileError,
                              message: "configuration rejected: it names \"\(configuration.primary.name)\" as primary, but a switchover made \"\(inForce)\" the primary; the previous configuration stays in force",
                              hint: "Give \(inForce) role=primary in [servers] (and the former primary role=standby), then RELOAD.")
        }
        // Passwords may have changed along with the file: auth_query asks the server afresh.
        runtime.roleSecrets.removeAll()
        let shards = runtime.allShards.sorted { ObjectIdentifier($0.eventLoop) < ObjectIdentifier($1.eventLoop) }
        for (index, shard) in shards.enumerated() {
            let settings = poolSettings(configuration, loop: index, of: shards.count)
            try? await shard.eventLoop.submit { shard.apply(configuration, settings: settings, topology: topology) }.get()
        }
        for name in runtime.disabledServers where !configuration.servers.contains(where: { $0.name == name }) {
            _ = runtime.setDisabled(name, false)
        }
        monitor.reconfigure(configuration)
        runtime.metrics.reloads.increment()

        let oldNames = Set(old.servers.map(\.name)), newNames = Set(configuration.servers.map(\.name))
        let added = newNames.subtracting(oldNames).sorted(), removed = oldNames.subtracting(newNames).sorted()
        let changed = configuration.servers.filter { server in old.servers.contains { $0.name == server.name && $0 != server } }.map(\.name)
        var changes: [String] = []
        if !added.isEmpty { changes.append("servers added: \(added.joined(separator: ", "))") }
        if !removed.isEmpty { changes.append("servers removed (their running transactions finish): \(removed.joined(separator: ", "))") }
        if !changed.isEmpty { changes.append("servers changed (old connections drain): \(changed.joined(separator: ", "))") }
        if old.authQuery != configuration.authQuery { changes.append("auth_query settings changed") }
        if old.poolSize != configuration.poolSize { changes.append("pool_size \(old.poolSize) -> \(configuration.poolSize)") }
        if old.logLevel != configuration.logLevel {
            logLevel?.level = Logger.Level(rawValue: configuration.logLevel) ?? .info
            changes.append("log_level \(old.logLevel) -> \(configuration.logLevel)")
        }
        if !ignored.isEmpty { changes.append("needs a restart, kept the running value: \(ignored.joined(separator: ", "))") }
        if changes.isEmpty { changes.append("configuration reloaded; no server or pool changes") }
        logger.notice("configuration reloaded", metadata: [
            "file": "\(path)", "changes": "\(changes.joined(separator: "; "))",
        ])
        return changes
    }

    /// What the metrics port answers: `/metrics` (Prometheus text), `/healthz` (the process is up)
    /// and `/readyz` (the primary is reachable and not paused).
    func answerMetricsRequest(_ path: String) async -> MetricsHTTPServer.Reply {
        switch path {
        case "/metrics":
            return .init(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: await scrapeMetrics())
        case "/healthz":
            return .init(status: .ok, body: Array("ok\n".utf8))
        case "/readyz":
            if let problem = await readinessProblem() {
                return .init(status: .serviceUnavailable, body: Array("not ready: \(problem)\n".utf8))
            }
            return .init(status: .ok, body: Array("ready\n".utf8))
        default:
            return .init(status: .notFound, body: Array("not found; try /metrics, /healthz or /readyz\n".utf8))
        }
    }

    /// Why the proxy should not get traffic now, or nil when it should.
    func readinessProblem() async -> String? {
        if runtime.isDraining { return "shutting down" }
        let topology = runtime.topology
        let primary = topology.primary
        if runtime.pause.covers(primary.name) { return "paused" }
        if topology.primaryState == .inRecovery { return "primary \"\(primary.name)\" is in recovery (a standby): writes would fail" }
        if runtime.configuration.routing.healthCheckUser != nil {
            guard let status = monitor.snapshot[primary.name], status.probed else { return "primary not checked yet" }
            return status.lastError.map { "primary \"\(primary.name)\" unreachable: \($0)" }
        }
        // No health checks configured: at least the primary's port must answer.
        do {
            let channel = try await ClientBootstrap(group: runtime.allShards[0].eventLoop)
                .connectTimeout(TimeAmount(runtime.configuration.connectTimeout))
                .connect(host: primary.host, port: primary.port).get()
            try? await channel.close()
            return nil
        } catch {
            return "primary \"\(primary.name)\" unreachable: \(error)"
        }
    }

    /// Publishes the loops' counts and sets the gauges, then renders the registry.
    func scrapeMetrics() async -> [UInt8] {
        let metrics = runtime.metrics
        let snapshots = await runtime.snapshots(publishingMetrics: true)
        let clients = snapshots.flatMap(\.clients)
        for state in ClientSnapshot.State.allCases {
            metrics.gauge("switchyard_clients", [("state", state.rawValue)], Double(clients.filter { $0.state == state }.count))
        }
        let budget = runtime.memoryBudget
        metrics.gauge("switchyard_buffered_bytes", [], Double(budget.used))
        metrics.gauge("switchyard_buffered_bytes_peak", [], Double(budget.peak))
        metrics.gauge("switchyard_buffered_bytes_retained", [], Double(budget.retained))
        metrics.gauge("switchyard_max_buffered_bytes", [], Double(budget.limit))
        let counts = budget.takeCounts()
        metrics.bufferWaits.increment(by: counts.waits)
        metrics.bufferRefusals.increment(by: counts.refusals)
        let pools = snapshots.flatMap(\.pools)
        let statuses = monitor.snapshot
        let disabled = runtime.disabledServers
        let pause = runtime.pause
        for server in runtime.topology.servers {
            let mine = pools.filter { $0.key.server == server.name }
            func total(_ count: (PoolSnapshot) -> Int) -> Double { Double(mine.reduce(0) { $0 + count($1) }) }
            let labels = [("server", server.name), ("route", server.role.rawValue)]
            metrics.gauge("switchyard_server_connections", labels + [("state", "active")], total(\.leased))
            metrics.gauge("switchyard_server_connections", labels + [("state", "idle")], total(\.idle))
            metrics.gauge("switchyard_server_connections", labels + [("state", "connecting")], total(\.connecting))
            metrics.gauge("switchyard_pool_waiting_clients", labels, total(\.waiting))
            metrics.gauge("switchyard_paused_clients", labels, total(\.paused))
            metrics.gauge("switchyard_pool_longest_wait_seconds", labels, (mine.map(\.longestWait.milliseconds).max() ?? 0) / 1000)
            let status = statuses[server.name]
            let up = status.map { $0.probed && $0.lastError == nil } ?? false
            metrics.gauge("switchyard_server_up", labels, up ? 1 : 0)
            metrics.gauge("switchyard_server_paused", labels, pause.covers(server.name) ? 1 : 0)
            if server.role == .replica {
                let inRotation = !disabled.contains(server.name) && status?.health?.isEligible == true
                metrics.gauge("switchyard_replica_in_rotation", labels, inRotation ? 1 : 0)
                if let probe = status?.health?.lastProbe {
                    if let bytes = probe.lagBytes { metrics.gauge("switchyard_replica_lag_bytes", labels, Double(bytes)) }
                    metrics.gauge("switchyard_replica_lag_seconds", labels, probe.lagSeconds)
                }
            }
        }
        return metrics.render()
    }
}
