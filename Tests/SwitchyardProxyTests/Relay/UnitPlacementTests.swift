import PostgresWire
import Testing
@testable import SwitchyardProxy

/// The placement of a unit of work, decision by decision, with no sessions or pools.
@Suite struct UnitPlacementTests {
    func facts(draining: Bool = false, target: RoutePlanner.Target, inRecovery: String? = nil, mayWrite: Bool = false) -> UnitPlacement.Facts {
        UnitPlacement.Facts(draining: draining, target: target, primaryInRecovery: inRecovery, mayWrite: mayWrite)
    }

    @Test func shuttingDownTerminatesBeforeAnythingElseIsAsked() {
        var asked = false
        let placement = UnitPlacement.decide(facts(draining: true, target: .replica)) { asked = true; return .anyReplica }
        guard case .terminate(let error) = placement else { Issue.record("\(placement)"); return }
        #expect(error.code == SQLState.adminShutdown)
        #expect(error.isFatal)
        #expect(!asked, "the read floor is not consulted (nor its metrics counted) for a client being closed")
    }

    @Test func aWriteToAPrimaryInRecoveryIsRefusedNamingTheServer() {
        let placement = UnitPlacement.decide(facts(target: .primary, inRecovery: "db1", mayWrite: true)) { .anyReplica }
        guard case .refuse(let error) = placement else { Issue.record("\(placement)"); return }
        #expect(error.code == SQLState.readOnlySQLTransaction)
        #expect(error.message.contains("\"db1\""))
        #expect(error.hint != nil)
    }

    @Test func readsAndHealthyPrimariesLeaseThePrimary() {
        #expect(UnitPlacement.decide(facts(target: .primary, inRecovery: "db1", mayWrite: false)) { .anyReplica } == .lease(.primary, replayed: nil))
        #expect(UnitPlacement.decide(facts(target: .primary, mayWrite: true)) { .anyReplica } == .lease(.primary, replayed: nil))
    }

    @Test func thePrimaryNeverAsksTheReadFloor() {
        var asked = false
        _ = UnitPlacement.decide(facts(target: .primary)) { asked = true; return .wait(LSN(1)) }
        #expect(!asked)
    }

    @Test(arguments: [
        (ClientSession.ReadPlacement.anyReplica, UnitPlacement.lease(.replica, replayed: nil)),
        (.replica(LSN(0x1_0000_0010)), .lease(.replica, replayed: LSN(0x1_0000_0010))),
        (.primary, .lease(.primary, replayed: nil)),
        (.wait(LSN(42)), .waitForReplay(LSN(42))),
    ])
    func replicaReadsFollowTheReadFloor(read: ClientSession.ReadPlacement, expected: UnitPlacement) {
        var asked = 0
        #expect(UnitPlacement.decide(facts(target: .replica)) { asked += 1; return read } == expected)
        #expect(asked == 1)
    }

    @Test func noEligibleReplicaFallsBackOrIsRefusedWith57P03() {
        #expect(UnitPlacement.noReplicaEligible(fallbackToPrimary: true) == .lease(.primary, replayed: nil))
        let refused = UnitPlacement.noReplicaEligible(fallbackToPrimary: false)
        guard case .refuse(let error) = refused else { Issue.record("\(refused)"); return }
        #expect(error.code == SQLState.cannotConnectNow)
        #expect(error.hint?.contains("replica_fallback") == true)
    }
}
