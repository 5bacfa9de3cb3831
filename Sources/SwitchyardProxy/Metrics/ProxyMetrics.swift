import Metrics
import Prometheus
import Synchronization

/// Switchyard's metrics, through the swift-metrics API into one Prometheus registry per proxy
/// (not the process-wide bootstrap, so several proxies in one test process stay apart).
///
/// Counters that the relay bumps per message live in ``PoolTraffic`` (plain integers on the
/// pool's loop) and are published here at scrape time; only per-query durations are recorded
/// directly, once per query. Gauges (clients, connections, lag) are set at scrape time from
/// snapshots. The cache and switchover metrics will join as more `switchyard_*` families.
public final class ProxyMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    private let servers = Mutex<[String: ServerMetrics]>([:])
    /// Statements a replica refused with 25006 and that were re-run on the primary.
    let readOnlyRetries: Metrics.Counter
    /// Reads re-run elsewhere because their replica failed before answering.
    let replicaFailureRetries: Metrics.Counter
    /// Reads sent to the primary because no replica was eligible.
    let replicaFallbacks: Metrics.Counter
    let reloads: Metrics.Counter
    let failedReloads: Metrics.Counter
    /// Reads that had to see a write (read-your-writes), by who served them.
    let consistentReplicaReads: Metrics.Counter
    let consistentPrimaryReads: Metrics.Counter
    /// How long such reads waited for a replica to replay the write, and how many gave up waiting.
    let consistencyWait: Metrics.Timer
    let consistencyWaitTimeouts: Metrics.Counter
    /// Times a client's large message waited for room in max_buffered_bytes, or was refused as too large for it.
    let bufferWaits: Metrics.Counter
    let bufferRefusals: Metrics.Counter

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30),
        ]
        self.registry = registry
        self.factory = factory
        readOnlyRetries = Metrics.Counter(label: "switchyard_routing_retries_total", dimensions: [("reason", "read_only")], factory: factory)
        replicaFailureRetries = Metrics.Counter(label: "switchyard_routing_retries_total", dimensions: [("reason", "replica_failed")], factory: factory)
        replicaFallbacks = Metrics.Counter(label: "switchyard_routing_fallbacks_total", factory: factory)
        reloads = Metrics.Counter(label: "switchyard_reloads_total", dimensions: [("result", "ok")], factory: factory)
        failedReloads = Metrics.Counter(label: "switchyard_reloads_total", dimensions: [("result", "rejected")], factory: factory)
        consistentReplicaReads = Metrics.Counter(label: "switchyard_read_consistency_reads_total", dimensions: [("served_by", "replica")], factory: factory)
        consistentPrimaryReads = Metrics.Counter(label: "switchyard_read_consistency_reads_total", dimensions: [("served_by", "primary")], factory: factory)
        consistencyWait = Metrics.Timer(label: "switchyard_read_consistency_wait_seconds", factory: factory)
        consistencyWaitTimeouts = Metrics.Counter(label: "switchyard_read_consistency_wait_timeouts_total", factory: factory)
        bufferWaits = Metrics.Counter(label: "switchyard_buffer_waits_total", factory: factory)
        bufferRefusals = Metrics.Counter(label: "switchyard_buffer_refusals_total", factory: factory)
    }

    /// The metric objects of one server, made once and kept (pools hold them).
    func server(_ definition: ServerDefinition) -> ServerMetrics {
        servers.withLock { all in
            if let existing = all[definition.name], existing.route == definition.role.rawValue { return existing }
            let metrics = ServerMetrics(server: definition.name, route: definition.role.rawValue, factory: factory)
            all[definition.name] = metrics
            return metrics
        }
    }

    /// Sets a gauge, made on first use (scrape time only).
    func gauge(_ name: String, _ labels: [(String, String)] = [], _ value: Double) {
        Gauge(label: name, dimensions: labels, factory: factory).record(value)
    }

    /// Counts a switchover by outcome and records its phases' durations.
    func switchoverFinished(_ report: SwitchoverReport) {
        Metrics.Counter(label: "switchyard_switchovers_total", dimensions: [("result", report.outcome.label.replacingOccurrences(of: " ", with: "_"))],
                        factory: factory).increment()
        for (phase, duration) in report.phases {
            Metrics.Timer(label: "switchyard_switchover_phase_duration_seconds", dimensions: [("phase", phase.rawValue)], factory: factory)
                .recordNanoseconds(Int64(duration.inSeconds * 1e9))
        }
        gauge("switchyard_switchover_last_held_clients", [], Double(report.heldClients))
    }

    /// The registry in Prometheus text format.
    public func render() -> [UInt8] { registry.emitToBuffer() }
}

/// One server's counters and histograms; `route` is its role (primary or replica).
final class ServerMetrics: Sendable {
    let route: String
    let queries: Metrics.Counter
    let transactions: Metrics.Counter
    let bytesReceived: Metrics.Counter
    let bytesSent: Metrics.Counter
    let queryDuration: Metrics.Timer
    let poolWait: Metrics.Timer

    init(server: String, route: String, factory: PrometheusMetricsFactory) {
        self.route = route
        let labels = [("server", server), ("route", route)]
        queries = Metrics.Counter(label: "switchyard_queries_total", dimensions: labels, factory: factory)
        transactions = Metrics.Counter(label: "switchyard_transactions_total", dimensions: labels, factory: factory)
        bytesReceived = Metrics.Counter(label: "switchyard_client_bytes_received_total", dimensions: labels, factory: factory)
        bytesSent = Metrics.Counter(label: "switchyard_client_bytes_sent_total", dimensions: labels, factory: factory)
        queryDuration = Metrics.Timer(label: "switchyard_query_duration_seconds", dimensions: labels, factory: factory)
        poolWait = Metrics.Timer(label: "switchyard_pool_wait_seconds", dimensions: labels, factory: factory)
    }

    /// Adds what a pool counted since `published`.
    func publish(_ traffic: PoolTraffic, since published: PoolTraffic) {
        func add(_ counter: Metrics.Counter, _ now: Int, _ before: Int) {
            if now > before { counter.increment(by: Int64(now - before)) }
        }
        add(queries, traffic.queries, published.queries)
        add(transactions, traffic.transactions, published.transactions)
        add(bytesReceived, traffic.bytesReceived, published.bytesReceived)
        add(bytesSent, traffic.bytesSent, published.bytesSent)
    }
}
