import Foundation
import PostgresNIO
import Testing

extension IntegrationTests {
    /// The operator surface against the real binary (a child process with the cluster's primary and
    /// replica): the admin console through psql and postgres-nio, PAUSE/RESUME under pgbench, DISABLE,
    /// KILL, RELOAD and SIGHUP, the metrics port, and the `switchyard` CLI.
    @Suite struct Operator {
        // MARK: Console basics

        @Test func consoleAnswersEveryShowCommandAsTablesToPsql() async throws {
            try await withRoutingProxy { proxy in
                // A client with a query behind it, for SHOW CLIENTS / POOLS / STATS to report.
                let app = try await psql(port: proxy.port, ["set application_name = 'operator-probe'", "select count(*) from pg_class", "select pg_sleep(2)"])
                #expect(app.succeeded, "\(app)")

                let help = try await consoleRows(proxy, "show help")
                #expect(help.count == 15)
                #expect(help.contains { $0.first == "KILL <server>" })
                #expect(help.contains { $0.first == "SWITCHOVER TO <server> [TIMEOUT <s>] [DRY RUN] [FORCE]" })
                // Case-insensitive, `;` optional.
                #expect(try await consoleRows(proxy, "Show Version;") == [["Switchyard 0.4.0"]])

                let servers = try await consoleRows(proxy, "SHOW SERVERS")
                let primary = try #require(servers.first { $0[0] == "primary" })
                #expect(primary[1] == "primary" && primary[3] == "\(TestEnvironment.pgPort)" && primary[4] == "up")
                let replica = try #require(servers.first { $0[0] == "replica1" })
                #expect(replica[1] == "replica" && replica[4] == "in rotation" && replica[5] == "0")

                let pools = try await consoleRows(proxy, "show pools")
                let appPrimary = try #require(pools.first { $0[0] == "app" && $0[1] == "app" && $0[2] == "primary" })
                #expect(appPrimary[10] == "10", "pool_size column: \(appPrimary)")
                #expect(Int(appPrimary[7]) ?? 0 >= 1, "an idle server connection after the psql run: \(appPrimary)")

                let stats = try await consoleRows(proxy, "show stats")
                let primaryStats = try #require(stats.first { $0[0] == "primary" })
                let replicaStats = try #require(stats.first { $0[0] == "replica1" })
                #expect(Int(primaryStats[2]) ?? 0 >= 1, "SET ran on the primary: \(primaryStats)")
                #expect(Int(replicaStats[2]) ?? 0 >= 2, "the reads ran on the replica: \(replicaStats)")
                #expect(Double(replicaStats[7]) ?? 0 >= 1900, "p99 includes the 2 s pg_sleep: \(replicaStats)")
                #expect(Int(replicaStats[5]) ?? 0 > 0, "bytes sent to clients: \(replicaStats)")

                let config = try await consoleRows(proxy, "show config")
                #expect(config.contains(["pool_size", "10", "yes"]))
                #expect(config.contains(["listen_port", "\(proxy.port)", "no"]))
                #expect(!config.contains { $0[1].contains("app-secret") || $0[1].contains("admin-secret") }, "no passwords in SHOW CONFIG")

                // SHOW CLIENTS sees a client while it is connected.
                try await withNIOConnection(port: proxy.port) { connection in
                    _ = try await connection.values("select 1", as: Int.self)
                    let clients = try await consoleRows(proxy, "SHOW CLIENTS")
                    #expect(clients.contains { $0[1] == "app" && $0[2] == "app" && $0[4] == "idle" }, "\(clients)")
                }
            }
        }

