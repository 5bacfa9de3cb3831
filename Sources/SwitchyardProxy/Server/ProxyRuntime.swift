import Logging
import NIOCore
import NIOSSL
import PostgresWire
import Synchronization

/// What every session shares: the configuration in force, credentials, TLS contexts, the per-loop
/// pool shards, operator state (disabled servers, pause) and the metrics.
///
/// Sessions read the configuration from their ``PoolShard`` (a loop-confined copy, no lock);
/// the copy here, behind a lock, is for the cold paths: admin console, health monitor, reload.
final class ProxyRuntime: Sendable {
    /// How long a client may take to start up and authenticate (Postgres' authentication_timeout).
    static let loginTimeout: TimeAmount = .seconds(60)

    /// Fixed for the life of the process: sessions branch on it per message.
    let poolMode: PoolMode
    let clientTLSContext: NIOSSLContext?
    /// RFC 5929 tls-server-end-point data of the certificate clients see, for SCRAM-SHA-256-PLUS;
    /// nil without TLS or when the certificate's signature hash isn't one we can compute.
    let clientTLSServerEndPoint: [UInt8]?
    /// auth_query lookups and their cache.
    let roleSecrets: RoleSecretLookup
    let logger: Logger
    let cancelRegistry = CancelRegistry()
    let metrics: ProxyMetrics
    let parameterSync: ParameterSync
    /// Read-your-writes: each database's write watermark.
    let databaseWatermarks = DatabaseWatermarks()
    /// Bytes held for clients, process-wide (`max_buffered_bytes`).
    let memoryBudget: MemoryBudget
    private let current: Mutex<(configuration: ProxyConfiguration, credentials: ClientCredentialStore)>
    private let shardsByLoop = Mutex<[ObjectIdentifier: PoolShard]>([:])
    private let clients = Atomic<Int>(0)
    private let maxClients: Atomic<Int>
    private let draining = Atomic<Bool>(false)
    /// Servers an operator took out of rotation with DISABLE.
    private let disabled = Mutex<Set<String>>([])
    /// What PAUSE holds (the shards carry copies).
    private let pauseState = Mutex(PauseScope())
    /// The servers with the roles in force (the shards carry copies).
    private let topologyState: Mutex<Topology>

    init(configuration: ProxyConfiguration, metrics: ProxyMetrics = ProxyMetrics(), logger: Logger) throws {
        self.poolMode = configuration.poolMode
        self.logger = logger
        self.metrics = metrics
        self.current = Mutex((configuration, try ClientCredentialStore(configuration: configuration)))
        self.topologyState = Mutex(try Self.startingTopology(configuration, logger: logger))
        self.maxClients = Atomic(configuration.maxClientConnections)
        self.memoryBudget = MemoryBudget(limit: configuration.maxBufferedBytes)
        (self.clientTLSContext, self.clientTLSServerEndPoint) = try Self.makeClientTLSContext(configuration.clientTLS)
        self.roleSecrets = RoleSecretLookup(logger: logger)
        self.parameterSync = ParameterSync(extraNames: configuration.trackedParameters)
        if clientTLSContext != nil, clientTLSServerEndPoint == nil {
            logger.notice("SCRAM-SHA-256-PLUS is not offered: no tls-server-end-point hash for the signature algorithm of client_tls_cert_file")
        }
    }

    var configuration: ProxyConfiguration { current.withLock { $0.configuration } }
    var credentials: ClientCredentialStore { current.withLock { $0.credentials } }

    /// The servers and roles in force: read this, not the configuration's `[servers]`.
    var topology: Topology { topologyState.withLock { $0 } }

    /// Changes the topology (the health monitor, a switchover) and gives every loop the new one.
    /// Returns the topology in force afterwards.
    @discardableResult
    func changeTopology(_ change: (Topology) -> Topology) -> Topology {
        let (changed, topology) = topologyState.withLock { current -> (Bool, Topology) in
            let next = change(current)
            defer { current = next }
            return (next != current, next)
        }
        if changed {
            for shard in allShards { shard.eventLoop.execute { shard.topologyChanged(topology) } }
        }
        return topology
    }

