import Foundation
import Synchronization
import Testing

/// This process's memory, from /proc/self/status. The proxy runs in this process, so a relay
/// that buffered a large row would show up here.
enum ProcessMemory {
    /// A `Vm…` line of /proc/self/status, in bytes.
    static func statusValue(_ key: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            let kilobytes = line.dropFirst(key.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { Int($0) } ?? 0
            return kilobytes * 1024
        }
        return 0
    }

    static var residentBytes: Int { statusValue("VmRSS") }
    static var peakResidentBytes: Int { statusValue("VmHWM") }

    /// Resets VmHWM to the current RSS (writing 5 to clear_refs, Linux 4.0+).
    static func resetPeak() -> Bool {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? handle.close() }
        return (try? handle.write(contentsOf: Data("5".utf8))) != nil
    }

    /// Runs `body` and returns how far the resident set grew above its size at the start, at its
    /// peak: the kernel's high-water mark when it can be reset, else samples every 10 ms.
    static func measurePeakGrowth<T>(_ body: () async throws -> T) async rethrows -> (T, growth: Int) {
        let before = residentBytes
        if before == 0 { Issue.record("cannot read VmRSS from /proc/self/status: memory growth is not measured") }
        let peakReset = resetPeak()
        let sampler = Sampler(start: before)
        Thread { sampler.run() }.start()
        defer { sampler.stop.store(true, ordering: .relaxed) }
        let result = try await body()
        let peak = max(sampler.peak.load(ordering: .relaxed), peakReset ? peakResidentBytes : 0)
        return (result, max(0, peak - before))
    }
}

private final class Sampler: Sendable {
    let peak: Atomic<Int>
    let stop = Atomic<Bool>(false)

    init(start: Int) { peak = Atomic(start) }

    func run() {
        while !stop.load(ordering: .relaxed) {
            let rss = ProcessMemory.residentBytes
            if rss > peak.load(ordering: .relaxed) { peak.store(rss, ordering: .relaxed) }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }
}

extension Int {
    static func megabytes(_ count: Int) -> Int { count * 1024 * 1024 }
    var inMegabytes: String { String(format: "%.1f MB", Double(self) / 1_048_576) }
}
