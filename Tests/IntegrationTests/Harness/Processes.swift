import Foundation
import Synchronization

/// What a finished child process left behind.
struct ProcessResult: Sendable, CustomStringConvertible {
    var command: String
    var exitCode: Int32
    var stdout: String
    var stderr: String
    var timedOut: Bool

    var succeeded: Bool { exitCode == 0 && !timedOut }
    /// stdout without the trailing newline(s).
    var output: String { stdout.trimmingCharacters(in: .newlines) }
    var lines: [String] { output.isEmpty ? [] : output.components(separatedBy: "\n") }

    var description: String {
        "`\(command)` exited \(exitCode)\(timedOut ? " (TIMED OUT)" : "")\n--- stdout ---\n\(stdout.prefix(4000))\n--- stderr ---\n\(stderr.prefix(4000))"
    }
}

/// Runs a program and captures its output. It runs under coreutils `timeout`, which kills its whole
/// process group (pipelines included) after `timeout`; a watchdog SIGKILLs `timeout` itself if
/// even that fails, so no test can hang on a child.
func runProcess(
    _ executable: String, _ arguments: [String], environment: [String: String] = [:], stdin: Data? = nil,
    timeout: Duration = .seconds(60)
) async throws -> ProcessResult {
    let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
    process.arguments = ["--kill-after=3", String(format: "%.1f", seconds), executable] + arguments
    // Children never inherit the caller's PG* variables: every connection parameter is explicit.
    process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PG") }.merging(environment) { $1 }
    let command = ([executable] + arguments).map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
    let outPipe = Pipe(), errPipe = Pipe()
    let inPipe: Pipe? = stdin == nil ? nil : Pipe()
    process.standardOutput = outPipe
    process.standardError = errPipe
    process.standardInput = inPipe ?? FileHandle.nullDevice

    let collected = CollectedOutput()
    let group = DispatchGroup()
    for (pipe, isError) in [(outPipe, false), (errPipe, true)] {
        group.enter()
        DispatchQueue.global().async {
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            collected.set(data, isError: isError)
            group.leave()
        }
    }
    let exited = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in exited.signal() }
    try startWithDefaultSignalMask(process)
    let pid = process.processIdentifier
    if let stdin, let inPipe {
        let handle = inPipe.fileHandleForWriting
        DispatchQueue.global().async {
            try? handle.write(contentsOf: stdin)
            try? handle.close()
        }
    }
    let wallLimit = seconds + 10
    return try await offload {
        if exited.wait(timeout: .now() + wallLimit) == .timedOut {
            kill(pid, SIGKILL)
            exited.wait()
        }
        _ = group.wait(timeout: .now() + 10)
        // Foundation's Process keeps its pipes open after the child exits; close this side's ends
        // now, or a long test run piles up descriptors (thousands, by the routing suites).
        for handle in [outPipe.fileHandleForReading, errPipe.fileHandleForReading, inPipe?.fileHandleForReading].compactMap({ $0 }) {
            try? handle.close()
        }
        let (out, err) = collected.values
        let code = process.terminationStatus
        return ProcessResult(
            command: command, exitCode: code, stdout: String(decoding: out, as: UTF8.self),
            stderr: String(decoding: err, as: UTF8.self), timedOut: code == 124 || code == 137)
    }
}