        @Test func consoleRefusesNonAdminsAndUnknownCommands() async throws {
            try await withRoutingProxy(waitForReplica: false) { proxy in
                // app is a valid user, but not in admin_users.
                do {
                    let connection = try await connectNIO(port: proxy.port, user: "app", database: "switchyard")
                    try? await connection.close()
                    Issue.record("a non-admin got into the admin console")
                } catch let error as PSQLError {
                    #expect(error.serverInfo?[.sqlState] == "42501", "\(String(reflecting: error))")
                }
                let refused = try await psql(port: proxy.port, database: "switchyard", ["show servers"])
                #expect(!refused.succeeded && refused.stderr.contains("may not use the admin console"), "\(refused)")

                let unknown = try await psql(port: proxy.port, user: "admin", database: "switchyard", ["frobnicate"], onErrorStop: false)
                #expect(unknown.stderr.contains("unknown command") && unknown.stderr.contains("SHOW SERVERS"), "\(unknown)")
                let missing = try await psql(port: proxy.port, user: "admin", database: "switchyard", ["kill"], onErrorStop: false)
                #expect(missing.stderr.contains("needs exactly one server name"), "\(missing)")
                let noServer = try await psql(port: proxy.port, user: "admin", database: "switchyard", ["disable nosuch"], onErrorStop: false)
                #expect(noServer.stderr.contains("no server named \"nosuch\""), "\(noServer)")
                let primary = try await psql(port: proxy.port, user: "admin", database: "switchyard", ["disable primary"], onErrorStop: false)
                #expect(primary.stderr.contains("cannot disable the primary"), "\(primary)")
                // The proxy logs each admin command with its user.
                #expect(proxy.log().contains("admin_user=admin"))
            }
        }

        @Test func postgresNIOReadsTypedConsoleResults() async throws {
            try await withRoutingProxy { proxy in
                try await withNIOConnection(port: proxy.port, user: "admin", database: "switchyard") { connection in
                    var names: [String: (port: Int, state: String)] = [:]
                    for row in try await connection.rows("SHOW SERVERS") {
                        let cells = row.makeRandomAccess()
                        names[try cells["name"].decode(String.self)] = (try cells["port"].decode(Int.self), try cells["state"].decode(String.self))
                    }
                    #expect(names["primary"]?.port == TestEnvironment.pgPort)
                    #expect(names["replica1"]?.state == "in rotation")

                    let stats = try await connection.rows("show stats")
                    #expect(stats.count == 2)
                    for row in stats {
                        let cells = row.makeRandomAccess()
                        #expect(try cells["queries"].decode(Int.self) >= 0)
                        _ = try cells["avg_query_ms"].decode(Double?.self)
                    }
                    // An error leaves the console usable, as in Postgres.
                    do {
                        _ = try await connection.rows("SHOW NOTHING")
                        Issue.record("SHOW NOTHING succeeded")
                    } catch let error as PSQLError {
                        #expect(error.serverInfo?[.sqlState] == "42601")
                    }
                    #expect(try await connection.values("show version", as: String.self) == ["Switchyard 0.4.0"])
                    #expect(try await connection.values("RESUME", as: String.self) == ["nothing was paused"])
                }
            }
        }

        // MARK: PAUSE and RESUME

        @Test func pauseHoldsPgbenchAndResumeReleasesItWithZeroErrors() async throws {
            let metricsPort = try routingFreePort()
            try await withRoutingProxy(["metrics_port": "\(metricsPort)"]) { proxy in
                async let bench = routingPgbench(port: proxy.port, ["-c", "4", "-j", "2", "-T", "6"], timeout: .seconds(60))
                try await Task.sleep(for: .seconds(1.5))
                let pause = try await console(proxy, ["PAUSE"])
                #expect(pause.succeeded && pause.output.contains("paused"), "\(pause)")
                let heldAt = try await primaryTransactions(proxy)
                #expect(heldAt > 0, "pgbench ran before the pause")
                try await Task.sleep(for: .seconds(1.5))
                #expect(try await primaryTransactions(proxy) == heldAt, "no transaction ran while paused")
                let pools = try await consoleRows(proxy, "show pools")
                let benchPool = try #require(pools.first { $0[0] == "bench" && $0[2] == "primary" })
                #expect(benchPool[5] == "4" && benchPool[6] == "0", "4 clients paused, no server busy: \(benchPool)")
                let clients = try await consoleRows(proxy, "show clients")
                #expect(clients.filter { $0[4] == "paused" }.count == 4, "\(clients)")
                let ready = try await httpGet(port: metricsPort, "/readyz")
                #expect(ready.status == 503 && ready.body.contains("paused"), "\(ready)")

                let resume = try await console(proxy, ["RESUME"])
                #expect(resume.succeeded && resume.output == "resumed all servers", "\(resume)")
                let result = try await bench
                #expect(result.succeeded, "\(result)")
                #expect(result.stdout.contains("number of failed transactions: 0 (0.000%)"), "\(result)")
                #expect(try await primaryTransactions(proxy) > heldAt, "pgbench went on after RESUME")
                #expect(try await httpGet(port: metricsPort, "/readyz").status == 200)
            }
        }

