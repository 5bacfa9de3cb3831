import Foundation
import PostgresNIO
import Synchronization
import SwitchyardProxy
import Testing

// Helpers for the read/write-routing tests (Tests/IntegrationTests/Routing): a proxy with
// replicas in its `[servers]`, control of the test cluster's replica (stop/start, pause/resume
// WAL replay), its server log, and extended-protocol frames for the raw client.

/// Where the test cluster's replica is, derived from the `deploy/cluster.sh env` variables.
enum RoutingCluster {
    static let replicaPort = Int(TestEnvironment.variables["SWITCHYARD_TEST_REPLICA_PORT"] ?? "") ?? 15433
    /// The second streaming replica (deploy/cluster.sh starts both).
    static let replica2Port = Int(TestEnvironment.variables["SWITCHYARD_TEST_REPLICA2_PORT"] ?? "") ?? 15434
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
    static let replica2 = RoutingServerEntry(name: "replica2", port: RoutingCluster.replica2Port, role: "replica")
    /// A replica nobody listens for (port 1 on loopback: connection refused at once).
    static let unreachable = RoutingServerEntry(name: "replica_down", host: "127.0.0.1", port: 1, role: "replica")
}

extension [RoutingServerEntry] {
    /// Both streaming replicas of the test cluster: the topology drivers meet in production.
    static let bothReplicas: [RoutingServerEntry] = [.replica1, .replica2]
}

/// A Switchyard proxy whose configuration has replicas and the routing keys (health checks as `app`
/// every 0.2 s, hysteresis 2), run as a child process: the real `switchyard` executable that
/// `swift build --build-tests` puts next to the test bundle.
///
/// Not in-process like ``TestProxy``: with replicas configured, ReplicaMonitor drops a live
/// PostgresConnection when a probe throws (ReplicaMonitor.swift:61 and :81-82), and postgres-nio's
/// `assert(isClosed)` in its deinit then kills the process (debug builds). A probe in flight when
/// `drain` cancels the monitor is enough, so stopping an in-process proxy would now and then crash
/// the whole test run. A child crash is reported as a test failure instead, and the proxy is stopped
/// with SIGKILL (no drain), so the crash at shutdown does not blur what each test checks;
/// `IntegrationTests.Routing.Health.monitorSurvivesFailingPrimaryProbe` covers that bug itself.
final class RoutingProxy: Sendable {
    let port: Int
    let directory: String
    let configurationText: String
    private let process: Process
    /// The switchyard process, for its descriptor count and memory.
    var processID: Int32 { process.processIdentifier }

    private init(process: Process, port: Int, directory: String, configurationText: String) {
        (self.process, self.port, self.directory, self.configurationText) = (process, port, directory, configurationText)
    }

    static let defaultSettings = [
        "listen_addr": "127.0.0.1", "pool_mode": "transaction", "pool_size": "10", "log_level": "info",
        "health_check_user": "app", "health_check_interval": "0.2", "health_check_hysteresis": "2", "admin_users": "admin",
    ]

    /// The executable built next to this test bundle, or `$SWITCHYARD_ROUTING_PROXY_BINARY` (to try a
    /// candidate fix against these tests without rebuilding them).
    static var executablePath: String {
        if let override = TestEnvironment.variables["SWITCHYARD_ROUTING_PROXY_BINARY"], !override.isEmpty { return override }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("switchyard").path
    }

