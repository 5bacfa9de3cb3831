/// The servers as the proxy uses them now: which one is the primary, which serve reads, and whether
/// the primary is really writable. Roles change at runtime (a switchover promotes a server; RELOAD may
/// edit them), so everything that routes, pools, probes or reports reads this value, never the roles in
/// the configuration file. Each change has a new epoch. A pure value, published to every event loop.
public struct Topology: Sendable, Equatable {
    /// What the health monitor last saw of the server in the primary role.
    public enum PrimaryState: String, Sendable, Equatable {
        /// Not probed yet, or writable as far as the last probe showed.
        case writable
        /// `pg_is_in_recovery()` is true: it is a standby, and every write would fail with 25006.
        case inRecovery = "in recovery"
    }

    /// Increases with every change, so a reader can tell an old copy from a new one.
    public let epoch: UInt64
    /// In configuration order, with the roles in force. Exactly one has `role == .primary`.
    public let servers: [ServerDefinition]
    public let primaryState: PrimaryState
    /// Former primaries a switchover fenced (read-only): they never get traffic again.
    public let fenced: Set<String>
    /// Replicas that still stream from a former primary: no reads until the health monitor sees them
    /// on the new primary's timeline, since they would never see another write.
    public let followingFormerPrimary: Set<String>

    /// The servers of a validated configuration (which guarantees exactly one primary).
    public init(servers: [ServerDefinition], epoch: UInt64 = 1, primaryState: PrimaryState = .writable,
                fenced: Set<String> = [], followingFormerPrimary: Set<String> = []) {
        precondition(servers.filter { $0.role == .primary }.count == 1, "a topology needs exactly one primary")
        self.servers = servers
        self.epoch = epoch
        self.primaryState = primaryState
        self.fenced = fenced
        self.followingFormerPrimary = followingFormerPrimary
    }

    /// Whether a switchover (this run's, or one recorded in `state_file`) moved the primary away from
    /// the one the configuration file names.
    public var hasSwitchedOver: Bool { !fenced.isEmpty }

    /// After a switchover: `name` is the primary, the old primary is fenced (role standby), and the
    /// replicas wait until they follow the new primary. Nil for an unknown server or the primary itself.
    public func switchedOver(to name: String) -> Topology? {
        guard server(named: name) != nil, name != primary.name else { return nil }
        let oldPrimary = primary.name
        let servers = self.servers.map { server -> ServerDefinition in
            var server = server
            if server.name == name { server.role = .primary } else if server.name == oldPrimary { server.role = .standby }
            return server
        }
        let replicas = Set(servers.filter { $0.role == .replica }.map(\.name))
        return Topology(servers: servers, epoch: epoch + 1, fenced: fenced.union([oldPrimary]).subtracting([name]),
                        followingFormerPrimary: replicas)
    }

    /// The health monitor saw `replica` streaming on the new primary's timeline.
    public func following(_ replica: String) -> Topology {
        guard followingFormerPrimary.contains(replica) else { return self }
        return Topology(servers: servers, epoch: epoch + 1, primaryState: primaryState, fenced: fenced,
                        followingFormerPrimary: followingFormerPrimary.subtracting([replica]))
    }

    public var primary: ServerDefinition { servers.first { $0.role == .primary }! }
    public var replicas: [ServerDefinition] { servers.filter { $0.role == .replica } }

    public func server(named name: String) -> ServerDefinition? { servers.first { $0.name == name } }

    /// The servers of a reloaded configuration, keeping the epoch when nothing about them changed.
    /// After a switchover the file must name the primary in force; the servers the switchover fenced
    /// stay fenced (and out of traffic) whatever role the file gives them. Nil when the file names
    /// another primary: applying it would send writes to a fenced former primary.
    public func reloaded(_ servers: [ServerDefinition]) -> Topology? {
        guard hasSwitchedOver else {
            return servers == self.servers ? self : Topology(servers: servers, epoch: epoch + 1)
        }
        guard servers.first(where: { $0.role == .primary })?.name == primary.name else { return nil }
        let names = Set(servers.map(\.name))
        let kept = servers.map { server -> ServerDefinition in
            var server = server
            if fenced.contains(server.name) { server.role = .standby }
            return server
        }
        if kept == self.servers { return self }
        return Topology(servers: kept, epoch: epoch + 1, fenced: fenced.intersection(names),
                        followingFormerPrimary: followingFormerPrimary.intersection(names))
    }

    /// The topology a restart resumes from `state_file`: `name` is the primary, and the servers the
    /// file lists as fenced (a former primary among them) stay fenced. The replicas are not held back:
    /// the monitor's lag checks guard them as usual. Nil when the file names an unknown server.
    public func resumed(primary name: String, fenced recorded: Set<String>) -> Topology? {
        guard server(named: name) != nil else { return nil }
        let fenced = recorded.union(name == primary.name ? [] : [primary.name]).subtracting([name])
            .intersection(Set(servers.map(\.name)))
        let servers = self.servers.map { server -> ServerDefinition in
            var server = server
            if server.name == name { server.role = .primary } else if fenced.contains(server.name) { server.role = .standby }
            return server
        }
        return Topology(servers: servers, epoch: epoch + 1, fenced: fenced)
    }

    /// The primary's state as the latest probe saw it; the same value when nothing changed.
    public func withPrimaryState(_ state: PrimaryState) -> Topology {
        state == primaryState ? self : Topology(servers: servers, epoch: epoch + 1, primaryState: state, fenced: fenced,
                                                followingFormerPrimary: followingFormerPrimary)
    }
}
