import Foundation
import Testing

/// Where the test cluster is, from the variables `deploy/cluster.sh env` prints.
///
/// Integration tests run only when `SWITCHYARD_INTEGRATION` is set. When it is set, an
/// unreachable Postgres is a test failure (see ``requirePostgres()``), never a skip.
enum TestEnvironment {
    static let variables = ProcessInfo.processInfo.environment

    static let isEnabled: Bool = {
        guard let value = variables["SWITCHYARD_INTEGRATION"] else { return false }
        return !value.isEmpty && value != "0"
    }()

    static let pgHost = variables["SWITCHYARD_TEST_PG_HOST"] ?? "127.0.0.1"
    static let pgPort = Int(variables["SWITCHYARD_TEST_PG_PORT"] ?? "") ?? 15432
    static let socketDirectory = variables["SWITCHYARD_TEST_PG_SOCKET_DIR"] ?? "/tmp/switchyard-pg/run"
    static let python = variables["SWITCHYARD_TEST_PYTHON"] ?? "/usr/bin/python3"

    /// The client-side passwords of the `[users]` every test proxy defines (see `TestProxy`).
    /// `admin` is the admin console's user (`admin_users = admin`); it has no role in Postgres.
    static let passwords = [
        "app": "app-secret", "app_md5": "md5-secret", "app_plain": "plain-secret", "app_trust": "trust-secret",
        "admin": "admin-secret",
        // switchover_user of the switchover tests: a login with the minimal grants (deploy/cluster.sh).
        "switchover": "switchover-secret",
    ]

    /// Fails (throws) unless the primary accepts TCP connections. Called before every proxy start,
    /// so a missing cluster shows up as failed tests rather than as hangs or skips.
    static func requirePostgres() throws {
        do {
            let socket = try RawSocket.connect(host: pgHost, port: pgPort, timeout: .seconds(3))
            socket.close()
        } catch {
            throw HarnessError(
                "SWITCHYARD_INTEGRATION is set but PostgreSQL at \(pgHost):\(pgPort) is unreachable (\(error)). "
                    + "Start it with `bash deploy/cluster.sh start` and export `bash deploy/cluster.sh env`.")
        }
    }
}

extension Trait where Self == ConditionTrait {
    /// Runs the test only with `SWITCHYARD_INTEGRATION=1` (deploy/test.sh sets it).
    static var integration: Self {
        .enabled(if: TestEnvironment.isEnabled, "set SWITCHYARD_INTEGRATION=1 and the deploy/cluster.sh env variables")
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