        @Test func pauseTimesOutWhileATransactionRunsAndWithdrawsItself() async throws {
            try await withRoutingProxy(["pause_timeout": "1"]) { proxy in
                async let long = psql(port: proxy.port, ["begin", "select pg_sleep(4)", "commit"])
                try await Task.sleep(for: .seconds(0.7))
                let started = ContinuousClock.now
                let pause = try await console(proxy, ["PAUSE"], onErrorStop: false)
                #expect(ContinuousClock.now - started < .seconds(4))
                #expect(pause.stderr.contains("timed out") && pause.stderr.contains("traffic was resumed"), "\(pause)")
                // Nothing is held afterwards.
                let other = try await psql(port: proxy.port, ["select 1"], timeout: .seconds(5))
                #expect(other.succeeded && other.output == "1", "\(other)")
                #expect(try await long.succeeded)
            }
        }

        @Test func resumeDuringAWaitingPauseReturnsAtOnce() async throws {
            try await withRoutingProxy(["pause_timeout": "30"]) { proxy in
                async let long = psql(port: proxy.port, ["begin", "select pg_sleep(3)", "commit"])
                try await Task.sleep(for: .seconds(0.5))
                async let pause = console(proxy, ["PAUSE"], onErrorStop: false)
                try await Task.sleep(for: .seconds(0.5))
                let started = ContinuousClock.now
                let resume = try await console(proxy, ["RESUME"])
                #expect(resume.succeeded && ContinuousClock.now - started < .seconds(2), "\(resume)")
                let paused = try await pause
                #expect(paused.stderr.contains("cancelled by RESUME"), "\(paused)")
                #expect(try await long.succeeded)
                #expect(try await psql(port: proxy.port, ["select 1"], timeout: .seconds(5)).succeeded)
            }
        }

        @Test func pauseOfOneServerHoldsOnlyItsTraffic() async throws {
            try await withRoutingProxy { proxy in
                // Clients logged in before the pause (a login needs the primary, so new ones wait too).
                try await withNIOConnection(port: proxy.port) { reader in
                    try await withNIOConnection(port: proxy.port) { writer in
                        #expect(try await console(proxy, ["PAUSE primary"]).succeeded)
                        // Reads still go to the replica; a write waits until RESUME primary.
                        #expect(try await reader.values("select pg_is_in_recovery()", as: Bool.self, timeout: .seconds(5)) == [true])
                        let started = ContinuousClock.now
                        async let write = writer.values("select pg_is_in_recovery() from (select txid_current()) x", as: Bool.self, timeout: .seconds(20))
                        try await Task.sleep(for: .seconds(1))
                        let servers = try await consoleRows(proxy, "show servers")
                        #expect(servers.first { $0[0] == "primary" }?[4] == "paused")
                        #expect(servers.first { $0[0] == "replica1" }?[4] == "in rotation")
                        #expect(try await console(proxy, ["RESUME primary"]).succeeded)
                        #expect(try await write == [false])
                        #expect(ContinuousClock.now - started >= .seconds(1), "the write was held until RESUME")
                    }
                }
            }
        }

