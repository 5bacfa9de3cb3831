import Logging
import NIOCore
import NIOSSL
import PostgresNIO

/// Connections of Switchyard's own, off the relay: the health checks and a switchover's privileged
/// steps. postgres-nio does the protocol; this only applies the configured credentials and TLS.
enum ControlConnection {
    static func connect(to server: ServerDefinition, as user: UserDefinition, configuration: ProxyConfiguration,
                        on eventLoop: EventLoop, logger: Logger) async throws -> PostgresConnection {
        var options = PostgresConnection.Configuration(
            host: server.host, port: server.port, username: user.serverUser, password: user.serverPassword,
            database: configuration.routing.healthCheckDatabase, tls: .disable)
        options.options.connectTimeout = TimeAmount(configuration.connectTimeout)
        if configuration.serverTLS.mode != .disable {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.certificateVerification = .none
            options.tls = configuration.serverTLS.mode == .prefer ? .prefer(try .init(configuration: tls)) : .require(try .init(configuration: tls))
        }
        return try await PostgresConnection.connect(on: eventLoop, configuration: options, id: 0, logger: logger)
    }

    /// Connects, runs `body`, and closes the connection whatever happened (postgres-nio wants every
    /// connection closed before it goes away).
    static func with<T>(_ server: ServerDefinition, as user: UserDefinition, configuration: ProxyConfiguration, on eventLoop: EventLoop,
                        logger: Logger, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await connect(to: server, as: user, configuration: configuration, on: eventLoop, logger: logger)
        do {
            let result = try await body(connection)
            try? await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }
}
