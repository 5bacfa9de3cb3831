import Histogram
import NIOCore

/// What one pool's clients did, counted on the pool's event loop with plain integers (no locks or
/// atomics on the relay). SHOW STATS sums pools per server; the metrics endpoint publishes the
/// growth since its last scrape to Prometheus counters.
struct PoolTraffic {
    var queries = 0
    var transactions = 0
    /// Bytes from clients to the server, and from the server to clients.
    var bytesReceived = 0
    var bytesSent = 0
    var queryNanoseconds = 0
    var transactionNanoseconds = 0
    /// Leases that had to wait for a connection, and how long they waited in all.
    var waits = 0
    var waitNanoseconds = 0
    /// Query times in microseconds, for percentiles (1 µs to 1 h, two significant digits).
    var queryMicroseconds = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .two)

    mutating func recordQuery(_ duration: TimeAmount) {
        queries += 1
        queryNanoseconds += Int(duration.nanoseconds)
        _ = queryMicroseconds.record(UInt64(clamping: duration.nanoseconds / 1000))
    }

    mutating func recordTransaction(_ duration: TimeAmount) {
        transactions += 1
        transactionNanoseconds += Int(duration.nanoseconds)
    }

    mutating func recordWait(_ duration: TimeAmount) {
        waits += 1
        waitNanoseconds += Int(duration.nanoseconds)
    }

    mutating func add(_ other: PoolTraffic) {
        queries += other.queries
        transactions += other.transactions
        bytesReceived += other.bytesReceived
        bytesSent += other.bytesSent
        queryNanoseconds += other.queryNanoseconds
        transactionNanoseconds += other.transactionNanoseconds
        waits += other.waits
        waitNanoseconds += other.waitNanoseconds
        queryMicroseconds.add(other.queryMicroseconds)
    }
}
