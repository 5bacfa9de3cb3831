import NIOCore
import NIOEmbedded
import Synchronization
import Testing
@testable import SwitchyardProxy

/// The process-wide budget for bytes held on clients' behalf, without sockets.
@Suite struct MemoryBudgetTests {
    @Test func claimsFitUpToTheLimitAndAreGivenBackWhenTheLastHolderLetsGo() {
        let budget = MemoryBudget(limit: 100)
        var first = budget.claim(60)
        #expect(first != nil && budget.used == 60)
        #expect(budget.claim(41) == nil, "over the limit")
        let second = budget.claim(40)
        #expect(second != nil && budget.used == 100 && budget.peak == 100)
        var copy = first  // the claim travels with what it pays for
        first = nil
        #expect(first == nil && budget.used == 100, "a copy still holds it")
        copy = nil
        #expect(copy == nil && budget.used == 40)
        withExtendedLifetime(second) {}
    }

    @Test func releasingAClaimGivesItsBytesBack() {
        let budget = MemoryBudget(limit: 100)
        do {
            let claim = budget.claim(70)
            #expect(claim != nil && budget.used == 70)
        }
        #expect(budget.used == 0 && budget.peak == 70)
    }

    @Test func aWaiterIsCalledOnItsLoopWhenRoomComes() {
        let budget = MemoryBudget(limit: 100)
        let loop = EmbeddedEventLoop()
        var held: BudgetClaim? = budget.claim(80)
        #expect(budget.claim(50) == nil)
        let woken = Atomic<Int>(0)
        budget.waitForRoom(50, on: loop) { woken.add(1, ordering: .relaxed) }
        loop.run()
        #expect(woken.load(ordering: .relaxed) == 0, "no room yet")
        held = nil
        #expect(held == nil)
        loop.run()
        #expect(woken.load(ordering: .relaxed) == 1)
        #expect(budget.takeCounts() == (waits: 1, refusals: 0))
        #expect(budget.takeCounts() == (waits: 0, refusals: 0), "counted once")
    }

    @Test func aWaiterRegisteredAfterTheReleaseIsNotLeftWaiting() {
        let budget = MemoryBudget(limit: 100)
        let loop = EmbeddedEventLoop()
        // The claim failed, then room came before the session asked to wait.
        let woken = Atomic<Int>(0)
        budget.waitForRoom(50, on: loop) { woken.add(1, ordering: .relaxed) }
        loop.run()
        #expect(woken.load(ordering: .relaxed) == 1)
    }

    @Test func aLargerLimitOnReloadWakesWaiters() {
        let budget = MemoryBudget(limit: 100)
        let loop = EmbeddedEventLoop()
        let held = budget.claim(80)
        let woken = Atomic<Int>(0)
        budget.waitForRoom(50, on: loop) { woken.add(1, ordering: .relaxed) }
        budget.setLimit(200)
        loop.run()
        #expect(woken.load(ordering: .relaxed) == 1)
        #expect(budget.claim(50) != nil)
        withExtendedLifetime(held) {}
    }

    @Test func retainedCopiesMayPassTheLimitAndShrinkWhatCouldEverFit() {
        let budget = MemoryBudget(limit: 100)
        var copy: BudgetClaim? = budget.claimRetained(120)
        #expect(budget.used == 120 && budget.retained == 120)
        #expect(budget.claim(1) == nil)
        #expect(!budget.couldEverHold(1), "waiting would be for ever: refused instead")
        copy = nil
        #expect(copy == nil && budget.retained == 0 && budget.used == 0)
        #expect(budget.couldEverHold(100) && !budget.couldEverHold(101))
    }
}
