import Foundation
import PostgresWire

/// The one-row answer of SWITCHOVER and a row of SHOW SWITCHOVER: what happened, between which
/// servers, the WAL positions that prove it, how long clients were held, and each phase's time.
struct SwitchoverReport: Sendable, Equatable {
    var startedAt: Date
    var outcome: SwitchoverStateMachine.Outcome
    var oldPrimary: String
    var target: String
    var targetKind: String?
    var finalLSN: LSN?
    var reachedLSN: LSN?
    var heldClients = 0
    /// From the start of the hold until held clients went on (an upper bound for each of them).
    var longestHold: Duration?
    var phases: [SwitchoverStateMachine.Phase: Duration] = [:]
    var total: Duration = .zero

    var detail: String {
        switch outcome {
        case .switched(let warnings): warnings.isEmpty ? "" : warnings.joined(separator: "; ")
        case .dryRun: "every check passed; nothing was changed"
        case .refused(let reason): reason
        case .aborted(let phase, let reason, let problem):
            "aborted in \(phase.rawValue): \(reason); \(oldPrimary) serves again" + (problem.map { "; rolling back had a problem: \($0)" } ?? "")
        case .failed(let phase, let reason): "failed in \(phase.rawValue): \(reason)"
        }
    }

    static let columns: [(name: String, type: ColumnType)] = [
        ("started_at", .text), ("outcome", .text), ("old_primary", .text), ("new_primary", .text), ("target_kind", .text),
        ("final_lsn", .text), ("reached_lsn", .text), ("held_clients", .int8), ("longest_hold_ms", .float8),
    ] + SwitchoverStateMachine.Phase.allCases.map { ("\($0.rawValue.replacingOccurrences(of: "-", with: "_"))_ms", ColumnType.float8) }
        + [("total_ms", .float8), ("detail", .text)]

    var row: [ColumnValue] {
        func milliseconds(_ duration: Duration?) -> ColumnValue { duration.map { .double($0.inSeconds * 1000) } ?? .null }
        let switched: Bool = if case .switched = outcome { true } else { false }
        return [
            .text(ISO8601DateFormatter().string(from: startedAt)), .text(outcome.label), .text(oldPrimary),
            .text(switched ? target : oldPrimary), targetKind.map(ColumnValue.text) ?? .null,
            finalLSN.map { .text($0.description) } ?? .null, reachedLSN.map { .text($0.description) } ?? .null,
            .integer(Int64(heldClients)), milliseconds(longestHold),
        ] + SwitchoverStateMachine.Phase.allCases.map { milliseconds(phases[$0]) } + [milliseconds(total), .text(detail)]
    }
}
