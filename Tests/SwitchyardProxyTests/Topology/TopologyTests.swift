import Testing
@testable import SwitchyardProxy

@Suite struct TopologyTests {
    let servers = [
        ServerDefinition(name: "a", host: "127.0.0.1", port: 1, role: .primary),
        ServerDefinition(name: "b", host: "127.0.0.1", port: 2, role: .replica),
        ServerDefinition(name: "c", host: "127.0.0.1", port: 3, role: .replica),
    ]

    @Test func rolesAndEpochs() {
        let topology = Topology(servers: servers)
        #expect(topology.primary.name == "a")
        #expect(topology.replicas.map(\.name) == ["b", "c"])
        #expect(topology.reloaded(servers) == topology, "an unchanged reload keeps the epoch")
        var edited = servers
        edited[2].weight = 3
        let reloaded = topology.reloaded(edited)
        #expect(reloaded.epoch == topology.epoch + 1)
        #expect(reloaded.servers == edited)
    }

    @Test func promotingMovesThePrimaryRole() throws {
        let topology = Topology(servers: servers)
        let promoted = try #require(topology.promoting("c"))
        #expect(promoted.primary.name == "c")
        #expect(promoted.replicas.map(\.name) == ["a", "b"])
        #expect(promoted.epoch == topology.epoch + 1)
        #expect(topology.promoting("nosuch") == nil)
        #expect(topology.promoting("a") == topology)
    }

    @Test func primaryStateChangesBumpTheEpochOnce() {
        let topology = Topology(servers: servers)
        let recovering = topology.withPrimaryState(.inRecovery)
        #expect(recovering.epoch == topology.epoch + 1)
        #expect(recovering.withPrimaryState(.inRecovery) == recovering)
        #expect(recovering.withPrimaryState(.writable).primaryState == .writable)
    }
}