    /// The configuration's servers, unless `state_file` records a switchover: then its primary is in
    /// force and the former primaries stay fenced.
    static func startingTopology(_ configuration: ProxyConfiguration, logger: Logger) throws -> Topology {
        let fromFile = Topology(servers: configuration.servers)
        guard let path = configuration.switchover.stateFile, let state = try SwitchoverStateFile.read(path) else { return fromFile }
        guard let topology = fromFile.resumed(primary: state.primary, fenced: Set(state.fenced)) else {
            throw ConfigurationError(issues: [.init(file: path, line: nil, key: "state_file",
                message: "state_file names primary '\(state.primary)', which is not in [servers]; add it, or delete the file once the primary in the configuration is known to be right")])
        }
        if topology.primary.name != configuration.primary.name {
            logger.notice("state_file records a switchover: its primary is in force, not the one in the configuration file", metadata: [
                "state_file": "\(path)", "primary": "\(topology.primary.name)", "fenced": "\(topology.fenced.sorted())",
            ])
        }
        return topology
    }

    /// Installs a reloaded configuration (the shards get theirs separately, on their loops, with
    /// the topology this returns). Nil, and nothing changes, when the file names another primary than
    /// the one a switchover put in force.
    func replaceConfiguration(_ configuration: ProxyConfiguration, credentials: ClientCredentialStore) -> Topology? {
        let topology = topologyState.withLock { topology -> Topology? in
            guard let next = topology.reloaded(configuration.servers) else { return nil }
            topology = next
            return next
        }
        guard let topology else { return nil }
        current.withLock { $0 = (configuration, credentials) }
        maxClients.store(configuration.maxClientConnections, ordering: .relaxed)
        memoryBudget.setLimit(configuration.maxBufferedBytes)
        return topology
    }

    var disabledServers: Set<String> { disabled.withLock { $0 } }

    /// Returns whether anything changed.
    func setDisabled(_ server: String, _ isDisabled: Bool) -> Bool {
        disabled.withLock { set in isDisabled ? set.insert(server).inserted : set.remove(server) != nil }
    }

    var pause: PauseScope { pauseState.withLock { $0 } }

    /// Changes the pause scope; returns the new one.
    func updatePause(_ change: (inout PauseScope) -> Void) -> PauseScope {
        pauseState.withLock { scope in
            change(&scope)
            return scope
        }
    }

    func installShards(_ shards: [PoolShard]) {
        shardsByLoop.withLock { map in
            for shard in shards { map[ObjectIdentifier(shard.eventLoop)] = shard }
        }
    }

    func shard(for eventLoop: EventLoop) -> PoolShard {
        shardsByLoop.withLock { $0[ObjectIdentifier(eventLoop)]! }
    }

    var allShards: [PoolShard] { shardsByLoop.withLock { Array($0.values) } }

    /// Every loop's pools and clients, each read on its own loop. With `publishingMetrics`, each
    /// loop first adds what its pools counted since the last scrape to the Prometheus counters.
    func snapshots(publishingMetrics: Bool = false) async -> [ShardSnapshot] {
        var snapshots: [ShardSnapshot] = []
        for shard in allShards {
            let snapshot = try? await shard.eventLoop.submit {
                if publishingMetrics { shard.publishMetrics() }
                return shard.snapshot(now: .now())
            }.get()
            if let snapshot { snapshots.append(snapshot) }
        }
        return snapshots
    }