        // MARK: DISABLE, ENABLE, KILL

        @Test func disableTakesAReplicaOutOfRotationAndEnableBringsItBack() async throws {
            try await withRoutingProxy { proxy in
                let disable = try await console(proxy, ["DISABLE replica1"])
                #expect(disable.succeeded, "\(disable)")
                #expect(try await readsReach(replica: false, port: proxy.port, within: .seconds(5)))
                #expect(try await consoleRows(proxy, "show servers").first { $0[0] == "replica1" }?[4] == "disabled")
                // Reads keep working on the primary, with no error.
                let read = try await psql(port: proxy.port, ["select pg_is_in_recovery()"])
                #expect(read.succeeded && read.output == "f", "\(read)")
                #expect(try await console(proxy, ["ENABLE replica1"]).succeeded)
                #expect(try await readsReach(replica: true, port: proxy.port, within: .seconds(10)))
            }
        }

        @Test func killDropsAServersConnectionsAndNewClientsStillWork() async throws {
            try await withRoutingProxy { proxy in
                async let victim = psql(port: proxy.port, ["begin", "select txid_current() > 0", "select pg_sleep(5)", "commit"])
                try await Task.sleep(for: .seconds(1))
                let kill = try await console(proxy, ["KILL primary"])
                #expect(kill.succeeded && kill.output.contains("closed") && !kill.output.contains("closed 0"), "\(kill)")
                let result = try await victim
                #expect(!result.succeeded && result.stderr.contains("was lost"), "\(result)")
                let fresh = try await psql(port: proxy.port, ["select txid_current() > 0"])
                #expect(fresh.succeeded && fresh.output == "t", "\(fresh)")
            }
        }

        // MARK: RELOAD and SIGHUP

        @Test func reloadAppliesPoolSizeAndServersAndRejectsABrokenFile() async throws {
            try await withRoutingProxy { proxy in
                let smaller = RoutingProxy.configurationText(["listen_port": "\(proxy.port)", "pool_size": "2"],
                                                             replicas: [.replica1, .unreachable], userOptions: [:])
                try smaller.write(toFile: proxy.configurationPath, atomically: true, encoding: .utf8)
                let reload = try await cli(["reload", "--config", proxy.configurationPath, "--json"])
                #expect(reload.exitCode == 0, "\(reload)")
                #expect(reload.stdout.contains("pool_size 10 -> 2") && reload.stdout.contains("servers added: replica_down"), "\(reload)")
                #expect(try await consoleRows(proxy, "show config").contains(["pool_size", "2", "yes"]))
                #expect(try await consoleRows(proxy, "show servers").contains { $0[0] == "replica_down" })

                // The new cap holds under load: never more than 2 server connections for app/bench.
                async let bench = routingPgbench(port: proxy.port, ["-c", "6", "-j", "2", "-T", "3"])
                var most = 0
                let end = ContinuousClock.now + .seconds(2.5)
                while ContinuousClock.now < end {
                    let count = Int(try await superuserQuery("select count(*) from pg_stat_activity where usename = 'app' and datname = 'bench'")) ?? 0
                    most = max(most, count)
                    try await Task.sleep(for: .milliseconds(100))
                }
                let result = try await bench
                #expect(result.succeeded && result.stdout.contains("number of failed transactions: 0 (0.000%)"), "\(result)")
                #expect(most >= 1 && most <= 2, "server connections seen on the primary: \(most)")

                // A broken file is rejected with its problem; the running configuration stays.
                try smaller.replacingOccurrences(of: "pool_size = 2", with: "pool_size = banana")
                    .write(toFile: proxy.configurationPath, atomically: true, encoding: .utf8)
                let rejected = try await cli(["reload", "--host", "127.0.0.1", "--port", "\(proxy.port)", "--user", "admin", "--json"],
                                             password: "admin-secret")
                #expect(rejected.exitCode == 1, "\(rejected)")
                let answer = try JSONSerialization.jsonObject(with: Data(rejected.stdout.utf8)) as? [String: Any]
                #expect(answer?["sqlstate"] as? String == "F0000", "\(rejected)")
                #expect((answer?["detail"] as? String)?.contains("pool_size") == true, "\(rejected)")
                #expect(try await consoleRows(proxy, "show config").contains(["pool_size", "2", "yes"]))
                #expect(try await psql(port: proxy.port, ["select 1"]).succeeded)
                #expect(proxy.log().contains("configuration reload rejected"))

                // SIGHUP reloads too; the removed replica disappears.
                let third = RoutingProxy.configurationText(["listen_port": "\(proxy.port)", "pool_size": "3"], replicas: [.replica1], userOptions: [:])
                try third.write(toFile: proxy.configurationPath, atomically: true, encoding: .utf8)
                proxy.send(SIGHUP)
                let applied = try await eventually(within: .seconds(10)) {
                    try await consoleRows(proxy, "show config").contains(["pool_size", "3", "yes"])
                }
                #expect(applied, "SIGHUP did not apply the new pool_size:\n\(proxy.log(limit: 2000))")
                let remaining = try await consoleRows(proxy, "show servers")
                #expect(!remaining.contains { $0[0] == "replica_down" })
                #expect(try await psql(port: proxy.port, ["select 1"]).succeeded)
            }
        }

