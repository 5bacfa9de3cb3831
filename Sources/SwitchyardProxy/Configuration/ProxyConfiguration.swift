import Foundation

/// Everything Switchyard needs to run, parsed and validated from a PgBouncer-style INI file.
/// Build one with `ProxyConfiguration.load(path:)` or `ProxyConfiguration.parse(_:)`; a value that exists
/// has passed validation, so the rest of the proxy never re-checks it.
public struct ProxyConfiguration: Sendable, Equatable {
    public var listenAddress: String, listenPort: Int
    /// Already resolved: a configured 0 is replaced by the number of active CPU cores.
    public var workerThreads: Int
    public var poolMode: PoolMode
    /// Backend connections per server per (user, database) pair.
    public var poolSize: Int, maxClientConnections: Int
    /// Largest single protocol message accepted from a client; bigger ones are rejected with 08P01.
    public var maxMessageSize: Int
    /// The process-wide cap on bytes held for clients (large messages kept whole, statement copies): a
    /// hold that would pass it waits, and one that could never fit is refused with 54000.
    public var maxBufferedBytes: Int
    public var connectTimeout: Duration
    /// How long a client waits for a free backend; nil waits forever.
    public var queryWaitTimeout: Duration?
    /// Idle backend connections are closed after this; nil never closes them.
    public var serverIdleTimeout: Duration?
    /// A client idle inside a transaction is disconnected after this; nil disables the check.
    public var idleTransactionTimeout: Duration?
    /// A client that sent part of a large message held whole (charged to `max_buffered_bytes`) and then
    /// nothing for this long is closed, so its charge goes back; nil never closes it.
    public var messageStallTimeout: Duration?
    /// On SIGTERM, how long open transactions may still run before the process exits.
    public var shutdownTimeout: Duration
    /// How long PAUSE waits for running transactions before it gives up and resumes traffic.
    public var pauseTimeout: Duration
    /// Run on a backend before it is reused in session mode; nil when configured empty.
    public var serverResetQuery: String?
    /// Session mode: reuse a server connection after its client leaves (reset first), or close it.
    public var serverResetMode: ServerResetMode
    public var clientAuthMethod: ClientAuthMethod
    /// Users allowed on the admin console (database `switchyard`).
    public var adminUsers: Set<String>
    /// One of trace, debug, info, notice, warning, error, critical (swift-log's level names).
    public var logLevel: String
    public var metricsAddress: String
    /// nil when metrics are disabled (configured as 0).
    public var metricsPort: Int?
    public var clientTLS: ClientTLSConfiguration, serverTLS: ServerTLSConfiguration
    /// In file order; validation guarantees at least one entry and exactly one primary.
    public var servers: [ServerDefinition]
    /// Extra session parameters (besides the built-in list) that follow a client across server connections.
    public var trackedParameters: [String]
    /// Read routing: defaults, replica health checks and lag limits.
    public var routing: RoutingConfiguration
    /// Keyed by the name clients log in with; merged from `[users]` and `auth_file`.
    public var users: [String: UserDefinition]
    /// How roles missing from `users` are looked up on the primary; nil when `auth_user` is unset.
    public var authQuery: AuthQueryConfiguration?
    /// SWITCHOVER: who runs the privileged steps, how long the drain may take, where the result is kept.
    public var switchover: SwitchoverConfiguration
    /// The file this was loaded from; nil when parsed from a string.
    public var sourcePath: String?

    /// The `[users]` entry of `switchover_user`; nil when unset (validation guarantees a set one exists).
    var switchoverUser: UserDefinition? { switchover.user.flatMap { users[$0] } }

    /// The one server with `role=primary` (validation guarantees it exists).
    public var primary: ServerDefinition {
        guard let primary = servers.first(where: { $0.role == .primary }) else {
            preconditionFailure("ProxyConfiguration has no primary server; it was not built by the parser")
        }
        return primary
    }
}

