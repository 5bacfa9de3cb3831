import Foundation

/// What `state_file` records after a switchover: the primary in force and the fenced former
/// primaries. Written before any held client goes on (write, fsync, rename, fsync the directory), and
/// read at start-up, so a restarted proxy never sends writes to a former primary.
struct SwitchoverStateFile: Codable, Sendable, Equatable {
    /// How far a switchover got that this process may not have lived to finish.
    enum Step: String, Codable, Sendable {
        /// The fence is going up; the target has not been asked to promote.
        case fencing
        /// Promotion was requested: the target may become (or be) a primary.
        case promoting
    }

    var primary: String
    var fenced: [String]
    /// When the file was written (ISO 8601), for the operator reading it.
    var switchedAt: String
    /// Set while a switchover to this server runs; a restart that finds it decides the outcome first.
    var switchingTo: String?
    var step: Step?

    enum CodingKeys: String, CodingKey {
        case primary, fenced, step
        case switchedAt = "switched_at"
        case switchingTo = "switching_to"
    }

    init(primary: String, fenced: [String], switchedAt: String = ISO8601DateFormatter().string(from: Date()),
         switchingTo: String? = nil, step: Step? = nil) {
        (self.primary, self.fenced, self.switchedAt, self.switchingTo, self.step) = (primary, fenced, switchedAt, switchingTo, step)
    }

    struct Problem: Error, CustomStringConvertible {
        var description: String
    }

    /// The recorded state; nil when the file does not exist (no switchover yet).
    static func read(_ path: String) throws(Problem) -> SwitchoverStateFile? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            return try JSONDecoder().decode(SwitchoverStateFile.self, from: data)
        } catch {
            throw Problem(description: "cannot read state_file '\(path)': \(error)")
        }
    }

    /// Replaces the file atomically and durably.
    func write(to path: String) throws(Problem) {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let temporary = path + ".tmp"
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            var data = try encoder.encode(self)
            data.append(UInt8(ascii: "\n"))
            try Self.writeSynced(data, to: temporary)
            guard rename(temporary, path) == 0 else { throw Problem(description: "rename: \(String(cString: strerror(errno)))") }
            // The rename itself is durable once the directory is synced.
            let descriptor = open(directory.isEmpty ? "." : directory, O_RDONLY)
            if descriptor >= 0 { _ = fsync(descriptor); close(descriptor) }
        } catch let problem as Problem {
            throw Problem(description: "cannot write state_file '\(path)': \(problem)")
        } catch {
            throw Problem(description: "cannot write state_file '\(path)': \(error)")
        }
    }

    private static func writeSynced(_ data: Data, to path: String) throws(Problem) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else { throw Problem(description: "open: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let written = data.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
        guard written == data.count else { throw Problem(description: "write: \(String(cString: strerror(errno)))") }
        guard fsync(descriptor) == 0 else { throw Problem(description: "fsync: \(String(cString: strerror(errno)))") }
    }
}