        @Test func reloadRemovingAReplicaLetsItsTransactionFinishThenSendsReadsToThePrimary() async throws {
            try await withRoutingProxy { proxy in
                // A read-only transaction runs on the replica while the replica is removed from the file.
                async let reading = psql(port: proxy.port, ["begin read only", "select pg_sleep(2)", "select pg_is_in_recovery()", "commit"])
                try await Task.sleep(for: .seconds(0.7))
                let withoutReplica = RoutingProxy.configurationText(["listen_port": "\(proxy.port)"], replicas: [], userOptions: [:])
                try withoutReplica.write(toFile: proxy.configurationPath, atomically: true, encoding: .utf8)
                let reload = try await console(proxy, ["RELOAD"])
                #expect(reload.succeeded && reload.output.contains("servers removed"), "\(reload)")
                let finished = try await reading
                #expect(finished.succeeded && finished.lines.contains("t") && !finished.lines.contains("f"), "the transaction finished on the replica: \(finished)")
                let read = try await psql(port: proxy.port, ["select pg_is_in_recovery()"])
                #expect(read.succeeded && read.output == "f", "\(read)")
                #expect(try await consoleRows(proxy, "show servers").map { $0[0] } == ["primary"])
            }
        }

        @Test func reloadChangesTheLogLevelWithoutARestart() async throws {
            try await withRoutingProxy(waitForReplica: false) { proxy in
                // `SHOW switchyard.route` is answered by the proxy, which logs it at debug level.
                #expect(try await psql(port: proxy.port, ["show switchyard.route"]).succeeded)
                #expect(!proxy.log().contains("answered a statement locally"), "info level hides debug lines")
                let debug = RoutingProxy.configurationText(["listen_port": "\(proxy.port)", "log_level": "debug"], replicas: [.replica1], userOptions: [:])
                try debug.write(toFile: proxy.configurationPath, atomically: true, encoding: .utf8)
                let reload = try await console(proxy, ["RELOAD"])
                #expect(reload.succeeded && reload.output.contains("log_level info -> debug"), "\(reload)")
                #expect(try await psql(port: proxy.port, ["show switchyard.route"]).succeeded)
                let logged = await eventually(within: .seconds(5)) { proxy.log().contains("answered a statement locally") }
                #expect(logged, "debug lines after RELOAD:\n\(proxy.log(limit: 1500))")
            }
        }

        // MARK: Topology