    /// The configuration text: `settings` over ``defaultSettings`` in `[switchyard]`, the primary and
    /// `replicas` in `[servers]`, the four test users, each with `userOptions[name]` appended (e.g. `route=primary`).
    static func configurationText(
        _ settings: [String: String], replicas: [RoutingServerEntry], userOptions: [String: String], primary: RoutingServerEntry = .primary,
        omitting omitted: Set<String> = []
    ) -> String {
        let switchyard = defaultSettings.merging(settings) { $1 }.filter { !omitted.contains($0.key) }
        let servers = [primary] + replicas
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

    /// Writes the configuration (validated here first, so a typo fails with the parser's message), starts
    /// `switchyard run` with an empty signal mask, and waits until it listens (its log says so, so
    /// `log_level` must stay `info` or lower).
    /// `omitting` drops keys of ``defaultSettings`` (e.g. `health_check_user`: no health monitor at all).
    static func start(
        _ settings: [String: String] = [:], replicas: [RoutingServerEntry] = [.replica1], userOptions: [String: String] = [:],
        primary: RoutingServerEntry = .primary, omitting omitted: Set<String> = []
    ) async throws -> RoutingProxy {
        try TestEnvironment.requirePostgres()
        guard FileManager.default.isExecutableFile(atPath: executablePath) else {
            throw HarnessError("no switchyard executable at \(executablePath): run `swift build --build-tests` first")
        }
        let port = try routingFreePort()
        var settings = settings
        settings["listen_port"] = "\(port)"
        let text = configurationText(settings, replicas: replicas, userOptions: userOptions, primary: primary, omitting: omitted)
        do {
            _ = try ProxyConfiguration.parse(text, fileName: "routing-test.conf")
        } catch {
            throw HarnessError("routing test configuration rejected: \(error)\n\(text)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("switchyard-routing")).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try text.write(toFile: directory + "/proxy.conf", atomically: true, encoding: .utf8)
        let log = directory + "/switchyard.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let process = Process()
        // Python clears the signal mask this thread would pass on, then execs the proxy (same PID).
        process.executableURL = URL(fileURLWithPath: TestEnvironment.python)
        process.arguments = ["-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv(sys.argv[1], sys.argv[1:])",
                             executablePath, "run", "--config", directory + "/proxy.conf"]
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PG") }
        // A crash report that is quick to produce (a full one of a debug binary can take many seconds).
        environment["SWIFT_BACKTRACE"] = "enable=yes,threads=crashed,registers=none,images=none,limit=24,symbolicate=fast"
        process.environment = environment
        // One handle for both; the child gets its own copies, so ours is closed once it runs.
        let logHandle = FileHandle(forWritingAtPath: log)
        process.standardOutput = logHandle
        process.standardError = logHandle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? logHandle?.close()
        let proxy = RoutingProxy(process: process, port: port, directory: directory, configurationText: text)
        // Ready when it logs so (log_level info or lower). Not by connecting: a client that connects
        // and leaves at once can hold up a later drain (see Health.clientLeavingJustBeforeSIGTERM).
        let listening = await eventually(within: .seconds(15), every: .milliseconds(20)) {
            proxy.log().contains("Switchyard listening") || !process.isRunning
        }
        guard listening, process.isRunning else {
            let output = proxy.log()
            proxy.kill()
            throw HarnessError("switchyard did not start listening on \(port):\n\(output)")
        }
        return proxy
    }

    var isRunning: Bool { process.isRunning }

    /// Sends `signal` (SIGHUP, say) to the proxy process.
    func send(_ signal: Int32) { Foundation.kill(process.processIdentifier, signal) }

    /// The proxy's configuration file, which RELOAD and SIGHUP re-read.
    var configurationPath: String { directory + "/proxy.conf" }

    /// The proxy's stdout and stderr (its log), the last `limit` characters.
    func log(limit: Int = 6000) -> String {
        String((try? String(contentsOfFile: directory + "/switchyard.log", encoding: .utf8))?.suffix(limit) ?? "")
    }

    /// The interesting part of a crash report: the failure message and the crashed thread's top frames.
    var crashSummary: String {
        let lines = ((try? String(contentsOfFile: directory + "/switchyard.log", encoding: .utf8)) ?? "").components(separatedBy: "\n")
        var summary = lines.filter { $0.contains("Assertion failed") || $0.contains("Precondition failed") || $0.contains("Fatal error") || $0.contains("Program crashed") }
        if let crashed = lines.firstIndex(where: { $0.contains(" crashed:") }) {
            summary += lines[crashed..<min(lines.count, crashed + 12)].filter { !$0.isEmpty }
        }
        let exit = process.isRunning ? "running" : "exited with \(process.terminationReason == .uncaughtSignal ? "signal" : "status") \(process.terminationStatus)"
        return "switchyard \(exit)\n" + (summary.isEmpty ? log(limit: 2000) : summary.joined(separator: "\n"))
    }

    /// SIGKILL, then wait for the exit (bounded); removes the directory unless `keepDirectory`.
    func kill(keepDirectory: Bool = false) {
        if process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning, Date() < deadline { usleep(10_000) }
        }
        if !keepDirectory { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// SIGTERM (graceful drain), then waits up to `limit` for the exit. Returns the termination
    /// (`signal` or `exit`, and the number), or nil if it is still running.
    func terminate(within limit: TimeInterval = 15) -> (signal: Bool, status: Int32)? {
        guard process.isRunning else { return (process.terminationReason == .uncaughtSignal, process.terminationStatus) }
        Foundation.kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(limit)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        return process.isRunning ? nil : (process.terminationReason == .uncaughtSignal, process.terminationStatus)
    }

    /// Stops the proxy; records an issue if it had died on its own during the test.
    func stop() {
        if !process.isRunning {
            Issue.record("the switchyard process died during the test:\n\(crashSummary)")
        }
        kill()
    }
}

/// A TCP port nothing listens on right now (the kernel's pick for port 0).
func routingFreePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket() failed: errno \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw HarnessError("bind() failed: errno \(errno)") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
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
        if waitForReplica {
            do {
                try await waitUntilReadsReachReplica(port: proxy.port, user: probeUser)
            } catch {
                throw HarnessError("\(error)\nproxy log:\n\(proxy.log(limit: 3000))")
            }
        }
        let result = try await body(proxy)
        proxy.stop()
        return result
    } catch {
        proxy.stop()
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
    /// psql as superuser `postgres` straight to a replica (the first unless `port` says) over its unix socket.
    static func psql(port: Int = RoutingCluster.replicaPort, _ sql: String, database: String = "postgres",
                     timeout: Duration = .seconds(20)) async throws -> ProcessResult {
        let arguments = ["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", TestEnvironment.socketDirectory,
                         "-p", "\(port)", "-U", "postgres", "-d", database, "-c", sql]
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
        // Unmasked: the server pg_ctl starts must not inherit this process's blocked signals.
        let script = "cd / && exec runuser -u postgres -- \(RoutingCluster.pgBin)/pg_ctl -D '\(RoutingCluster.replicaDataDirectory)' \(arguments)"
        return try await runUnmaskedProcess("/bin/bash", ["-c", script], timeout: timeout)
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
        // A read-your-writes test that was killed may have left the replay delayed.
        if (try? await query("select current_setting('recovery_min_apply_delay')")).map({ $0 != "0" }) == true {
            _ = try await query("alter system reset recovery_min_apply_delay")
            _ = try await query("select pg_reload_conf()")
        }
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

/// Runs `executable` with an empty signal mask, under its own coreutils `timeout`. Children of this
/// process inherit the blocked signals of the Dispatch/Swift-concurrency thread that spawned them
/// (SIGALRM, SIGTERM, …): pgbench would never see its `-T` alarm and `timeout` could not fire. A tiny
/// Python shim clears the mask and execs `timeout`, which then bounds the program as usual.
///
/// The shim also closes every inherited descriptor above stderr. Foundation learns that a child
/// exited when its end of a socketpair, inherited across exec, reaches EOF; a daemon started
/// underneath (`pg_ctl start` → postgres) would keep that socket open forever, so the child
/// would never be reaped and `runProcess` would wait for ever.
func runUnmaskedProcess(
    _ executable: String, _ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(60)
) async throws -> ProcessResult {
    let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
    let shim = "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.closerange(3, 65536); os.execv(sys.argv[1], sys.argv[1:])"
    let arguments = ["-c", shim, "/usr/bin/timeout", "--kill-after=3", String(format: "%.1f", seconds), executable] + arguments
    // The outer runProcess timeout is only a backstop: the inner `timeout` fires first.
    var result = try await runProcess(TestEnvironment.python, arguments, environment: environment, timeout: timeout + .seconds(5))
    result.command = ([executable] + arguments.dropFirst(6)).joined(separator: " ")
    if result.exitCode == 124 || result.exitCode == 137 { result.timedOut = true }
    return result
}

/// pgbench (full path) through a proxy, as `app`, with `arguments` (e.g. `-S -M simple -c 8 -T 3`).
func routingPgbench(port: Int, database: String = "bench", _ arguments: [String], timeout: Duration = .seconds(60)) async throws -> ProcessResult {
    let all = ["-h", "127.0.0.1", "-p", "\(port)", "-U", "app", "-n"] + arguments + [database]
    return try await runUnmaskedProcess(RoutingCluster.pgBin + "/pgbench", all,
                                        environment: libpqEnvironment(password: TestEnvironment.passwords["app"]), timeout: timeout)
}

/// A value shared by concurrent test tasks (Mutex itself cannot be captured by escaping closures).
final class SharedState<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}

extension RawClient {
    /// Messages up to and including the first of type `id` (for answers that end before any
    /// ReadyForQuery, as after a Flush); throws if the connection closes or `timeout` passes first.
    func readFrames(until id: Character, timeout: Duration = .seconds(10)) async throws -> [BackendFrame] {
        var frames: [BackendFrame] = []
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard let frame = try await readMessage(timeout: deadline - ContinuousClock.now) else {
                throw HarnessError("connection closed before a '\(id)' message: \(frames)")
            }
            frames.append(frame)
            if frame.id == id || frame.id == "E" { return frames }
        }
        throw HarnessError("no '\(id)' message within \(timeout): \(frames)")
    }
}
