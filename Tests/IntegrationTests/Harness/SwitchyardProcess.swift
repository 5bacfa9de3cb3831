import Foundation
import Synchronization

/// The real `switchyard` executable (built next to the test bundle by `swift build --build-tests`)
/// running as a child process. For behaviour that would take the whole test process down with it,
/// such as a crash of the proxy.
final class SwitchyardProcess: Sendable {
    let port: Int
    let directory: String
    private let process: Process
    private let log: String

    /// The executable in the build directory of this test bundle.
    static var executablePath: String {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return bundle.appendingPathComponent("switchyard").path
    }

    private init(process: Process, port: Int, directory: String, log: String) {
        (self.process, self.port, self.directory, self.log) = (process, port, directory, log)
    }

    /// Starts `switchyard run` with ``TestProxy/configurationText(_:)`` on a free port and waits
    /// until it accepts connections.
    static func start(_ settings: [String: String]) async throws -> SwitchyardProcess {
        try TestEnvironment.requirePostgres()
        guard FileManager.default.isExecutableFile(atPath: executablePath) else {
            throw HarnessError("no switchyard executable at \(executablePath): run `swift build --build-tests` first")
        }
        let port = try freePort()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("switchyard-it-proc")).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var settings = settings
        settings["listen_port"] = "\(port)"
        settings["log_level"] = settings["log_level"] ?? "info"
        try TestProxy.configurationText(settings).write(toFile: directory + "/proxy.conf", atomically: true, encoding: .utf8)
        let log = directory + "/switchyard.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executablePath)
        process.arguments = ["run", "--config", directory + "/proxy.conf"]
        // One handle for both; the child gets its own copies, so ours is closed once it runs.
        let logHandle = FileHandle(forWritingAtPath: log)
        process.standardOutput = logHandle
        process.standardError = logHandle
        process.standardInput = FileHandle.nullDevice
        try startWithDefaultSignalMask(process)
        try? logHandle?.close()
        let child = SwitchyardProcess(process: process, port: port, directory: directory, log: log)
        let listening = await eventually(within: .seconds(10)) {
            (try? RawSocket.connect(port: port))?.close() != nil || !process.isRunning
        }
        guard listening, process.isRunning else {
            child.stop()
            throw HarnessError("switchyard did not start listening on \(port):\n\(child.output)")
        }
        return child
    }

    var isRunning: Bool { process.isRunning }
    var terminationSignal: Int32? {
        process.isRunning || process.terminationReason != .uncaughtSignal ? nil : process.terminationStatus
    }

    /// What the proxy logged (stdout and stderr), the last `limit` characters.
    func output(limit: Int = 6000) -> String {
        String((try? String(contentsOfFile: log, encoding: .utf8))?.suffix(limit) ?? "")
    }
    var output: String { output() }

    /// The lines of a crash report worth reading: the failure message and the crashed thread's top frames.
    var crashSummary: String {
        let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").components(separatedBy: "\n")
        var summary = lines.filter { $0.contains("Precondition failed") || $0.contains("Fatal error") || $0.contains("Program crashed") }
        if let crashed = lines.firstIndex(where: { $0.contains(" crashed:") }) {
            summary += lines[crashed..<min(lines.count, crashed + 10)].filter { !$0.isEmpty }
        }
        return summary.isEmpty ? output(limit: 2000) : summary.joined(separator: "\n")
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning, Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A TCP port nobody listens on right now (bound to 0, read back, released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw HarnessError("cannot find a free port: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}
