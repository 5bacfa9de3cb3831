import ArgumentParser
import SwitchyardProxy

/// `switchyard benchmark-classifier`: times `StatementClassifier().classify(_:)` on a fixed set of typical
/// statements and prints ns/statement, one plain-text line each, for bench/pgbench-compare.sh. Hidden from
/// `--help`; only meaningful in a release build (a debug build says so on its first line). Each figure is the
/// fastest of several rounds of `--round-size` classifications (the machine may be busy), with the mean of all
/// `--iterations` beside it.
///
/// It times the classifier alone, on the bytes of each statement (the proxy classifies the bytes of a Query
/// or Parse message the same way). The proxy also caches classifications per event loop by statement text
/// (`PoolShard.classify`, internal), so a statement it has seen before costs a hash lookup instead; that
/// cache-hit path is not measured here.
struct BenchmarkClassifier: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "benchmark-classifier",
        abstract: "Time the read/write statement classifier (ns/statement) and exit.",
        shouldDisplay: false)

    @Option(help: "Classifications timed per statement.")
    var iterations: Int = 200_000

    @Option(help: "They are timed in rounds of this many; the fastest round is the figure, so a busy machine still shows the uncontended cost.")
    var roundSize: Int = 5_000

    struct Case {
        var label: String
        /// Classified one after the other; the figure is the mean per statement.
        var statements: [[UInt8]]
        init(_ label: String, _ statements: [String]) {
            self.label = label
            self.statements = statements.map { Array($0.utf8) }
        }
    }

    /// pgbench's builtin scripts as `-M simple` sends them (variables substituted).
    static let tpcbLike = [
        "BEGIN;",
        "UPDATE pgbench_accounts SET abalance = abalance + -4024 WHERE aid = 79113;",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 79113;",
        "UPDATE pgbench_tellers SET tbalance = tbalance + -4024 WHERE tid = 17;",
        "UPDATE pgbench_branches SET bbalance = bbalance + -4024 WHERE bid = 2;",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (17, 2, 79113, -4024, CURRENT_TIMESTAMP);",
        "END;",
    ]

    static let cases: [Case] = [
        Case("select (joins, where, order by)", ["""
            SELECT o.id, o.created_at, c.name, l.sku, l.quantity FROM orders o \
            JOIN customers c ON c.id = o.customer_id JOIN order_lines l ON l.order_id = o.id \
            WHERE o.status = 'shipped' AND c.region = $1 ORDER BY o.created_at DESC LIMIT 50
            """]),
        Case("select (plain columns, where, order by)", ["""
            SELECT id, email, display_name, created_at, last_login_at FROM users WHERE tenant_id = $1 AND status = 'active' \
            AND created_at >= now() - interval '30 days' ORDER BY created_at DESC LIMIT 100
            """]),
        Case("pgbench select-only", ["SELECT abalance FROM pgbench_accounts WHERE aid = 123456;"]),
        Case("pgbench select-only (-M extended)", ["SELECT abalance FROM pgbench_accounts WHERE aid = $1;"]),
        Case("pgbench tpcb-like (7 statements, mean)", tpcbLike),
        Case("insert", ["""
            INSERT INTO events (user_id, kind, payload, created_at) VALUES ($1, 'login', '{"ip": "10.0.0.7"}', now()) \
            RETURNING id
            """]),
        Case("with query (CTE + window)", ["""
            WITH recent AS (SELECT user_id, count(*) AS n FROM events WHERE ts > now() - interval '1 day' GROUP BY user_id) \
            SELECT u.name, r.n, rank() OVER (ORDER BY r.n DESC) FROM recent r JOIN users u ON u.id = r.user_id
            """]),
        Case("begin", ["BEGIN"]),
    ]

    func validate() throws {
        guard iterations > 0 else { throw ValidationError("--iterations must be positive") }
        guard roundSize > 0 else { throw ValidationError("--round-size must be positive") }
    }

    func run() throws {
        #if DEBUG
        print("classifier: WARNING: debug build, the figures below are not meaningful (build with -c release)")
        #endif
        let classifier = StatementClassifier()
        var sink = 0   // consumed below, so the optimizer cannot drop the calls
        var allStatements: [[UInt8]] = []
        for benchCase in Self.cases {
            allStatements += benchCase.statements
            let route = benchCase.statements.map { bytes in
                bytes.withUnsafeBytes { classifier.classify($0).route == .replica ? "replica" : "primary" }
            }
            let routes = Set(route).count == 1 ? route[0] : route.joined(separator: ",")
            let bytes = benchCase.statements.count == 1 ? "\(benchCase.statements[0].count)-byte " : ""
            let (best, mean) = measure(classifier, benchCase.statements, &sink)
            print(line("\(bytes)\(benchCase.label)", best, "mean \(Int(mean.rounded())), route \(routes)"))
        }
        // Every statement above, round-robin: the cost of a statement in this mix.
        let (best, mean) = measure(classifier, allStatements, &sink)
        let rounds = (iterations + roundSize - 1) / roundSize
        print(line("overall (\(allStatements.count) statements round-robin)", best,
                   "mean \(Int(mean.rounded())); fastest of \(rounds) round\(rounds == 1 ? "" : "s") of \(min(roundSize, iterations))"))
        if sink == -1 { print("") }   // never true; keeps `sink` alive
    }

    private func line(_ label: String, _ ns: Double, _ note: String) -> String {
        let padded = label.count < 48 ? label + String(repeating: " ", count: 48 - label.count) : label
        let value = String(Int(ns.rounded()))
        return "classifier: \(padded) \(String(repeating: " ", count: max(0, 6 - value.count)))\(value) ns/statement  (\(note))"
    }

    /// Nanoseconds per classification, (fastest round, mean over all rounds): `iterations` classifications,
    /// cycling through `statements`, timed in rounds of `roundSize`, after a short untimed warm-up.
    private func measure(_ classifier: StatementClassifier, _ statements: [[UInt8]], _ sink: inout Int) -> (Double, Double) {
        let clock = ContinuousClock()
        var best = Double.infinity
        var total = 0.0
        var remaining = iterations
        var k = 0
        var warmUp = true
        while remaining > 0 {
            let count = warmUp ? min(iterations, 1_000) : min(roundSize, remaining)
            var checksum = 0
            let elapsed = clock.measure {
                for _ in 0..<count {
                    statements[k].withUnsafeBytes { checksum &+= classifier.classify($0).statementCount }
                    k += 1
                    if k == statements.count { k = 0 }
                }
            }
            sink &+= checksum
            if warmUp {
                warmUp = false
                continue
            }
            let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
            best = min(best, ns / Double(count))
            total += ns
            remaining -= count
        }
        return (best, total / Double(iterations))
    }
}
