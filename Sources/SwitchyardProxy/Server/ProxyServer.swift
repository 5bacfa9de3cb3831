import Logging
import NIOSSL
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The listening proxy: binds the client port, gives each connection a ``ClientSession`` on the
/// loop it was accepted on, and drains on graceful shutdown (SIGTERM): no new clients, open
/// transactions may finish within `shutdown_timeout`, then everything closes.
public final class ProxyServer: Service, Sendable {
    let runtime: ProxyRuntime
    private let group: MultiThreadedEventLoopGroup
    private let listener = Mutex<Channel?>(nil)
    let monitor: ReplicaMonitor
    private let monitorTask = Mutex<Task<Void, Never>?>(nil)
    private let metricsServer = Mutex<MetricsHTTPServer?>(nil)
    private let console = Mutex<AdminConsole?>(nil)
    /// What every pool shares and RELOAD may not change (TLS to servers, the password cache).
    private let tlsPolicy: BackendStartupStateMachine.TLSPolicy
    private let tlsContext: NIOSSLContext?
    private let saltedPasswordCache = SaltedPasswordCache()
    /// One RELOAD at a time.
    let reloading = Mutex<Bool>(false)
    /// Where RELOAD applies `log_level`; nil when the process's logging does not follow it.
    let logLevel: LogLevelSwitch?

