import Testing
@testable import SwitchyardProxy

@Suite struct ReplicaHealthTests {
    func health() -> ReplicaHealth { ReplicaHealth(maxLagBytes: 1000, maxLagSeconds: 5, hysteresis: 3) }
    let good = ReplicaProbe(inRecovery: true, lagBytes: 10, lagSeconds: 0.1)

    /// Applies a probe and returns whether eligibility changed (#expect cannot call mutating methods).
    func changed(_ replica: inout ReplicaHealth, _ apply: (inout ReplicaHealth) -> Bool) -> Bool { apply(&replica) }

    @Test func firstGoodProbeMakesAReplicaEligible() {
        var replica = health()
        #expect(changed(&replica) { $0.probeSucceeded(good) })
        #expect(replica.isEligible)
    }

    @Test func lagOverTheLimitExcludesAtOnceAndReturnsOnlyAfterHysteresis() {
        var replica = health()
        _ = replica.probeSucceeded(good)
        #expect(changed(&replica) { $0.probeSucceeded(ReplicaProbe(inRecovery: true, lagBytes: 5000, lagSeconds: 1)) })
        #expect(!replica.isEligible)
        #expect(replica.reason.contains("max_replica_lag"))
        #expect(!changed(&replica) { $0.probeSucceeded(good) })
        #expect(!changed(&replica) { $0.probeSucceeded(good) })
        #expect(!replica.isEligible, "two good probes are not enough")
        #expect(changed(&replica) { $0.probeSucceeded(good) })
        #expect(replica.isEligible)
    }

    @Test func aBadProbeInTheMiddleRestartsTheCount() {
        var replica = health()
        _ = replica.probeFailed("connection refused")
        _ = replica.probeSucceeded(good)
        _ = replica.probeSucceeded(good)
        _ = replica.probeSucceeded(ReplicaProbe(inRecovery: true, lagBytes: nil, lagSeconds: 60))
        _ = replica.probeSucceeded(good)
        _ = replica.probeSucceeded(good)
        #expect(!replica.isEligible)
        _ = replica.probeSucceeded(good)
        #expect(replica.isEligible)
    }

    @Test func promotedReplicaIsExcluded() {
        var replica = health()
        _ = replica.probeSucceeded(good)
        _ = replica.probeSucceeded(ReplicaProbe(inRecovery: false, lagBytes: 0, lagSeconds: 0))
        #expect(!replica.isEligible)
        #expect(replica.reason.contains("not in recovery"))
    }

    @Test func unreachableReplicaIsExcluded() {
        var replica = health()
        _ = replica.probeSucceeded(good)
        #expect(changed(&replica) { $0.probeFailed("connection refused") })
        #expect(!changed(&replica) { $0.probeFailed("connection refused") }, "no change, no repeated log line")
        #expect(replica.reason.contains("unreachable"))
    }

    @Test func parsesLSNs() {
        #expect(parseLSN("0/3000148") == 0x3000148)
        #expect(parseLSN("16/B374D848") == Int64(0x16_B374_D848))
        #expect(parseLSN("garbage") == nil)
    }
}
