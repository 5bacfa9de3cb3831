import Testing
@testable import SwitchyardProxy

@Suite struct TopologyTests {
    let servers = [
        ServerDefinition(name: "a", host: "127.0.0.1", port: 1, role: .primary),
        ServerDefinition(name: "b", host: "127.0.0.1", port: 2, role: .replica),
        ServerDefinition(name: "c", host: "127.0.0.1", port: 3, role: .standby),
    ]

    @Test func rolesAndEpochs() throws {
        let topology = Topology(servers: servers)
        #expect(topology.primary.name == "a")
        #expect(topology.replicas.map(\.name) == ["b"], "a standby gets no reads")
        #expect(topology.reloaded(servers) == topology, "an unchanged reload keeps the epoch")
        var edited = servers
        edited[1].weight = 3
        let reloaded = try #require(topology.reloaded(edited))
        #expect(reloaded.epoch == topology.epoch + 1)
        #expect(reloaded.servers == edited)
    }

    @Test func switchoverFencesTheOldPrimaryAndHoldsBackItsReplicas() throws {
        let topology = Topology(servers: servers)
        let switched = try #require(topology.switchedOver(to: "c"))
        #expect(switched.primary.name == "c")
        #expect(switched.server(named: "a")?.role == .standby)
        #expect(switched.fenced == ["a"])
        #expect(switched.followingFormerPrimary == ["b"])
        #expect(switched.replicas.map(\.name) == ["b"])
        #expect(switched.epoch == topology.epoch + 1)
        #expect(topology.switchedOver(to: "nosuch") == nil)
        #expect(topology.switchedOver(to: "a") == nil, "the primary cannot be its own target")
        let followed = switched.following("b")
        #expect(followed.followingFormerPrimary.isEmpty)
        #expect(followed.following("b") == followed)
        // Switching back: the former primary becomes primary again, and the other one is fenced.
        let back = try #require(followed.switchedOver(to: "a"))
        #expect(back.primary.name == "a")
        #expect(back.fenced == ["c"])
    }

    @Test func reloadAfterASwitchoverMustNameThePrimaryInForce() throws {
        let switched = try #require(Topology(servers: servers).switchedOver(to: "c"))
        #expect(switched.reloaded(servers) == nil, "the unedited file names the fenced former primary")
        var reconciled = servers
        reconciled[0].role = .replica
        reconciled[2].role = .primary
        let reloaded = try #require(switched.reloaded(reconciled))
        #expect(reloaded.primary.name == "c")
        #expect(reloaded.server(named: "a")?.role == .standby, "a fenced server stays out of traffic whatever the file says")
        #expect(reloaded.fenced == ["a"])
    }

    @Test func restartResumesTheRecordedPrimary() throws {
        let topology = Topology(servers: servers)
        let resumed = try #require(topology.resumed(primary: "c", fenced: ["a"]))
        #expect(resumed.primary.name == "c")
        #expect(resumed.server(named: "a")?.role == .standby)
        #expect(resumed.fenced == ["a"])
        #expect(resumed.followingFormerPrimary.isEmpty)
        #expect(topology.resumed(primary: "zz", fenced: []) == nil)
        let unchanged = try #require(topology.resumed(primary: "a", fenced: []))
        #expect(unchanged.primary.name == "a")
        #expect(!unchanged.hasSwitchedOver)
    }

    @Test func primaryStateChangesBumpTheEpochOnce() {
        let topology = Topology(servers: servers)
        let recovering = topology.withPrimaryState(.inRecovery)
        #expect(recovering.epoch == topology.epoch + 1)
        #expect(recovering.withPrimaryState(.inRecovery) == recovering)
        #expect(recovering.withPrimaryState(.writable).primaryState == .writable)
    }
}
