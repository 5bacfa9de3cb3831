import Testing
@testable import SwitchyardProxy

@Suite struct QuietWaitsTests {
    func scope(_ servers: String...) -> PauseScope { PauseScope(everything: false, servers: Set(servers)) }

    @Test func aWaitEndsWhenItsServersAreQuietAndNotBefore() {
        var waits = QuietWaits<String>()
        var busy: [String: Int] = ["primary": 2, "replica": 1]
        func count(_ scope: PauseScope) -> Int { busy.filter { scope.covers($0.key) }.values.reduce(0, +) }
        _ = waits.add(scope("primary"), "pause primary")
        _ = waits.add(PauseScope(everything: true), "pause all")
        busy["primary"] = 1
        #expect(waits.workEnded(busy: count).isEmpty)
        busy["primary"] = 0
        #expect(waits.workEnded(busy: count) == ["pause primary"])
        busy["replica"] = 0
        #expect(waits.workEnded(busy: count) == ["pause all"])
        #expect(waits.isEmpty)
    }

    @Test func resumeWithdrawsOnlyTheWaitsItUncovers() {
        var waits = QuietWaits<String>()
        _ = waits.add(scope("primary"), "primary")
        _ = waits.add(scope("replica"), "replica")
        _ = waits.add(PauseScope(everything: true), "all")
        // RESUME replica: the primary's pause still stands.
        #expect(Set(waits.pauseChanged(to: scope("primary"))) == ["replica", "all"])
        // A wider pause keeps it too.
        #expect(waits.pauseChanged(to: PauseScope(everything: true)).isEmpty)
        #expect(waits.pauseChanged(to: PauseScope()) == ["primary"])
    }

    @Test func aDeadlineEndsItsOwnWaitOnce() {
        var waits = QuietWaits<String>()
        let first = waits.add(scope("primary"), "first")
        let second = waits.add(scope("primary"), "second")
        #expect(waits.deadlinePassed(first)?.waiter == "first")
        #expect(waits.deadlinePassed(first) == nil)
        #expect(waits.workEnded { _ in 0 } == ["second"])
        #expect(waits.deadlinePassed(second) == nil)
    }
}
