import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import SwitchyardProxy

// Helpers for the read/write-routing tests (Tests/IntegrationTests/Routing): a proxy with
// replicas in its `[servers]`, control of the test cluster's replica (stop/start, pause/resume
// WAL replay), its server log, and extended-protocol frames for the raw client.

/// Where the test cluster's replica is, derived from the `deploy/cluster.sh env` variables.
enum RoutingCluster {
    static let replicaPort = Int(TestEnvironment.variables["SWITCHYARD_TEST_REPLICA_PORT"] ?? "") ?? 15433
    /// The cluster's base directory: `$SWITCHYARD_PG_DIR`, else the parent of the socket directory
    /// (deploy/lib.sh puts sockets in `$BASE/run`).
    static let baseDirectory: String = {
        if let base = TestEnvironment.variables["SWITCHYARD_PG_DIR"], !base.isEmpty { return base }
        return (TestEnvironment.socketDirectory as NSString).deletingLastPathComponent
    }()
    static let replicaDataDirectory = baseDirectory + "/replica"
    /// `pg_ctl -l` file of the replica (deploy/cluster.sh start_node).
    static let replicaLogFile = baseDirectory + "/replica.log"
    static let pgBin = "/usr/lib/postgresql/15/bin"
}

/// One `[servers]` line of a routing proxy.
struct RoutingServerEntry: Sendable {
    var name: String
    var host: String = TestEnvironment.pgHost
    var port: Int
    var role: String
    var weight: Int = 1

    static let primary = RoutingServerEntry(name: "primary", port: TestEnvironment.pgPort, role: "primary")
    static let replica1 = RoutingServerEntry(name: "replica1", port: RoutingCluster.replicaPort, role: "replica")
    /// A replica nobody listens for (port 1 on loopback: connection refused at once).
    static let unreachable = RoutingServerEntry(name: "replica2", host: "127.0.0.1", port: 1, role: "replica")
}

/// A Switchyard proxy in this process (like ``TestProxy``) whose configuration has replicas and the
/// routing keys: health checks as `app` every 0.2 s, hysteresis 2.
final class RoutingProxy: Sendable {
    let server: ProxyServer
    let configuration: ProxyConfiguration
    let port: Int

    private init(server: ProxyServer, configuration: ProxyConfiguration, port: Int) {
        self.server = server
        self.configuration = configuration
        self.port = port
    }

    static let defaultSettings = [
        "listen_addr": "127.0.0.1", "listen_port": "6432", "pool_mode": "transaction", "pool_size": "10",
        "health_check_user": "app", "health_check_interval": "0.2", "health_check_hysteresis": "2",
    ]

    /// The configuration text: `settings` over ``defaultSettings`` in `[switchyard]`, the primary and
    /// `replicas` in `[servers]`, the four test users, each with `userOptions[name]` appended (e.g. `route=primary`).
    static func configurationText(
        _ settings: [String: String], replicas: [RoutingServerEntry], userOptions: [String: String]
    ) -> String {
        let switchyard = defaultSettings.merging(settings) { $1 }
        let servers = [RoutingServerEntry.primary] + replicas
        let users = TestEnvironment.passwords.sorted { $0.key < $1.key }
        return """
            [switchyard]
            \(switchyard.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value)" }.joined(separator: "\n"))

            [servers]
            \(servers.map { "\($0.name) = host=\($0.host) port=\($0.port) role=\($0.role) weight=\($0.weight)" }.joined(separator: "\n"))

            [users]
            \(users.map { "\($0.key) = password=\($0.value)\(userOptions[$0.key].map { " " + $0 } ?? "")" }.joined(separator: "\n"))
            """
    }

    static func start(
        _ settings: [String: String] = [:], replicas: [RoutingServerEntry] = [.replica1], userOptions: [String: String] = [:]
    ) async throws -> RoutingProxy {
        try TestEnvironment.requirePostgres()
        let text = configurationText(settings, replicas: replicas, userOptions: userOptions)
        var configuration: ProxyConfiguration
        do {
            configuration = try ProxyConfiguration.parse(text, fileName: "routing-test.conf")
        } catch {
            throw HarnessError("routing test configuration rejected: \(error)\n\(text)")
        }
        configuration.listenPort = 0
        let server = try ProxyServer(configuration: configuration, logger: TestProxy.proxyLogger)
        do {
            let address = try await server.start()
            guard let port = address.port else { throw HarnessError("proxy bound to \(address), which has no port") }
            return RoutingProxy(server: server, configuration: configuration, port: port)
        } catch {
            await server.shutdownEventLoops()
            throw error
        }
    }

    func stop() async {
        await server.drain(timeout: .seconds(1))
        await server.shutdownEventLoops()
    }
}

