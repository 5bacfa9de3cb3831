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

    /// The servers of a validated configuration (which guarantees exactly one primary).
    public init(servers: [ServerDefinition], epoch: UInt64 = 1, primaryState: PrimaryState = .writable) {
        precondition(servers.filter { $0.role == .primary }.count == 1, "a topology needs exactly one primary")
        self.servers = servers
        self.epoch = epoch
        self.primaryState = primaryState
    }

    public var primary: ServerDefinition { servers.first { $0.role == .primary }! }
    public var replicas: [ServerDefinition] { servers.filter { $0.role == .replica } }

    public func server(named name: String) -> ServerDefinition? { servers.first { $0.name == name } }

    /// The servers of a reloaded configuration, keeping the epoch when nothing about them changed.
    public func reloaded(_ servers: [ServerDefinition]) -> Topology {
        servers == self.servers ? self : Topology(servers: servers, epoch: epoch + 1)
    }

    /// `name` becomes the primary; the old primary takes `formerPrimaryRole`. Nil for an unknown server.
    public func promoting(_ name: String, formerPrimaryRole: ServerRole = .replica) -> Topology? {
        guard server(named: name) != nil else { return nil }
        let oldPrimary = primary.name
        guard oldPrimary != name else { return self }
        let servers = self.servers.map { server -> ServerDefinition in
            var server = server
            if server.name == name { server.role = .primary } else if server.name == oldPrimary { server.role = formerPrimaryRole }
            return server
        }
        return Topology(servers: servers, epoch: epoch + 1)
    }

    /// The primary's state as the latest probe saw it; the same value when nothing changed.
    public func withPrimaryState(_ state: PrimaryState) -> Topology {
        state == primaryState ? self : Topology(servers: servers, epoch: epoch + 1, primaryState: state)
    }
}