/// Where statements go by default, and when a replica is fit to serve reads.
public struct RoutingConfiguration: Sendable, Equatable {
    /// `auto` sends provably read-only statements to replicas; `primary`/`replica` force one side.
    public var defaultRoute: RouteSetting
    /// With no eligible replica: true sends reads to the primary, false fails them with an error.
    public var fallbackToPrimary: Bool
    /// Replicas further behind the primary than this (WAL bytes) stop getting reads.
    public var maxLagBytes: Int64
    /// Replicas further behind than this (seconds since the last replayed transaction) stop getting reads.
    public var maxLagSeconds: Double
    public var healthCheckInterval: Duration
    /// Consecutive healthy checks before an excluded replica gets traffic again (no flapping).
    public var healthCheckHysteresis: Int
    /// The `[users]` entry whose server credentials the health checks log in with.
    public var healthCheckUser: String?
    public var healthCheckDatabase: String
    /// How fresh replica reads must be (a user's `read_consistency=` overrides it).
    public var readConsistency: ReadConsistency
    /// How long a read waits for a replica to replay what it must see before it goes to the primary.
    public var readConsistencyMaxWait: Duration

    public init(defaultRoute: RouteSetting = .auto, fallbackToPrimary: Bool = true, maxLagBytes: Int64 = 16 << 20,
                maxLagSeconds: Double = 10, healthCheckInterval: Duration = .seconds(1), healthCheckHysteresis: Int = 3,
                healthCheckUser: String? = nil, healthCheckDatabase: String = "postgres",
                readConsistency: ReadConsistency = .session, readConsistencyMaxWait: Duration = .milliseconds(50)) {
        self.readConsistency = readConsistency
        self.readConsistencyMaxWait = readConsistencyMaxWait
        self.defaultRoute = defaultRoute
        self.fallbackToPrimary = fallbackToPrimary
        self.maxLagBytes = maxLagBytes
        self.maxLagSeconds = maxLagSeconds
        self.healthCheckInterval = healthCheckInterval
        self.healthCheckHysteresis = healthCheckHysteresis
        self.healthCheckUser = healthCheckUser
        self.healthCheckDatabase = healthCheckDatabase
    }
}

/// The keys of SWITCHOVER. Without `user` (and `stateFile`) the command is refused with the reason.
public struct SwitchoverConfiguration: Sendable, Equatable {
    /// The `[users]` entry whose server credentials fence, terminate and promote.
    public var user: String?
    /// How long new primary work may be held while running transactions finish (`TIMEOUT` overrides it).
    public var drainTimeout: Duration
    /// A target further behind the primary than this (WAL bytes) is refused in preflight.
    public var maxLagBytes: Int64
    /// Where the primary in force is recorded (write, fsync, rename) before held clients go on; a restart
    /// reads it, so a restarted proxy never writes to a former primary.
    public var stateFile: String?

    public init(user: String? = nil, drainTimeout: Duration = .seconds(5), maxLagBytes: Int64 = 16 << 20, stateFile: String? = nil) {
        (self.user, self.drainTimeout, self.maxLagBytes, self.stateFile) = (user, drainTimeout, maxLagBytes, stateFile)
    }
}

/// PgBouncer's `auth_user` + `auth_query`: the secret of a role the configuration doesn't list is
/// read from the primary, and the client authenticates against it.
public struct AuthQueryConfiguration: Sendable, Equatable {
    public static let defaultQuery = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1"

    /// The `[users]`/`auth_file` entry whose server credentials run the query.
    public var user: String
    /// Takes the role name as `$1`; returns one row of (name, stored secret), or none.
    public var query: String
    /// Where the query runs; nil runs it in the database the client asked for, as PgBouncer does.
    public var database: String?
    /// How long a looked-up secret (or "no such role") is reused; zero only merges concurrent lookups.
    public var cacheTTL: Duration

    public init(user: String, query: String = Self.defaultQuery, database: String? = nil, cacheTTL: Duration = .seconds(10)) {
        (self.user, self.query, self.database, self.cacheTTL) = (user, query, database, cacheTTL)
    }
}

/// How backend connections are shared between clients.
public enum PoolMode: String, Sendable, Equatable, CaseIterable {
    /// A backend is lent to a client for one transaction, then returned to the pool.
    case transaction
    /// A backend stays with its client until the client disconnects.
    case session
}

/// What session mode does with a server connection whose client left.
public enum ServerResetMode: String, Sendable, Equatable, CaseIterable {
    /// Run `server_reset_query` (DISCARD ALL) and pool it for the next client, as PgBouncer does.
    case discard
    /// Close it: every client gets a new backend (its own pg_stat_activity row, temp namespace, statistics).
    case close
}

