import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Testing

let quietLogger = Logger(label: "switchyard-it.client", factory: { _ in SwiftLogNoOpLogHandler() })

/// Connects postgres-nio (extended protocol only) to the proxy, without TLS. The password
/// defaults to the user's test password.
func connectNIO(
    port: Int, user: String = "app", password: String? = nil, database: String = "app",
    timeout: Duration = .seconds(15)
) async throws -> PostgresConnection {
    var configuration = PostgresConnection.Configuration(
        host: "127.0.0.1", port: port, username: user,
        password: password ?? TestEnvironment.passwords[user], database: database, tls: .disable)
    configuration.options.connectTimeout = .seconds(10)
    let settings = configuration
    return try await withTimeout(timeout, "postgres-nio connect") {
        try await PostgresConnection.connect(
            on: MultiThreadedEventLoopGroup.singleton.next(), configuration: settings, id: 1, logger: quietLogger)
    }
}

/// Opens a postgres-nio connection, runs `body`, and closes the connection whatever happens.
func withNIOConnection<T>(
    port: Int, user: String = "app", database: String = "app", _ body: (PostgresConnection) async throws -> T
) async throws -> T {
    let connection = try await connectNIO(port: port, user: user, database: database)
    do {
        let result = try await body(connection)
        try? await connection.close()
        return result
    } catch {
        try? await connection.close()
        throw error
    }
}

/// Expects a postgres-nio login to fail and returns its error; a connection that unexpectedly
/// opens is recorded as an issue and closed (postgres-nio asserts that connections are closed).
func expectConnectFailure(
    port: Int, user: String = "app", password: String? = nil, database: String = "app",
    sourceLocation: SourceLocation = #_sourceLocation
) async -> (any Error)? {
    do {
        let connection = try await connectNIO(port: port, user: user, password: password, database: database)
        try? await connection.close()
        Issue.record("\(user)@\(database) logged in, but the login should have failed", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

extension PostgresConnection {
    /// postgres-nio 1.33 never completes a query written to an already closed connection (the
    /// write fails with no one listening), so check first and fail like a lost connection would.
    func requireOpen() throws {
        if isClosed { throw ConnectionClosedError() }
    }

    /// Runs `query` (bounded by `timeout`) and decodes every row's single column.
    func values<T: PostgresDecodable & Sendable>(
        _ query: PostgresQuery, as type: T.Type = T.self, timeout: Duration = .seconds(30)
    ) async throws -> [T] {
        try requireOpen()
        return try await withTimeout(timeout, "query \(query.sql)") {
            var values: [T] = []
            for try await value in try await self.query(query, logger: quietLogger).decode(T.self) { values.append(value) }
            return values
        }
    }

    /// Runs `query` (bounded by `timeout`) and returns all its rows.
    func rows(_ query: PostgresQuery, timeout: Duration = .seconds(30)) async throws -> [PostgresRow] {
        try requireOpen()
        return try await withTimeout(timeout, "query \(query.sql)") {
            try await self.query(query, logger: quietLogger).collect()
        }
    }

    /// Runs `query` for its effect (bounded by `timeout`), draining any rows.
    func run(_ query: PostgresQuery, timeout: Duration = .seconds(30)) async throws {
        try requireOpen()
        try await withTimeout(timeout, "query \(query.sql)") {
            _ = try await self.query(query, logger: quietLogger).collect()
        }
    }
}

/// The connection was already closed (by the server or the proxy) when a query was attempted.
struct ConnectionClosedError: Error, CustomStringConvertible {
    var description: String { "connection already closed" }
}

extension Error {
    /// The SQLSTATE of a server error as postgres-nio reports it (nil for other errors).
    var sqlState: String? { (self as? PSQLError)?.serverInfo?[.sqlState] }
    var serverMessage: String? { (self as? PSQLError)?.serverInfo?[.message] }
    var serverSeverity: String? { (self as? PSQLError)?.serverInfo?[.severity] }
}