        /// A server in the primary role that is in recovery (a standby) is shown as such: SHOW SERVERS,
        /// /readyz, the log; writes get a clear error naming it instead of Postgres' 25006; reads still work.
        @Test func primaryInRecoveryIsReportedAndWritesGetAClearError() async throws {
            let metricsPort = try routingFreePort()
            let standbyAsPrimary = RoutingServerEntry(name: "primary", port: RoutingCluster.replicaPort, role: "primary")
            let proxy = try await RoutingProxy.start(["metrics_port": "\(metricsPort)"], replicas: [], primary: standbyAsPrimary)
            defer { proxy.stop() }
            let shown = try await eventually(within: .seconds(10)) {
                try await consoleRows(proxy, "show servers").first?[4] == "in recovery (not writable)"
            }
            let servers = try await consoleRows(proxy, "show servers")
            #expect(shown, "\(servers)\n\(proxy.log(limit: 1500))")
            #expect(proxy.log().contains("the server configured as primary is in recovery"))
            let ready = try await httpGet(port: metricsPort, "/readyz")
            #expect(ready.status == 503 && ready.body.contains("in recovery"), "\(ready)")
            let write = try await psql(port: proxy.port, ["create table sy_never (a int)"], onErrorStop: true)
            #expect(!write.succeeded && write.stderr.contains("in the primary role is in recovery"), "\(write)")
            let read = try await psql(port: proxy.port, ["select pg_is_in_recovery()"])
            #expect(read.succeeded && read.output == "t", "\(read)")
        }

        // MARK: Metrics

        @Test func metricsCountersMoveDuringPgbench() async throws {
            let metricsPort = try routingFreePort()
            try await withRoutingProxy(["metrics_port": "\(metricsPort)"]) { proxy in
                let health = try await httpGet(port: metricsPort, "/healthz")
                #expect(health.status == 200 && health.body == "ok\n")
                #expect(try await httpGet(port: metricsPort, "/readyz").status == 200)
                #expect(try await httpGet(port: metricsPort, "/nope").status == 404)

                let before = try await scrape(metricsPort)
                async let bench = routingPgbench(port: proxy.port, ["-c", "4", "-j", "2", "-T", "3"])
                try await Task.sleep(for: .seconds(1.5))
                let during = try await scrape(metricsPort)
                let result = try await bench
                #expect(result.succeeded, "\(result)")
                let after = try await scrape(metricsPort)

                let queries = #"switchyard_queries_total{server="primary",route="primary"}"#
                let transactions = #"switchyard_transactions_total{server="primary",route="primary"}"#
                let durations = #"switchyard_query_duration_seconds_count{server="primary",route="primary"}"#
                let bytes = #"switchyard_client_bytes_sent_total{server="primary",route="primary"}"#
                #expect((during[queries] ?? 0) > (before[queries] ?? 0), "queries move during the run")
                #expect((after[queries] ?? 0) > (during[queries] ?? 0))
                #expect((after[transactions] ?? 0) > (before[transactions] ?? 0) + 100)
                #expect((after[durations] ?? 0) >= (after[queries] ?? 0) - 1)
                #expect((after[bytes] ?? 0) > (before[bytes] ?? 0))
                #expect(during[#"switchyard_clients{state="active"}"#] != nil)
                #expect(during[#"switchyard_server_connections{server="primary",route="primary",state="active"}"#] != nil)
                #expect(after[#"switchyard_replica_lag_bytes{server="replica1",route="replica"}"#] != nil)
                #expect(after[#"switchyard_server_up{server="primary",route="primary"}"#] == 1)
                #expect(after[#"switchyard_pool_waiting_clients{server="primary",route="primary"}"#] == 0)
                #expect(after.keys.contains { $0.hasPrefix("switchyard_routing_retries_total") })
            }
        }

        // MARK: CLI