/// Starts `process` with no signals blocked. A child inherits the signal mask of the thread that
/// spawns it, and Dispatch and Swift concurrency threads block SIGALRM, SIGTERM and more: pgbench
/// would never see its -T alarm, and coreutils `timeout` could neither time out nor kill.
func startWithDefaultSignalMask(_ process: Process) throws {
    var empty = sigset_t(), previous = sigset_t()
    sigemptyset(&empty)
    pthread_sigmask(SIG_SETMASK, &empty, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    try process.run()
}

private final class CollectedOutput: Sendable {
    private let data = Mutex<(Data, Data)>((Data(), Data()))
    func set(_ value: Data, isError: Bool) { data.withLock { if isError { $0.1 = value } else { $0.0 = value } } }
    var values: (Data, Data) { data.withLock { $0 } }
}

/// Runs a bash command line (for pipelines such as `psql … | wc -c`).
func bash(_ script: String, environment: [String: String] = [:], timeout: Duration = .seconds(60)) async throws -> ProcessResult {
    try await runProcess("/bin/bash", ["-o", "pipefail", "-c", script], environment: environment, timeout: timeout)
}

/// A libpq connection string for the proxy (or any server on 127.0.0.1).
func conninfo(port: Int, user: String = "app", database: String = "app", sslmode: String = "disable") -> String {
    "host=127.0.0.1 port=\(port) user=\(user) dbname=\(database) sslmode=\(sslmode) connect_timeout=10"
}

/// The environment for a libpq client: the password if any, and no password or service files.
func libpqEnvironment(password: String?) -> [String: String] {
    var environment = ["PGPASSFILE": "/dev/null", "PGSERVICEFILE": "/dev/null"]
    if let password { environment["PGPASSWORD"] = password }
    return environment
}

/// psql through a proxy (or any server), `-X -At -v ON_ERROR_STOP=1`, one `-c` per command.
/// The password defaults to the user's test password.
func psql(
    port: Int, user: String = "app", password: String? = nil, database: String = "app", sslmode: String = "disable",
    _ commands: [String], onErrorStop: Bool = true, stdin: Data? = nil, timeout: Duration = .seconds(60)
) async throws -> ProcessResult {
    var arguments = ["-X", "-At", "-v", "ON_ERROR_STOP=\(onErrorStop ? 1 : 0)", "-d",
                     conninfo(port: port, user: user, database: database, sslmode: sslmode)]
    for command in commands { arguments += ["-c", command] }
    return try await runProcess(
        "psql", arguments, environment: libpqEnvironment(password: password ?? TestEnvironment.passwords[user]),
        stdin: stdin, timeout: timeout)
}

/// psql as superuser `postgres` straight to the primary over its unix socket (bypassing the proxy),
/// for inspecting pg_stat_activity or terminating backends.
func superuserPsql(_ sql: String, database: String = "postgres", timeout: Duration = .seconds(20)) async throws -> ProcessResult {
    let arguments = ["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", TestEnvironment.socketDirectory,
                     "-p", "\(TestEnvironment.pgPort)", "-U", "postgres", "-d", database, "-c", sql]
    return try await runProcess("psql", arguments, environment: libpqEnvironment(password: nil), timeout: timeout)
}

/// A superuser query that must succeed; returns its trimmed output.
func superuserQuery(_ sql: String, database: String = "postgres") async throws -> String {
    let result = try await superuserPsql(sql, database: database)
    guard result.succeeded else { throw HarnessError("superuser query failed: \(result)") }
    return result.output
}

/// Runs a psycopg 3 snippet with `$SWITCHYARD_TEST_PYTHON`. The script sees `DSN` (the proxy
/// as `app`), `dsn(user=…, **kw)`, `json` and `psycopg`, and reports results by calling `emit(**values)`,
/// which prints one JSON line that ``ProcessResult/json(_:)`` decodes.
func python(
    _ script: String, port: Int, environment: [String: String] = [:], timeout: Duration = .seconds(60)
) async throws -> ProcessResult {
    let prelude = """
        import json, os, sys, threading, time
        import psycopg
        def dsn(user="app", dbname="app", port=None, **kw):
            password = kw.pop("password", json.loads(os.environ["TEST_PASSWORDS"]).get(user, ""))
            parts = dict(host="127.0.0.1", port=port or os.environ["PROXY_PORT"], user=user, password=password,
                         dbname=dbname, sslmode="disable", connect_timeout="10")
            parts.update(kw)
            return " ".join(f"{k}='{v}'" for k, v in parts.items())
        DSN = dsn()
        def emit(**values):
            print(json.dumps(values), flush=True)

        """
    let passwords = String(decoding: try JSONEncoder().encode(TestEnvironment.passwords), as: UTF8.self)
    var env = libpqEnvironment(password: nil)
    env["PROXY_PORT"] = "\(port)"
    env["TEST_PASSWORDS"] = passwords
    env["PYTHONUNBUFFERED"] = "1"
    env.merge(environment) { $1 }
    return try await runProcess(TestEnvironment.python, ["-c", prelude + script], environment: env, timeout: timeout)
}

extension ProcessResult {
    /// Decodes the last stdout line (what `emit` printed in a ``python(_:port:environment:timeout:)`` script).
    func json<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        guard let line = lines.last else { throw HarnessError("no JSON output from \(self)") }
        do {
            return try JSONDecoder().decode(T.self, from: Data(line.utf8))
        } catch {
            throw HarnessError("cannot decode \(T.self) (\(error)) from \(self)")
        }
    }
}