    /// Closes the idle server connections to `database` on every loop (before DROP DATABASE and the
    /// like, which Postgres refuses while other sessions are connected). Completes on `eventLoop`
    /// with how many were closed.
    func closeIdleServerConnections(database: String, on eventLoop: EventLoop) -> EventLoopFuture<Int> {
        let closing = allShards.map { shard in shard.eventLoop.submit { shard.closeIdleConnections(database: database) } }
        return EventLoopFuture.whenAllComplete(closing, on: eventLoop).map { results in
            results.reduce(0) { $0 + ((try? $1.get()) ?? 0) }
        }
    }

    /// KILL, and a switchover's fence: closes every connection to `server` on every loop, busy ones
    /// too; returns how many.
    func closeConnections(to server: String) async -> Int {
        var closed = 0
        for shard in allShards {
            closed += (try? await shard.eventLoop.submit { shard.closeConnections(to: server) }.get()) ?? 0
        }
        return closed
    }

    /// Gives every loop the new pause scope; held work that is no longer covered goes ahead.
    func broadcastPause(_ scope: PauseScope) async {
        for shard in allShards {
            try? await shard.eventLoop.submit { shard.setPause(scope) }.get()
        }
    }

    /// Waits until no loop runs work for `scope`: each loop's pools push the end of their work,
    /// nothing polls. Ends early when the pause is withdrawn; on timeout, says how many are busy.
    func waitUntilQuiet(_ scope: PauseScope, within timeout: Duration) async -> QuietWaitOutcome {
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        var busy = 0
        for shard in allShards {
            let outcome = try? await shard.eventLoop.flatSubmit { shard.whenQuiet(scope, deadline: deadline) }.get()
            switch outcome ?? .quiet {
            case .quiet: continue
            case .withdrawn: return .withdrawn
            case .timedOut(let count): busy += count
            }
        }
        // Loops asked after the deadline answer at once, with their own count.
        return busy > 0 ? .timedOut(busy: busy) : .quiet
    }

    var isDraining: Bool { draining.load(ordering: .relaxed) }
    func startDraining() { draining.store(true, ordering: .relaxed) }

    /// Counts a client against `max_client_conn`; false when the limit is reached.
    func admitClient() -> Bool {
        let count = clients.add(1, ordering: .relaxed).newValue
        if count > maxClients.load(ordering: .relaxed) {
            clients.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func clientLeft() { clients.subtract(1, ordering: .relaxed) }

    var clientCount: Int { clients.load(ordering: .relaxed) }

    /// The TLS context for clients, and the channel binding data of the certificate it presents
    /// (the first in the file: the leaf, which is what clients hash).
    static func makeClientTLSContext(_ tls: ClientTLSConfiguration) throws -> (NIOSSLContext?, [UInt8]?) {
        guard tls.mode != .disable, let certificateFile = tls.certificateFile, let keyFile = tls.keyFile else { return (nil, nil) }
        let certificates = try NIOSSLCertificate.fromPEMFile(certificateFile)
        let endPoint = try certificates.first.flatMap { TLSServerEndPoint.bindingData(certificateDER: try $0.toDERBytes()) }
        let key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        let configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: certificates.map { .certificate($0) }, privateKey: .privateKey(key))
        return (try NIOSSLContext(configuration: configuration), endPoint)
    }

    static func makeServerTLSContext(_ tls: ServerTLSConfiguration) throws -> (BackendStartupStateMachine.TLSPolicy, NIOSSLContext?) {
        var configuration = TLSConfiguration.makeClientConfiguration()
        let policy: BackendStartupStateMachine.TLSPolicy
        switch tls.mode {
        case .disable: return (.disable, nil)
        case .prefer: policy = .prefer; configuration.certificateVerification = .none
        case .require: policy = .require; configuration.certificateVerification = .none
        case .verifyCA: policy = .require; configuration.certificateVerification = .noHostnameVerification
        case .verifyFull: policy = .require; configuration.certificateVerification = .fullVerification
        }
        if let caFile = tls.caFile {
            configuration.trustRoots = .file(caFile)
        }
        return (policy, try NIOSSLContext(configuration: configuration))
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
