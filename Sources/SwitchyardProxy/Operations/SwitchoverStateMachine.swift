/// The decisions of one SWITCHOVER, as a pure value: the runner reports what happened (past tense),
/// the machine says what to do next (imperative). Every failure before promotion returns to the old
/// primary, un-fenced; promotion is the point of no return, after which the switch completes forward.
/// Keeping this apart from the SQL lets every path be tested event by event, with no servers.
struct SwitchoverStateMachine {
    struct Request: Sendable, Equatable {
        var target: String
        var drainTimeout: Duration
        var dryRun = false
        /// At the drain deadline, go on (the fence terminates the stragglers) instead of aborting.
        var force = false
    }

    enum Phase: String, Sendable, CaseIterable {
        case preflight, drain, fence, catchUp = "catch-up", promote, flip
    }

    /// What preflight proved about the target.
    struct Target: Sendable, Equatable {
        enum Kind: String, Sendable { case physicalStandby = "physical standby" }
        var kind: Kind
        var lagBytes: Int64
    }

    enum Event: Sendable, Equatable {
        case preflightPassed(Target)
        case preflightFailed(String)
        case drainEnded(QuietWaitOutcome)
        /// The old primary is read-only, its other client backends are gone, and nothing comes after `finalLSN`.
        case fenced(finalLSN: LSN)
        /// Some of the fence may be in place, so rolling back undoes it.
        case fenceFailed(String)
        case caughtUp(reached: LSN)
        case catchUpFailed(String)
        case promoted
        /// `targetPromoting`: the target may still become a primary (a timeout after the request), so
        /// the old one must stay fenced; otherwise (refused before the request took) roll back.
        case promotionFailed(String, targetPromoting: Bool)
        /// The new topology is published and persisted; held clients went on to the new primary.
        case published(stateFileProblem: String?)
        /// Whether anything wrote to the old primary after the fence.
        case fenceChecked(FenceCheck)
        case rolledBack(problem: String?)
    }

    enum FenceCheck: Sendable, Equatable {
        case held
        /// Something was written after the fence (the description says what moved).
        case broken(String)
        case unknown(String)
    }

    enum Action: Sendable, Equatable {
        case runPreflight
        case drain(timeout: Duration)
        case fence
        case waitForCatchUp(LSN)
        case promote
        case publish
        case checkFence
        /// Resume on the old primary; `unfence` undoes the read-only setting first.
        case rollBack(unfence: Bool)
        case finish(Outcome)
    }

    enum Outcome: Sendable, Equatable {
        case switched(warnings: [String])
        case dryRun
        /// Preflight said no: nothing was held.
        case refused(String)
        /// Stopped partway before promotion: the old primary serves again, nothing lost.
        case aborted(phase: Phase, reason: String, rollbackProblem: String?)
        /// Failed after the point of no return: the old primary stays fenced and an operator must look.
        case failed(phase: Phase, reason: String)

        var label: String {
            switch self {
            case .switched: "switched"
            case .dryRun: "dry run passed"
            case .refused: "refused"
            case .aborted: "aborted"
            case .failed: "failed"
            }
        }
    }

    enum State: Sendable, Equatable {
        case initial
        case preflighting
        case draining(Target)
        case fencing(Target)
        case catchingUp(Target, finalLSN: LSN)
        case promoting(Target, finalLSN: LSN, reached: LSN)
        case publishing(Target, finalLSN: LSN, reached: LSN)
        case checkingFence(Target, finalLSN: LSN, reached: LSN, warnings: [String])
        case rollingBack(phase: Phase, reason: String)
        case finished(Outcome)
    }

    let request: Request
    private(set) var state: State = .initial
    private(set) var target: Target?
    private(set) var finalLSN: LSN?
    private(set) var reachedLSN: LSN?

    init(_ request: Request) { self.request = request }

    /// The phase running now (for progress lines and timings); nil before and after.
    var phase: Phase? {
        switch state {
        case .initial, .finished: nil
        case .preflighting: .preflight
        case .draining: .drain
        case .fencing: .fence
        case .catchingUp: .catchUp
        case .promoting: .promote
        case .publishing, .checkingFence: .flip
        case .rollingBack(let phase, _): phase
        }
    }

    mutating func start() -> Action {
        guard case .initial = state else { preconditionFailure("a switchover starts once") }
        state = .preflighting
        return .runPreflight
    }

    mutating func happened(_ event: Event) -> Action {
        switch (state, event) {
        case (.preflighting, .preflightPassed(let target)):
            self.target = target
            if request.dryRun { return finish(.dryRun) }
            state = .draining(target)
            return .drain(timeout: request.drainTimeout)
        case (.preflighting, .preflightFailed(let reason)):
            return finish(.refused(reason))

        case (.draining(let target), .drainEnded(.quiet)):
            state = .fencing(target)
            return .fence
        case (.draining(let target), .drainEnded(.timedOut(let busy))):
            if request.force {
                // The fence terminates what still runs; those clients see their transaction fail.
                state = .fencing(target)
                return .fence
            }
            return rollBack(.drain, "\(busy) transaction\(busy == 1 ? "" : "s") still running at the drain deadline (\(request.drainTimeout))",
                            unfence: false)
        case (.draining, .drainEnded(.withdrawn)):
            return rollBack(.drain, "RESUME lifted the hold", unfence: false)

        case (.fencing(let target), .fenced(let lsn)):
            finalLSN = lsn
            state = .catchingUp(target, finalLSN: lsn)
            return .waitForCatchUp(lsn)
        case (.fencing, .fenceFailed(let reason)):
            return rollBack(.fence, reason, unfence: true)

        case (.catchingUp(let target, let lsn), .caughtUp(let reached)):
            reachedLSN = reached
            state = .promoting(target, finalLSN: lsn, reached: reached)
            return .promote
        case (.catchingUp, .catchUpFailed(let reason)):
            return rollBack(.catchUp, reason, unfence: true)

        case (.promoting(let target, let lsn, let reached), .promoted):
            state = .publishing(target, finalLSN: lsn, reached: reached)
            return .publish
        case (.promoting, .promotionFailed(let reason, let targetPromoting)):
            if targetPromoting {
                return finish(.failed(phase: .promote, reason: reason + "; the target may still become a primary, so the old primary stays fenced"))
            }
            return rollBack(.promote, reason, unfence: true)

        case (.publishing(let target, let lsn, let reached), .published(let problem)):
            let warnings = problem.map { ["the new primary is in force but was not recorded in state_file: \($0)"] } ?? []
            state = .checkingFence(target, finalLSN: lsn, reached: reached, warnings: warnings)
            return .checkFence

        case (.checkingFence(_, _, _, var warnings), .fenceChecked(let check)):
            switch check {
            case .held: break
            case .broken(let what): warnings.append("something wrote to the former primary after it was fenced: \(what)")
            case .unknown(let why): warnings.append("could not confirm that the fence of the former primary held: \(why)")
            }
            return finish(.switched(warnings: warnings))

        case (.rollingBack(let phase, let reason), .rolledBack(let problem)):
            return finish(.aborted(phase: phase, reason: reason, rollbackProblem: problem))

        default:
            preconditionFailure("switchover event \(event) in state \(state)")
        }
    }

    private mutating func rollBack(_ phase: Phase, _ reason: String, unfence: Bool) -> Action {
        state = .rollingBack(phase: phase, reason: reason)
        return .rollBack(unfence: unfence)
    }

    private mutating func finish(_ outcome: Outcome) -> Action {
        state = .finished(outcome)
        return .finish(outcome)
    }
}