/// How clients authenticate to Switchyard (not how Switchyard authenticates to Postgres).
public enum ClientAuthMethod: String, Sendable, Equatable, CaseIterable { case scramSHA256 = "scram-sha-256", md5, trust }

public enum ClientTLSMode: String, Sendable, Equatable, CaseIterable { case disable, allow, require }

public enum ServerTLSMode: String, Sendable, Equatable, CaseIterable {
    case disable, prefer, require, verifyCA = "verify-ca", verifyFull = "verify-full"
}

/// TLS between clients and Switchyard. Files are present and readable whenever `mode != .disable`.
public struct ClientTLSConfiguration: Sendable, Equatable {
    public var mode: ClientTLSMode
    public var certificateFile: String?, keyFile: String?

    public init(mode: ClientTLSMode = .disable, certificateFile: String? = nil, keyFile: String? = nil) {
        (self.mode, self.certificateFile, self.keyFile) = (mode, certificateFile, keyFile)
    }
}

/// TLS between Switchyard and Postgres. `caFile` is present for `verifyCA` and `verifyFull`.
public struct ServerTLSConfiguration: Sendable, Equatable {
    public var mode: ServerTLSMode
    public var caFile: String?

    public init(mode: ServerTLSMode = .disable, caFile: String? = nil) { (self.mode, self.caFile) = (mode, caFile) }
}

public enum ServerRole: String, Sendable, Equatable, CaseIterable {
    case primary, replica
    /// Gets no traffic: a SWITCHOVER target (a physical standby) until it is promoted, or a former
    /// primary after one.
    case standby
}

/// One Postgres server from `[servers]`.
public struct ServerDefinition: Sendable, Equatable {
    public var name: String, host: String, port: Int, role: ServerRole
    /// Relative share of read traffic among replicas.
    public var weight: Int

    public init(name: String, host: String, port: Int = 5432, role: ServerRole, weight: Int = 1) {
        (self.name, self.host, self.port, self.role, self.weight) = (name, host, port, role, weight)
    }
}

/// What a client's password is checked against. Descriptions never show the secret, so a stray
/// log line or `dump()` cannot leak it.
public enum ClientSecret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    case plaintext(String)
    /// `md5` followed by 32 lowercase hex digits: md5(password + user name), as stored by PostgreSQL.
    case md5Hash(String)
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as stored by PostgreSQL.
    case scramVerifier(String)

    public var description: String {
        switch self {
        case .plaintext: "plaintext(<redacted>)"
        case .md5Hash: "md5Hash(<redacted>)"
        case .scramVerifier: "scramVerifier(<redacted>)"
        }
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [(label: String?, value: Any)](), displayStyle: .enum) }
}

/// One user from `[users]` or `auth_file`: how the client proves itself, and how Switchyard logs in to Postgres for it.
public struct UserDefinition: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var name: String
    /// nil only with `auth_type = trust` and no password configured.
    public var clientSecret: ClientSecret?
    /// The role Switchyard logs in to Postgres as.
    public var serverUser: String
    /// nil logs in to Postgres without a password (fine for trust backends).
    public var serverPassword: String?
    /// This user's default route; nil follows `default_route`.
    public var route: RouteSetting?
    /// This user's read consistency; nil follows `read_consistency`.
    public var readConsistency: ReadConsistency?

    public init(name: String, clientSecret: ClientSecret?, serverUser: String? = nil, serverPassword: String? = nil,
                route: RouteSetting? = nil, readConsistency: ReadConsistency? = nil) {
        (self.name, self.clientSecret, self.serverUser, self.serverPassword) = (name, clientSecret, serverUser ?? name, serverPassword)
        self.route = route
        self.readConsistency = readConsistency
    }

    public var description: String {
        "UserDefinition(name: \(name), clientSecret: \(clientSecret.map(\.description) ?? "nil"), "
            + "serverUser: \(serverUser), serverPassword: \(serverPassword == nil ? "nil" : "<redacted>"))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: [
            "name": name, "clientSecret": clientSecret.map(\.description) ?? "nil",
            "serverUser": serverUser, "serverPassword": serverPassword == nil ? "nil" : "<redacted>",
        ])
    }
}
