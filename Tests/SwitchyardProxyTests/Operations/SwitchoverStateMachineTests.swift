import Foundation
import Testing
@testable import SwitchyardProxy

/// The switchover's decisions, event by event: every failure before promotion rolls back to the old
/// primary (un-fencing it once the fence went up); promotion is the point of no return.
@Suite struct SwitchoverStateMachineTests {
    typealias Machine = SwitchoverStateMachine
    let target = Machine.Target(kind: .physicalStandby, lagBytes: 128)
    let final = LSN(0x3_0000_1000)

    func machine(dryRun: Bool = false, force: Bool = false) -> Machine {
        Machine(.init(target: "standby", drainTimeout: .seconds(2), dryRun: dryRun, force: force))
    }

    /// A machine that has fenced and seen the target catch up: the next step is promotion.
    func caughtUp() -> Machine {
        var m = machine()
        _ = m.start()
        _ = m.happened(.preflightPassed(target))
        _ = m.happened(.drainEnded(.quiet))
        _ = m.happened(.fenced(finalLSN: final))
        _ = m.happened(.caughtUp(reached: final))
        return m
    }

    @Test func theWholeWayToASwitch() {
        var m = machine()
        #expect(m.start() == .runPreflight)
        #expect(m.phase == .preflight)
        #expect(m.happened(.preflightPassed(target)) == .drain(timeout: .seconds(2)))
        #expect(m.happened(.drainEnded(.quiet)) == .fence)
        #expect(m.happened(.fenced(finalLSN: final)) == .waitForCatchUp(final))
        #expect(m.phase == .catchUp)
        #expect(m.happened(.caughtUp(reached: final)) == .promote)
        #expect(m.happened(.promoted) == .publish)
        #expect(m.happened(.published(stateFileProblem: nil)) == .checkFence)
        #expect(m.happened(.fenceChecked(.held)) == .finish(.switched(warnings: [])))
        #expect(m.finalLSN == final && m.reachedLSN == final && m.target == target)
        #expect(m.phase == nil)
    }

    @Test func aDryRunStopsAfterPreflight() {
        var m = machine(dryRun: true)
        _ = m.start()
        #expect(m.happened(.preflightPassed(target)) == .finish(.dryRun))
    }

    @Test func aRefusedPreflightHoldsNobody() {
        var m = machine()
        _ = m.start()
        #expect(m.happened(.preflightFailed("not a standby")) == .finish(.refused("not a standby")))
    }

    @Test func aDrainDeadlineAbortsWithoutFencing() {
        var m = machine()
        _ = m.start()
        _ = m.happened(.preflightPassed(target))
        #expect(m.happened(.drainEnded(.timedOut(busy: 2))) == .rollBack(unfence: false))
        guard case .finish(.aborted(let phase, let reason, nil)) = m.happened(.rolledBack(problem: nil)) else {
            Issue.record("expected an abort"); return
        }
        #expect(phase == .drain)
        #expect(reason.contains("2 transactions still running"))
    }

    @Test func forceFencesAtTheDrainDeadline() {
        var m = machine(force: true)
        _ = m.start()
        _ = m.happened(.preflightPassed(target))
        #expect(m.happened(.drainEnded(.timedOut(busy: 1))) == .fence)
    }

    @Test func resumeDuringTheDrainAborts() {
        var m = machine(force: true)
        _ = m.start()
        _ = m.happened(.preflightPassed(target))
        #expect(m.happened(.drainEnded(.withdrawn)) == .rollBack(unfence: false))
    }

    @Test(arguments: ["fence", "catch-up", "promote"])
    func failuresBeforeTheTargetCanPromoteUnfence(_ failingPhase: String) {
        var m = machine()
        _ = m.start()
        _ = m.happened(.preflightPassed(target))
        _ = m.happened(.drainEnded(.quiet))
        let action: Machine.Action
        switch failingPhase {
        case "fence": action = m.happened(.fenceFailed("boom"))
        case "catch-up":
            _ = m.happened(.fenced(finalLSN: final))
            action = m.happened(.catchUpFailed("target died"))
        default:
            _ = m.happened(.fenced(finalLSN: final))
            _ = m.happened(.caughtUp(reached: final))
            action = m.happened(.promotionFailed("permission denied", targetPromoting: false))
        }
        #expect(action == .rollBack(unfence: true))
        guard case .finish(.aborted(let phase, _, let problem)) = m.happened(.rolledBack(problem: "x")) else {
            Issue.record("expected an abort"); return
        }
        #expect(phase.rawValue == failingPhase)
        #expect(problem == "x")
    }