        @Test func cliStatusPauseResumeWithJSONAndExitCodes() async throws {
            try await withRoutingProxy { proxy in
                let status = try await cli(["status", "--config", proxy.configurationPath, "--json"])
                #expect(status.exitCode == 0, "\(status)")
                let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
                let servers = object?["servers"] as? [[String: Any]] ?? []
                #expect(servers.contains { $0["name"] as? String == "primary" && $0["port"] as? Int == TestEnvironment.pgPort && $0["state"] as? String == "up" })
                #expect(object?["pools"] is [Any])

                let text = try await cli(["status", "--config", proxy.configurationPath])
                #expect(text.exitCode == 0 && text.stdout.contains("SERVERS") && text.stdout.contains("replica1"), "\(text)")

                let pause = try await cli(["pause", "--config", proxy.configurationPath, "--json"])
                #expect(pause.exitCode == 0 && pause.stdout.contains(#""ok":true"#), "\(pause)")
                let resume = try await cli(["resume", "--config", proxy.configurationPath])
                #expect(resume.exitCode == 0 && resume.stdout.contains("resumed all servers"), "\(resume)")

                let unknown = try await cli(["pause", "nosuch", "--config", proxy.configurationPath, "--json"])
                #expect(unknown.exitCode == 1 && unknown.stdout.contains("42704"), "\(unknown)")
                let unreachable = try await cli(["status", "--host", "127.0.0.1", "--port", "\(try routingFreePort())", "--user", "admin"], password: "x")
                #expect(unreachable.exitCode == 3, "\(unreachable)")
                let wrongPassword = try await cli(["status", "--host", "127.0.0.1", "--port", "\(proxy.port)", "--user", "admin"], password: "wrong")
                #expect(wrongPassword.exitCode == 3 && wrongPassword.stderr.contains("password"), "\(wrongPassword)")
                let check = try await cli(["check-config", proxy.configurationPath, "--json"])
                #expect(check.exitCode == 0 && check.stdout.contains(#""ok":true"#), "\(check)")
            }
        }
    }
}

// MARK: Helpers

/// psql to the admin console as `admin`.
private func console(_ proxy: RoutingProxy, _ commands: [String], onErrorStop: Bool = true) async throws -> ProcessResult {
    try await psql(port: proxy.port, user: "admin", database: "switchyard", commands, onErrorStop: onErrorStop, timeout: .seconds(40))
}

/// One console command's rows, cells split at psql's `|`.
private func consoleRows(_ proxy: RoutingProxy, _ command: String) async throws -> [[String]] {
    let result = try await console(proxy, [command])
    guard result.succeeded else { throw HarnessError("console command \(command) failed: \(result)") }
    return result.lines.map { $0.components(separatedBy: "|") }
}

/// Transactions the primary has run for clients (SHOW STATS).
private func primaryTransactions(_ proxy: RoutingProxy) async throws -> Int {
    let row = try await consoleRows(proxy, "show stats").first { $0[0] == "primary" }
    return Int(row?[3] ?? "") ?? -1
}

/// The `switchyard` executable the tests were built with.
private func cli(_ arguments: [String], password: String? = nil) async throws -> ProcessResult {
    try await runProcess(RoutingProxy.executablePath, arguments, environment: libpqEnvironment(password: password), timeout: .seconds(60))
}

func httpGet(port: Int, _ path: String) async throws -> (status: Int, body: String) {
    let result = try await runProcess("curl", ["-s", "-m", "10", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"], timeout: .seconds(20))
    guard result.exitCode == 0, let status = result.stdout.split(separator: "\n").last.flatMap({ Int($0) }) else {
        throw HarnessError("GET \(path) failed: \(result)")
    }
    return (status, String(result.stdout.dropLast(String(status).count + 1)))
}

/// `/metrics` as sample name-with-labels to value.
func scrape(_ port: Int) async throws -> [String: Double] {
    let (status, body) = try await httpGet(port: port, "/metrics")
    guard status == 200 else { throw HarnessError("/metrics answered \(status): \(body)") }
    var samples: [String: Double] = [:]
    for line in body.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        samples[String(line[..<space])] = value
    }
    return samples
}
