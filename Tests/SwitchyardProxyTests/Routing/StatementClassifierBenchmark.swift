import Foundation
import Testing
@testable import SwitchyardProxy

/// Prints ns/statement. Off by default; run in release:
///   SWITCHYARD_BENCH=1 swift test -c release --filter StatementClassifierBenchmark
@Suite(.enabled(if: ProcessInfo.processInfo.environment["SWITCHYARD_BENCH"] != nil, "benchmark: set SWITCHYARD_BENCH=1"))
struct StatementClassifierBenchmark {
    static let statements: [(name: String, sql: String)] = [
        ("200-byte SELECT, joins + qualified columns", """
            SELECT o.id, o.created_at, c.name, sum(l.amount) AS total FROM orders o JOIN customers c ON c.id = o.customer_id \
            JOIN lines l ON l.order_id = o.id WHERE o.created_at > $1 AND c.region = $2 GROUP BY 1, 2, 3 LIMIT 50
            """),
        ("pgbench SELECT", "SELECT abalance FROM pgbench_accounts WHERE aid = 123;"),
        ("pgbench UPDATE", "UPDATE pgbench_accounts SET abalance = abalance + -4024 WHERE aid = 79113;"),
        ("CTE + window", """
            WITH recent AS (SELECT user_id, count(*) AS n FROM events WHERE ts > now() - interval '1 day' GROUP BY user_id) \
            SELECT u.name, r.n, rank() OVER (ORDER BY r.n DESC) FROM recent r JOIN users u ON u.id = r.user_id
            """),
        ("200-byte SELECT, plain columns", """
            SELECT id, email, display_name, created_at, last_login_at FROM users WHERE tenant_id = $1 AND status = 'active' \
            AND created_at >= now() - interval '30 days' ORDER BY created_at DESC LIMIT 100
            """),
        ("BEGIN", "BEGIN"),
    ]

    /// Best of many short rounds, so a busy machine shows the uncontended cost.
    @Test func nanosecondsPerStatement() {
        let classifier = StatementClassifier()
        for (name, sql) in Self.statements {
            let bytes = Array(sql.utf8)
            let iterations = 5_000
            var best = Double.infinity
            var replica = false
            for _ in 0..<200 {
                let elapsed = bytes.withUnsafeBytes { buffer in
                    ContinuousClock().measure {
                        for _ in 0..<iterations { replica = classifier.classify(buffer).route == .replica }
                    }
                }
                let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
                best = min(best, ns / Double(iterations))
            }
            print("classifier benchmark: \(name) (\(bytes.count) bytes, \(replica ? "replica" : "primary")): \(Int(best)) ns/statement")
        }
    }
}