/// Starts a routing proxy, runs `body`, and always stops the proxy. With `waitForReplica`, it first
/// checks the cluster's replica is streaming and waits (≤ 10 s) until reads through the proxy (as
/// `probeUser`) reach it.
func withRoutingProxy<T>(
    _ settings: [String: String] = [:], replicas: [RoutingServerEntry] = [.replica1], userOptions: [String: String] = [:],
    waitForReplica: Bool = true, probeUser: String = "app", _ body: (RoutingProxy) async throws -> T
) async throws -> T {
    if waitForReplica { try await ReplicaControl.ensureHealthy() }
    let proxy = try await RoutingProxy.start(settings, replicas: replicas, userOptions: userOptions)
    do {
        if waitForReplica { try await waitUntilReadsReachReplica(port: proxy.port, user: probeUser) }
        let result = try await body(proxy)
        await proxy.stop()
        return result
    } catch {
        await proxy.stop()
        throw error
    }
}

/// Polls `select pg_is_in_recovery()` through the proxy until a replica answers (true).
func waitUntilReadsReachReplica(port: Int, user: String = "app", database: String = "app", within limit: Duration = .seconds(10)) async throws {
    var last = "no answer"
    let reached = try await withNIOConnection(port: port, user: user, database: database) { connection in
        await eventually(within: limit, every: .milliseconds(50)) {
            do {
                let answer = try await connection.values("select pg_is_in_recovery()", as: Bool.self, timeout: .seconds(5))
                last = "\(answer)"
                return answer == [true]
            } catch {
                last = "\(String(reflecting: error))"
                return false
            }
        }
    }
    guard reached else {
        throw HarnessError("reads through the proxy did not reach the replica within \(limit) (last answer: \(last)); "
                           + "is the replica streaming and health_check_user able to log in?")
    }
}

/// Polls `select pg_is_in_recovery()` through the proxy until it is `expected`; returns whether it was.
func readsReach(replica expected: Bool, port: Int, within limit: Duration, database: String = "app") async throws -> Bool {
    try await withNIOConnection(port: port, database: database) { connection in
        await eventually(within: limit, every: .milliseconds(50)) {
            (try? await connection.values("select pg_is_in_recovery()", as: Bool.self, timeout: .seconds(5))) == [expected]
        }
    }
}

/// The test cluster's replica, driven as the OS user postgres (pg_ctl) and as superuser over its
/// unix socket. Every change a test makes is undone by the `with…` helpers, whatever happens.
enum ReplicaControl {
    /// psql as superuser `postgres` straight to the replica over its unix socket.
    static func psql(_ sql: String, database: String = "postgres", timeout: Duration = .seconds(20)) async throws -> ProcessResult {
        let arguments = ["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", TestEnvironment.socketDirectory,
                         "-p", "\(RoutingCluster.replicaPort)", "-U", "postgres", "-d", database, "-c", sql]
        return try await runProcess("psql", arguments, environment: libpqEnvironment(password: nil), timeout: timeout)
    }

    /// A superuser query on the replica that must succeed; returns its trimmed output.
    static func query(_ sql: String, database: String = "postgres") async throws -> String {
        let result = try await psql(sql, database: database)
        guard result.succeeded else { throw HarnessError("replica superuser query failed: \(result)") }
        return result.output
    }

    /// `pg_ctl` on the replica's data directory as the OS user postgres (pg_ctl refuses root).
    static func pgctl(_ arguments: String, timeout: Duration = .seconds(90)) async throws -> ProcessResult {
        let script = "cd / && runuser -u postgres -- \(RoutingCluster.pgBin)/pg_ctl -D '\(RoutingCluster.replicaDataDirectory)' \(arguments)"
        return try await bash(script, timeout: timeout)
    }

    static func isRunning() async throws -> Bool {
        try await pgctl("status", timeout: .seconds(20)).exitCode == 0
    }

    static func stop(mode: String) async throws {
        let result = try await pgctl("-m \(mode) -w -t 60 stop")
        guard result.succeeded else { throw HarnessError("could not stop the replica: \(result)") }
    }

    static func start() async throws {
        let result = try await pgctl("-l '\(RoutingCluster.replicaLogFile)' -w -t 60 start")
        guard result.succeeded else { throw HarnessError("could not start the replica: \(result)") }
    }

    static func pauseReplay() async throws { _ = try await query("select pg_wal_replay_pause()") }
    static func resumeReplay() async throws { _ = try await query("select pg_wal_replay_resume()") }
    static func isReplayPaused() async throws -> Bool { try await query("select pg_is_wal_replay_paused()") == "t" }

    /// Waits until the replica is in recovery and the primary shows a streaming WAL sender.
    static func waitUntilStreaming(within limit: Duration = .seconds(60)) async throws {
        var last = ""
        let ok = try await eventually(within: limit, every: .milliseconds(200)) {
            let recovery = try await psql("select pg_is_in_recovery()", timeout: .seconds(10))
            let senders = try await superuserPsql("select count(*) from pg_stat_replication where state = 'streaming'", timeout: .seconds(10))
            last = "in recovery: \(recovery.output) \(recovery.stderr), streaming senders: \(senders.output)"
            return recovery.succeeded && recovery.output == "t" && (Int(senders.output) ?? 0) >= 1
        }
        guard ok else { throw HarnessError("replica is not streaming after \(limit) (\(last))") }
    }