    /// - Parameter logLevel: the switch the process's log handlers read, so RELOAD can change `log_level`.
    public init(configuration: ProxyConfiguration, logLevel: LogLevelSwitch? = nil, logger: Logger) throws {
        self.logLevel = logLevel
        let runtime = try ProxyRuntime(configuration: configuration, logger: logger)
        // Each loop needs at least one connection of every pool, so never more loops than pool_size.
        let threads = min(configuration.workerThreads, configuration.poolSize)
        if threads < configuration.workerThreads {
            logger.notice("running fewer worker threads than configured: each needs a share of pool_size",
                          metadata: ["worker_threads": "\(threads)", "pool_size": "\(configuration.poolSize)"])
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        self.runtime = runtime
        self.group = group
        let loops = Array(group.makeIterator())
        (tlsPolicy, tlsContext) = try ProxyRuntime.makeServerTLSContext(configuration.serverTLS)
        monitor = ReplicaMonitor(runtime: runtime, eventLoop: loops[0], logger: logger)
        let shards = loops.enumerated().map { index, loop in
            PoolShard(eventLoop: loop, configuration: configuration,
                      settings: poolSettings(configuration, loop: index, of: loops.count), runtime: runtime, logger: logger)
        }
        runtime.installShards(shards)
        let reload: @Sendable () async throws -> [String] = { [weak self] in
            guard let self else { return [] }
            return try await self.reload()
        }
        console.withLock { $0 = AdminConsole(runtime: runtime, monitor: monitor, reload: reload, logger: logger) }
    }

    /// The pool settings of loop `index`: its share of pool_size (the first loops take the remainder).
    func poolSettings(_ configuration: ProxyConfiguration, loop index: Int, of loops: Int) -> PoolSettings {
        let share = configuration.poolSize / loops + (index < configuration.poolSize % loops ? 1 : 0)
        return PoolSettings(
            maximumConnectionsPerLoop: max(1, share),
            connectTimeout: TimeAmount(configuration.connectTimeout),
            queryWaitTimeout: configuration.queryWaitTimeout.map(TimeAmount.init),
            serverIdleTimeout: configuration.serverIdleTimeout.map(TimeAmount.init),
            tlsPolicy: tlsPolicy, tlsContext: tlsContext, saltedPasswordCache: saltedPasswordCache)
    }

    /// Binds the listening socket and returns its address (port 0 picks a free port).
    @discardableResult
    public func start() async throws -> SocketAddress {
        let runtime = self.runtime
        let configuration = runtime.configuration
        let console = self.console.withLock { $0 }
        // Before the first client: a switchover this process did not finish is settled, one way or the other.
        await SwitchoverRecovery.resolve(runtime, logger: runtime.logger)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            // A client's FIN is an event, not a close: what it sent before it still runs, as in Postgres
            // (ClientSession.userInboundEventTriggered).
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            // Each channel keeps its receive buffers for reuse: start clients' small (they mostly send short
            // statements, and thousands sit idle), and let a busy client's grow as its reads fill them.
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 65536))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let shard = runtime.shard(for: channel.eventLoop)
                    let session = ClientSession(runtime: runtime, shard: shard, console: console, logger: runtime.logger)
                    try channel.pipeline.syncOperations.addHandler(session)
                }
            }
            .bind(host: configuration.listenAddress, port: configuration.listenPort)
            .get()
        listener.withLock { $0 = channel }
        if let port = configuration.metricsPort {
            do {
                let server = try await MetricsHTTPServer.start(
                    host: configuration.metricsAddress, port: port, group: group, logger: runtime.logger,
                    respond: { [weak self] path in await self?.answerMetricsRequest(path) ?? .init(status: .serviceUnavailable, body: []) })
                metricsServer.withLock { $0 = server }
                runtime.logger.info("metrics listening", metadata: ["address": "\(server.localAddress.map { "\($0)" } ?? "?")"])
            } catch {
                try? await channel.close()
                throw error
            }
        }
        let monitor = self.monitor
        monitorTask.withLock { $0 = Task { await monitor.run() } }
        let address = channel.localAddress!
        runtime.logger.info("Switchyard listening", metadata: [
            "address": "\(address)", "pool_mode": "\(configuration.poolMode.rawValue)",
            "primary": "\(runtime.topology.primary.name) \(runtime.topology.primary.host):\(runtime.topology.primary.port)",
        ])
        return address
    }

    public var localAddress: SocketAddress? { listener.withLock { $0?.localAddress } }

    /// Where the metrics endpoint listens; nil when `metrics_port` is 0.
    public var metricsAddress: SocketAddress? { metricsServer.withLock { $0?.localAddress } }

    /// Stops accepting, lets open transactions finish for up to `timeout`, then closes everything.
    public func drain(timeout: Duration) async {
        runtime.startDraining()
        let monitor = monitorTask.withLock { task in defer { task = nil }; return task }
        monitor?.cancel()
        let listener = self.listener.withLock { $0 }
        try? await listener?.close()
        // Work held by PAUSE is let go, to be refused as shutting down rather than held past the deadline.
        _ = runtime.updatePause { $0 = PauseScope() }
        await runtime.broadcastPause(PauseScope())
        runtime.logger.info("draining", metadata: ["clients": "\(runtime.clientCount)", "timeout": "\(timeout)"])
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var open = 0
            for shard in runtime.allShards {
                open += (try? await shard.eventLoop.submit { shard.closeIdleSessions(); return shard.sessionCount }.get()) ?? 0
            }
            if open == 0 { break }
            try? await Task.sleep(for: .milliseconds(50))
        }
        for shard in runtime.allShards {
            try? await shard.eventLoop.submit { shard.closeAllSessions() }.get()
        }
        // Its connections must be closed before the event loops go away; a hung probe gets 2 s. Not a
        // task group: leaving one waits for every child, and `monitor.value` ignores cancellation.
        if let monitor, !(await Self.finishes(monitor, within: .seconds(2))) {
            runtime.logger.warning("the health monitor did not stop within 2 s of the drain; shutting down without it")
        }
        await metricsServer.withLock { server in defer { server = nil }; return server }?.close()
        console.withLock { $0 = nil }
        runtime.logger.info("drained")
    }

    /// Whether `task` ends within `limit`; returns at the limit either way.
    static func finishes(_ task: Task<Void, Never>, within limit: Duration) async -> Bool {
        let resumed = Mutex<CheckedContinuation<Bool, Never>?>(nil)
        return await withCheckedContinuation { continuation in
            resumed.withLock { $0 = continuation }
            let finish: @Sendable (Bool) -> Void = { value in resumed.withLock { $0.take() }?.resume(returning: value) }
            Task { await task.value; finish(true) }
            Task { try? await Task.sleep(for: limit); finish(false) }
        }
    }

    public func shutdownEventLoops() async {
        try? await group.shutdownGracefully()
    }

    /// Service entry point: serve until graceful shutdown, then drain.
    public func run() async throws {
        try await start()
        try? await gracefulShutdown()
        await drain(timeout: runtime.configuration.shutdownTimeout)
        await shutdownEventLoops()
    }
}
