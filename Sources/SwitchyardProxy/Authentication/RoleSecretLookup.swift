import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import PostgresWire
import Synchronization

/// Runs `auth_query` on the primary, as `auth_user`, for roles the configuration doesn't list.
///
/// Control plane only: each lookup is a short-lived postgres-nio connection on NIO's shared
/// singleton group, never on a loop that relays clients (postgres-nio runs PBKDF2 for auth_user's own
/// SCRAM login on its loop, which costs milliseconds). The answer is delivered on the asking
/// session's loop. ``RoleSecretCache`` decides what is reused and what is merged.
final class RoleSecretLookup: Sendable {
    typealias Waiter = EventLoopPromise<RoleSecretLookupResult>

    private let cache = Mutex(RoleSecretCache<Waiter>())
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    /// The role's secret, on `eventLoop`. Never fails: problems come back as `.failed`.
    func lookUp(user: String, database: String, configuration: ProxyConfiguration,
                on eventLoop: EventLoop) -> EventLoopFuture<RoleSecretLookupResult> {
        let promise = eventLoop.makePromise(of: RoleSecretLookupResult.self)
        guard let settings = configuration.authQuery else {
            promise.succeed(.notFound)
            return promise.futureResult
        }
        let key = RoleSecretCache<Waiter>.Key(database: settings.database ?? database, user: user)
        switch cache.withLock({ $0.request(key, waiter: promise, now: .now) }) {
        case .cached(let result):
            promise.succeed(result)
        case .joined:
            break
        case .lookUp(let token):
            // The whole lookup may take connect_timeout to connect and as long again to answer;
            // a hung query must not hold every later login of the role.
            let deadline = configuration.connectTimeout * 2
            let logger = self.logger
            let timeout = eventLoop.scheduleTask(in: TimeAmount(deadline)) { [self] in
                logger.warning("auth_query lookup timed out", metadata: ["user": "\(user)", "after": "\(deadline)"])
                finish(key, token: token, ttl: settings.cacheTTL, result: .failed(ErrorFields(
                    severity: .fatal, code: SQLState.sqlclientUnableToEstablishConnection,
                    message: "could not look up the password of user \"\(user)\" with auth_query",
                    hint: "The Switchyard log has the server's error.")))
            }
            Task {
                let started = ContinuousClock.now
                let result = await Self.query(user: user, database: key.database, settings: settings,
                                              configuration: configuration, logger: logger)
                timeout.cancel()
                logger.debug("auth_query lookup finished", metadata: [
                    "user": "\(user)", "database": "\(key.database)", "found": "\(result.summary)",
                    "elapsed_ms": "\((ContinuousClock.now - started).inSeconds * 1000)",
                ])
                self.finish(key, token: token, ttl: settings.cacheTTL, result: result)
            }
        }
        return promise.futureResult
    }

    /// A password check against a looked-up secret failed: the next login asks the server again.
    func forget(user: String, database: String, configuration: ProxyConfiguration) {
        let key = RoleSecretCache<Waiter>.Key(database: configuration.authQuery?.database ?? database, user: user)
        cache.withLock { $0.forget(key) }
    }

    /// RELOAD: the query, its user or its database may have changed.
    func removeAll() {
        cache.withLock { $0.removeAll() }
    }

    var cachedCount: Int { cache.withLock { $0.count } }

    private func finish(_ key: RoleSecretCache<Waiter>.Key, token: UInt64, ttl: Duration, result: RoleSecretLookupResult) {
        let waiters = cache.withLock { $0.finished(key, token: token, result: result, now: .now, ttl: ttl) }
        for waiter in waiters { waiter.succeed(result) }
    }

    /// One lookup on a connection of its own. Only the row's second column (the secret) is read.
    private static func query(user: String, database: String, settings: AuthQueryConfiguration,
                              configuration: ProxyConfiguration, logger: Logger) async -> RoleSecretLookupResult {
        let primary = configuration.primary
        guard let authUser = configuration.users[settings.user] else {
            return .failed(ErrorFields(severity: .fatal, code: SQLState.invalidAuthorizationSpecification,
                                       message: "auth_user \"\(settings.user)\" is not configured"))
        }
        let connection: PostgresConnection
        do {
            var options = PostgresConnection.Configuration(
                host: primary.host, port: primary.port, username: authUser.serverUser, password: authUser.serverPassword,
                database: database, tls: .disable)
            options.options.connectTimeout = TimeAmount(configuration.connectTimeout)
            if configuration.serverTLS.mode != .disable {
                var tls = TLSConfiguration.makeClientConfiguration()
                tls.certificateVerification = .none
                let context = try NIOSSLContext(configuration: tls)
                options.tls = configuration.serverTLS.mode == .prefer ? .prefer(context) : .require(context)
            }
            connection = try await PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.any(), configuration: options, id: 0, logger: logger)
        } catch {
            return .failed(failure(error, user: user, server: primary.name, logger: logger))
        }
        let result: RoleSecretLookupResult
        do {
            var binds = PostgresBindings()
            binds.append(user)
            let rows = try await connection.query(PostgresQuery(unsafeSQL: settings.query, binds: binds), logger: logger)
            var secret: String??
            for try await (_, passwd) in rows.decode((String?, String?).self) where secret == nil { secret = .some(passwd) }
            let fetchedAt = ContinuousClock.now
            result = secret.flatMap { RoleSecret(rolpassword: $0) }.map { .found($0, fetchedAt: fetchedAt) } ?? .notFound
        } catch {
            result = .failed(failure(error, user: user, server: primary.name, logger: logger))
        }
        try? await connection.close()
        return result
    }

    /// What the client is told when a lookup can't run. A database that doesn't exist (3D000) is
    /// passed on, as the client would hear it after logging in anyway; anything else (auth_user's own
    /// login, a missing grant, a broken query) is the operator's to fix, so the client gets a fixed
    /// message and the log gets the server's.
    private static func failure(_ error: Error, user: String, server: String, logger: Logger) -> ErrorFields {
        let sqlState = (error as? PSQLError)?.serverInfo?[.sqlState]
        if sqlState == "3D000", let message = (error as? PSQLError)?.serverInfo?[.message] {
            return ErrorFields(severity: .fatal, code: "3D000", message: message)
        }
        logger.warning("auth_query lookup failed", metadata: [
            "user": "\(user)", "server": "\(server)", "sqlstate": "\(sqlState ?? "")", "error": "\(ReplicaMonitor.describe(error))",
        ])
        return ErrorFields(severity: .fatal, code: SQLState.sqlclientUnableToEstablishConnection,
                           message: "could not look up the password of user \"\(user)\" with auth_query",
                           hint: "The Switchyard log has the server's error.")
    }
}

extension RoleSecretLookupResult {
    /// For logs: never the secret itself.
    var summary: String {
        switch self {
        case .found(.scram, _): "scram"
        case .found(.md5, _): "md5"
        case .notFound: "no"
        case .failed: "error"
        }
    }
}