    /// Heals what an interrupted earlier run may have left: starts a stopped replica, resumes paused
    /// replay, then waits until it streams.
    static func ensureHealthy() async throws {
        if try await !isRunning() { try await start() }
        if (try? await isReplayPaused()) == true { try await resumeReplay() }
        try await waitUntilStreaming()
    }

    /// Runs `body` with WAL replay paused on the replica; always resumes it.
    static func withReplayPaused<T>(_ body: () async throws -> T) async throws -> T {
        try await pauseReplay()
        do {
            let result = try await body()
            try await resumeReplay()
            return result
        } catch {
            try? await resumeReplay()
            throw error
        }
    }

    /// Always restarts the replica and waits until it streams again, whatever `body` did.
    static func restoring<T>(_ body: () async throws -> T) async throws -> T {
        do {
            let result = try await body()
            try await ensureHealthy()
            return result
        } catch {
            try? await ensureHealthy()
            throw error
        }
    }
}

/// The replica's server log (`pg_ctl -l` file), where Postgres logs each statement that failed
/// (`log_min_error_statement = error`): the proof that a statement did, or did not, reach the replica.
enum ReplicaLog {
    static var isAvailable: Bool { FileManager.default.isReadableFile(atPath: RoutingCluster.replicaLogFile) }

    /// Lines of the replica's log that contain `marker`.
    static func lines(containing marker: String) -> [String] {
        guard let data = FileManager.default.contents(atPath: RoutingCluster.replicaLogFile) else { return [] }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").filter { $0.contains(marker) }.map(String.init)
    }
}

/// Extended-protocol frontend messages for the raw client (unnamed statement and portal, text format).
enum RoutingWire {
    static func parse(_ sql: String, statement: String = "") -> [UInt8] {
        Wire.message("P", Wire.cString(statement) + Wire.cString(sql) + [0, 0])
    }
    static func bind(statement: String = "", portal: String = "") -> [UInt8] {
        // No parameter formats, no parameters, no result formats (all text).
        Wire.message("B", Wire.cString(portal) + Wire.cString(statement) + [0, 0, 0, 0, 0, 0])
    }
    static func describePortal(_ portal: String = "") -> [UInt8] { Wire.message("D", [UInt8(ascii: "P")] + Wire.cString(portal)) }
    static func execute(_ portal: String = "") -> [UInt8] { Wire.message("E", Wire.cString(portal) + Wire.int32(0)) }
    static let sync = Wire.message("S")

    /// Parse, Bind, Describe, Execute, Sync of one statement.
    static func batch(_ sql: String) -> [UInt8] { parse(sql) + bind() + describePortal() + execute() + sync }
}

extension RawClient {
    /// Reads `count` replies (each up to its ReadyForQuery).
    func readReplies(_ count: Int, timeout: Duration = .seconds(15)) async throws -> [[BackendFrame]] {
        var replies: [[BackendFrame]] = []
        for _ in 0..<count {
            let reply = try await readUntilReady(timeout: timeout)
            guard reply.last?.id == "Z" else { throw HarnessError("connection closed after \(replies.count) replies: \(replies) + \(reply)") }
            replies.append(reply)
        }
        return replies
    }
}

extension [BackendFrame] {
    /// Every DataRow's columns as text (nil for NULL).
    var rowValues: [[String?]] {
        filter { $0.id == "D" }.map { frame in
            let body = frame.body
            let count = body.count >= 2 ? Int(body[0]) << 8 | Int(body[1]) : 0
            var values: [String?] = []
            var offset = 2
            for _ in 0..<count {
                let length = Int(Wire.int32Value(body, at: offset))
                offset += 4
                if length < 0 {
                    values.append(nil)
                } else {
                    values.append(String(decoding: body[offset..<offset + length], as: UTF8.self))
                    offset += length
                }
            }
            return values
        }
    }
}

/// pgbench (full path) through a proxy, as `app`, with `arguments` (e.g. `-S -M simple -c 8 -T 3`).
func routingPgbench(port: Int, database: String = "bench", _ arguments: [String], timeout: Duration = .seconds(60)) async throws -> ProcessResult {
    let all = ["-h", "127.0.0.1", "-p", "\(port)", "-U", "app", "-n"] + arguments + [database]
    return try await runProcess(RoutingCluster.pgBin + "/pgbench", all, environment: libpqEnvironment(password: TestEnvironment.passwords["app"]),
                                timeout: timeout)
}

/// A value shared by concurrent test tasks (Mutex itself cannot be captured by escaping closures).
final class SharedState<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}
