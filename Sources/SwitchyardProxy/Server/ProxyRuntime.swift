import Logging
import NIOCore
import NIOSSL
import PostgresWire
import Synchronization

/// What every session shares: the configuration, credentials, TLS contexts, the per-loop pool
/// shards and a few process-wide counters.
final class ProxyRuntime: Sendable {
    /// How long a client may take to start up and authenticate (Postgres' authentication_timeout).
    static let loginTimeout: TimeAmount = .seconds(60)

    let configuration: ProxyConfiguration
    let credentials: ClientCredentialStore
    let clientTLSContext: NIOSSLContext?
    let logger: Logger
    let cancelRegistry = CancelRegistry()
    let counters = ProxyCounters()
    let parameterSync: ParameterSync
    let idleTransactionTimeout: TimeAmount?
    private let shardsByLoop = Mutex<[ObjectIdentifier: PoolShard]>([:])
    private let clients = Atomic<Int>(0)
    private let draining = Atomic<Bool>(false)

    init(configuration: ProxyConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        self.credentials = try ClientCredentialStore(configuration: configuration)
        self.clientTLSContext = try Self.makeClientTLSContext(configuration.clientTLS)
        self.idleTransactionTimeout = configuration.idleTransactionTimeout.map(TimeAmount.init)
        self.parameterSync = ParameterSync(extraNames: configuration.trackedParameters)
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

    var isDraining: Bool { draining.load(ordering: .relaxed) }
    func startDraining() { draining.store(true, ordering: .relaxed) }

    /// Counts a client against `max_client_conn`; false when the limit is reached.
    func admitClient() -> Bool {
        let count = clients.add(1, ordering: .relaxed).newValue
        if count > configuration.maxClientConnections {
            clients.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func clientLeft() { clients.subtract(1, ordering: .relaxed) }

    var clientCount: Int { clients.load(ordering: .relaxed) }

    static func makeClientTLSContext(_ tls: ClientTLSConfiguration) throws -> NIOSSLContext? {
        guard tls.mode != .disable, let certificateFile = tls.certificateFile, let keyFile = tls.keyFile else { return nil }
        let certificates = try NIOSSLCertificate.fromPEMFile(certificateFile)
        let key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        let configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: certificates.map { .certificate($0) }, privateKey: .privateKey(key))
        return try NIOSSLContext(configuration: configuration)
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

/// Process-wide event counts, kept as relaxed atomics: read rarely (metrics), bumped on cold paths.
final class ProxyCounters: Sendable {
    /// Statements a replica refused with 25006 and that were re-run on the primary.
    let readOnlyRetries = Atomic<Int>(0)
    /// Reads re-run elsewhere because their replica failed before answering.
    let replicaFailureRetries = Atomic<Int>(0)
    /// Reads sent to the primary because no replica was eligible.
    let replicaFallbacks = Atomic<Int>(0)
}