    @Test func aPromotionThatMayStillHappenKeepsTheOldPrimaryFenced() {
        var m = caughtUp()
        guard case .finish(.failed(.promote, let reason)) = m.happened(.promotionFailed("timed out", targetPromoting: true)) else {
            Issue.record("expected a failure past the point of no return"); return
        }
        #expect(reason.contains("stays fenced"))
    }

    @Test func aBrokenFenceAndAStateFileProblemAreReported() {
        var m = caughtUp()
        _ = m.happened(.promoted)
        _ = m.happened(.published(stateFileProblem: "disk full"))
        guard case .finish(.switched(let warnings)) = m.happened(.fenceChecked(.broken("xid 7"))) else {
            Issue.record("expected a switch"); return
        }
        #expect(warnings.count == 2)
        #expect(warnings[0].contains("disk full"))
        #expect(warnings[1].contains("xid 7"))
    }
}

@Suite struct LSNTests {
    @Test func parsesAndPrintsAsPostgresDoes() throws {
        let lsn = try #require(LSN("16/B374D848"))
        #expect(lsn.value == 0x16_B374_D848)
        #expect(lsn.description == "16/B374D848")
        #expect(LSN("0/0")?.value == 0)
        for bad in ["", "16", "16/", "/1", "x/1", "1/2/3", "100000000/0"] { #expect(LSN(bad) == nil, "\(bad)") }
    }

    @Test func replayCoversAnInsertPositionJustPastAPageHeader() {
        let page = LSN.pageSize
        // Replay ends exactly at a page boundary; the insert position sits after the next page's header.
        #expect(LSN(5 * page).covers(insertPosition: LSN(5 * page + 24)))
        #expect(LSN(2048 * page).covers(insertPosition: LSN(2048 * page + 40)))
        #expect(LSN(5 * page + 24).covers(insertPosition: LSN(5 * page + 24)))
        // Anything else must be reached.
        #expect(!LSN(5 * page - 8).covers(insertPosition: LSN(5 * page + 24)))
        #expect(!LSN(5 * page).covers(insertPosition: LSN(5 * page + 32)))
        #expect(!LSN(5 * page + 100).covers(insertPosition: LSN(5 * page + 200)))
    }
}

@Suite struct SwitchoverStateFileTests {
    @Test func writesAtomicallyAndReadsBack() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("switchyard-state-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try SwitchoverStateFile.read(path) == nil, "no file: no switchover yet")
        let state = SwitchoverStateFile(primary: "standby", fenced: ["primary"], switchedAt: "2026-12-02T04:00:00Z")
        try state.write(to: path)
        #expect(try SwitchoverStateFile.read(path) == state)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
        try "{not json".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: SwitchoverStateFile.Problem.self) { try SwitchoverStateFile.read(path) }
    }
}

/// A restart that finds a switchover unfinished in state_file: the target's own state decides.
@Suite struct SwitchoverRecoveryTests {
    typealias Failure = SwitchoverRecovery.ProbeFailure

    @Test func aPromotedTargetCompletesTheSwitch() {
        #expect(SwitchoverRecovery.decide(step: .fencing, targetInRecovery: .success(false)) == .completeForward)
        #expect(SwitchoverRecovery.decide(step: .promoting, targetInRecovery: .success(false)) == .completeForward)
    }

    @Test func aStandbyNeverAskedToPromoteRollsBack() {
        #expect(SwitchoverRecovery.decide(step: .fencing, targetInRecovery: .success(true)) == .rollBack)
    }

    @Test func anythingUncertainIsLeftToAnOperator() {
        guard case .undecided = SwitchoverRecovery.decide(step: .promoting, targetInRecovery: .success(true)) else {
            Issue.record("a requested promotion may still happen"); return
        }
        guard case .undecided(let why) = SwitchoverRecovery.decide(step: .fencing, targetInRecovery: .failure(Failure(description: "refused"))) else {
            Issue.record("an unreachable target decides nothing"); return
        }
        #expect(why.contains("refused"))
    }

    @Test func theStepSurvivesTheFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("switchyard-state-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let state = SwitchoverStateFile(primary: "a", fenced: [], switchedAt: "x", switchingTo: "b", step: .promoting)
        try state.write(to: path)
        #expect(try SwitchoverStateFile.read(path) == state)
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains("\"switching_to\" : \"b\""))
    }
}
