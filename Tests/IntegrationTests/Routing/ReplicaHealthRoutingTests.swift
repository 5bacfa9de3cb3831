import Foundation
import PostgresNIO
import SwitchyardProxy
import Testing

extension IntegrationTests.Routing {
    /// The health monitor: a replica that dies, lags or was never reachable. Tests that stop the replica
    /// or pause its replay always restore it (and wait until it streams) before they return.
    @Suite struct Health {
        // MARK: 8. Replica killed mid-run

        struct RunLog: Sendable {
            var replicaAnswers = 0, primaryAnswers = 0
            var replicaAnswersAfterStop = 0, primaryAnswersAfterStop = 0
            var errors: [String] = []
            var wrongAnswers: [String] = []
            var slowest: Duration = .zero
        }

        /// 8 postgres-nio clients read in a loop for 6 s; after 1 s the replica is stopped (`-m immediate`
        /// kills it, `-m fast` terminates its sessions with 57P01 and refuses new ones with 57P03). No client
        /// may see an error: reads in flight are re-run on the primary, later ones go there once the monitor
        /// excludes the replica. After the replica restarts, reads return to it.
        @Test(arguments: ["immediate", "fast"])
        func replicaStoppedMidRun(mode: String) async throws {
            let expected = try await superuserQuery("select count(*) from pgbench_branches", database: "bench")
            try await ReplicaControl.restoring {
                try await withRoutingProxy { proxy in
                    let log = SharedState(RunLog())
                    let stopped = SharedState(false)
                    let start = ContinuousClock.now
                    let end = start + .seconds(6)
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for client in 0..<8 {
                            group.addTask {
                                var connection: PostgresConnection?
                                while ContinuousClock.now < end {
                                    do {
                                        if connection == nil { connection = try await connectNIO(port: proxy.port, database: "bench") }
                                        // Sampled before the query: one sent after pg_ctl stop returned cannot reach the replica.
                                        let afterStop = stopped.value
                                        let (rows, took) = try await timed {
                                            try await connection!.rows("select count(*)::text, pg_is_in_recovery() from pgbench_branches", timeout: .seconds(20))
                                        }
                                        let (count, onReplica) = try rows[0].decode((String, Bool).self)
                                        log.withLock { log in
                                            log.slowest = max(log.slowest, took)
                                            if count != expected { log.wrongAnswers.append("client \(client): \(count)") }
                                            switch (onReplica, afterStop) {
                                            case (true, false): log.replicaAnswers += 1
                                            case (false, false): log.primaryAnswers += 1
                                            case (true, true): log.replicaAnswersAfterStop += 1
                                            case (false, true): log.primaryAnswersAfterStop += 1
                                            }
                                        }
                                    } catch {
                                        let at = ContinuousClock.now - start
                                        log.withLock { $0.errors.append("client \(client) at \(at): \(String(reflecting: error))") }
                                        try? await connection?.close()
                                        connection = nil
                                    }
                                }
                                try? await connection?.close()
                            }
                        }
                        group.addTask {
                            try await Task.sleep(for: .seconds(1))
                            try await ReplicaControl.stop(mode: mode)
                            stopped.withLock { $0 = true }
                        }
                        try await group.waitForAll()
                    }
                    let run = log.value
                    #expect(run.errors.isEmpty, "\(run.errors.count) client errors after stopping the replica (-m \(mode)); first ones: \(run.errors.prefix(5))")
                    #expect(run.wrongAnswers.isEmpty, "\(run.wrongAnswers.prefix(5))")
                    #expect(run.replicaAnswers > 0, "no read reached the replica before it was stopped: \(run)")
                    #expect(run.primaryAnswersAfterStop > 0, "no read went to the primary after the replica stopped: \(run)")
                    #expect(run.replicaAnswersAfterStop == 0, "reads sent after the replica stopped were answered by a replica?! \(run)")
                    #expect(run.slowest < .seconds(5), "a read took \(run.slowest)")

                    // Restart the replica: once it streams and passes the health checks, reads return to it.
                    try await ReplicaControl.start()
                    try await ReplicaControl.waitUntilStreaming()
                    #expect(try await readsReach(replica: true, port: proxy.port, within: .seconds(15)),
                            "reads did not return to the restarted replica within 15 s")
                }
            }
        }

        // MARK: 9. Lag

        /// With replay paused on the replica and WAL arriving from the primary, the replica falls behind
        /// (max_replica_lag = 64 kB, max_replica_lag_seconds = 1) and reads move to the primary; after
        /// replay resumes, the replica catches up and is re-admitted (after hysteresis = 2 good probes).
        @Test func laggingReplicaIsExcludedThenReadmitted() async throws {
            try await withRoutingFixture { fixture in
                try await withRoutingProxy(["max_replica_lag": "65536", "max_replica_lag_seconds": "1"]) { proxy in
                    try await ReplicaControl.withReplayPaused {
                        // ~5 MB of WAL the replica receives but does not replay.
                        try await fixture.primary([
                            "insert into \(fixture.table) (v, note) select g, repeat('x', 200) from generate_series(1, 20000) g",
                        ])
                        let behind = try await eventually(within: .seconds(10)) {
                            try await ReplicaControl.query("select pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()") == "t"
                        }
                        #expect(behind, "the replica did not receive WAL beyond its replay position")
                        let excluded = try await readsReach(replica: false, port: proxy.port, within: .seconds(10))
                        #expect(excluded, "reads still go to the lagging replica")
                        // And it stays out while it lags.
                        let answers = try await withNIOConnection(port: proxy.port) { connection in
                            var answers: [Bool] = []
                            for _ in 0..<10 {
                                answers += try await connection.values("select pg_is_in_recovery()", as: Bool.self)
                                try? await Task.sleep(for: .milliseconds(50))
                            }
                            return answers
                        }
                        #expect(answers == Array(repeating: false, count: 10), "a lagging replica served reads: \(answers)")
                    }
                    let readmitted = try await readsReach(replica: true, port: proxy.port, within: .seconds(15))
                    #expect(readmitted, "the replica was not re-admitted within 15 s after replay resumed")
                    // Re-admitted means caught up: the replica sees every row.
                    let count = try await withNIOConnection(port: proxy.port) {
                        try await $0.rows(PostgresQuery(unsafeSQL: "select count(*), pg_is_in_recovery() from \(fixture.table)"))
                            .map { try $0.decode((Int, Bool).self) }
                    }
                    #expect(count.first?.0 == 20000, "\(count)")
                }
            }
        }

        /// A replica that keeps up must stay in rotation while the primary runs a long write transaction:
        /// WAL streams and is replayed continuously, but no commit is replayed for a while, so
        /// `now() - pg_last_xact_replay_timestamp()` grows although the replica misses nothing committed.
        /// (ReplicaMonitor takes exactly that as the lag in seconds whenever receive and replay positions
        /// differ at the probe, so with max_replica_lag_seconds = 2 such a replica is thrown out.)
        @Test func longWriteTransactionDoesNotExcludeCaughtUpReplica() async throws {
            try await withRoutingFixture { fixture in
                try await withRoutingProxy(["max_replica_lag_seconds": "2"]) { proxy in
                    // ~5 s in one transaction, writing WAL every 0.2 s, committing only at the end.
                    async let writer = fixture.primary([
                        "do $$ begin for i in 1..25 loop insert into \(fixture.table) (v, note) select g, 'long' from generate_series(1, 500) g; perform pg_sleep(0.2); end loop; end $$",
                    ])
                    var onReplica = 0, onPrimary = 0
                    var sinceLastReplayedCommit = 0.0
                    try await withNIOConnection(port: proxy.port) { connection in
                        let end = ContinuousClock.now + .seconds(5)
                        while ContinuousClock.now < end {
                            let answer = try await connection.values("select pg_is_in_recovery()", as: Bool.self)
                            if answer == [true] { onReplica += 1 } else { onPrimary += 1 }
                            if let seconds = Double(try await ReplicaControl.query(
                                "select coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp()), 0)")) {
                                sinceLastReplayedCommit = max(sinceLastReplayedCommit, seconds)
                            }
                        }
                    }
                    _ = try await writer
                    #expect(try await fixture.primaryCount(note: "long") == 25 * 500)
                    #expect(onPrimary == 0, """
                        \(onPrimary) of \(onReplica + onPrimary) reads went to the primary while the replica kept up with a long \
                        write transaction (up to \(String(format: "%.1f", sinceLastReplayedCommit)) s since the last replayed commit); \
                        proxy log:\n\(proxy.log(limit: 1500))
                        """)
                }
            }
        }

        /// Durations accept decimals (README, Configuration), so max_replica_lag_seconds = 1.5 must mean 1.5 s.
        /// (ProxyConfiguration+Parsing.swift buildRouting keeps only `.components.seconds`: 1.5 → 1, 0.5 → 0,
        /// i.e. any replica not fully caught up at the probe is excluded.)
        @Test(arguments: ["1.5", "0.5"])
        func fractionalMaxReplicaLagSeconds(value: String) throws {
            let text = RoutingProxy.configurationText(["max_replica_lag_seconds": value, "listen_port": "6432"],
                                                      replicas: [.replica1], userOptions: [:])
            let configuration = try ProxyConfiguration.parse(text, fileName: "routing-test.conf")
            #expect(configuration.routing.maxLagSeconds == Double(value)!,
                    "max_replica_lag_seconds = \(value) parsed as \(configuration.routing.maxLagSeconds)")
        }

        // MARK: The monitor's own failures

        /// A failing primary probe must not take the proxy down. Here the configured primary is really a
        /// standby (a demoted primary after a failover, or a typo), so `select pg_current_wal_lsn()` fails
        /// with 55000 on a live connection every round. The proxy must keep running and serving.
        /// (Today ReplicaMonitor.swift:61 drops that live PostgresConnection without closing it; debug
        /// builds die in postgres-nio's `assert(isClosed)` in its deinit, release builds leak one server
        /// connection per round.)
        @Test func monitorSurvivesFailingPrimaryProbe() async throws {
            try await ReplicaControl.ensureHealthy()
            let standbyAsPrimary = RoutingServerEntry(name: "primary", port: RoutingCluster.replicaPort, role: "primary")
            let proxy = try await RoutingProxy.start(replicas: [], primary: standbyAsPrimary)
            defer { proxy.kill() }
            // Ten health-check rounds.
            try await Task.sleep(for: .seconds(2))
            #expect(proxy.isRunning, "the proxy died when its primary probe failed:\n\(proxy.crashSummary)")
            if proxy.isRunning {
                let result = try await psql(port: proxy.port, ["select 'served', pg_is_in_recovery()"])
                #expect(result.labelled["served"] == "t", "\(result)")
            }
        }

        /// SIGTERM (drain) cancels the health monitor; a probe in flight at that moment must not crash the
        /// proxy. Right after start-up the first round (connect, WAL position, pg_proc catalog, replica probe)
        /// is usually still running, so a few quick start/SIGTERM cycles hit it.
        @Test func drainWhileProbingDoesNotCrash() async throws {
            try await ReplicaControl.ensureHealthy()
            var outcomes: [String] = []
            for _ in 0..<8 {
                let proxy = try await RoutingProxy.start()
                let (exit, took) = await timed { proxy.terminate(within: 60) }
                if let exit, !exit.signal, exit.status == 0 {
                    outcomes.append("clean")
                    #expect(took < .seconds(10), "a drain with no clients took \(took):\n\(proxy.log(limit: 2000))")
                } else {
                    outcomes.append(exit.map { "\($0.signal ? "signal" : "status") \($0.status)" } ?? "still running")
                    Issue.record("SIGTERM right after start-up: \(proxy.crashSummary)")
                }
                proxy.kill()
                if outcomes.last != "clean" { break }
            }
            #expect(outcomes.allSatisfy { $0 == "clean" }, "\(outcomes)")
        }

        // MARK: Shutdown (found while testing the above)

        /// A client that connects and leaves right before SIGTERM must not hold up the drain: with no
        /// session left, the proxy should exit at once, not after shutdown_timeout. (Today a channel closed
        /// before it became active gets no channelInactive, so ClientSession never calls
        /// shard.sessionClosed and the drain loop waits for a session that no longer exists.)
        @Test func clientLeavingJustBeforeSIGTERMDoesNotHoldUpDrain() async throws {
            var durations: [Duration] = []
            for _ in 0..<4 {
                // No replicas and no health monitor: nothing but the listener and the one short-lived client.
                let proxy = try await RoutingProxy.start(["shutdown_timeout": "4"], replicas: [], omitting: ["health_check_user"])
                let socket = try RawSocket.connect(port: proxy.port)
                socket.close()
                let (exit, took) = await timed { proxy.terminate(within: 30) }
                durations.append(took)
                #expect(exit.map { !$0.signal && $0.status == 0 } == true, "\(proxy.crashSummary)")
                proxy.kill()
            }
            #expect(durations.allSatisfy { $0 < .seconds(2) }, """
                drains with no client left took \(durations) (shutdown_timeout = 4 s): a session whose channel \
                closed before becoming active stays registered in its PoolShard
                """)
        }

        // MARK: 10. No reachable replica

        /// The only replica is unreachable: reads fall back to the primary (replica_fallback = primary, the
        /// default) and succeed, repeatedly, while the monitor keeps it excluded; writes work.
        @Test func readsFallBackToPrimary() async throws {
            try await withRoutingProxy(replicas: [.unreachable], waitForReplica: false) { proxy in
                let result = try await psql(port: proxy.port, [
                    "select 'read', pg_is_in_recovery()",
                    "begin read only", "select 'read only tx', pg_is_in_recovery()", "commit",
                    "create temporary table sy_fallback (x int)",
                ])
                #expect(result.succeeded, "\(result)")
                #expect(result.labelled["read"] == "f", "\(result)")
                #expect(result.labelled["read only tx"] == "f", "\(result)")
                try await withNIOConnection(port: proxy.port) { connection in
                    // Across several health-check rounds.
                    let end = ContinuousClock.now + .seconds(1)
                    var answers: Set<Bool> = []
                    while ContinuousClock.now < end {
                        answers.formUnion(try await connection.values("select pg_is_in_recovery()", as: Bool.self))
                    }
                    #expect(answers == [false])
                    let sequence = uniqueName("sy_fb_seq")
                    try await connection.run(PostgresQuery(unsafeSQL: "create sequence \(sequence)"))
                    #expect(try await connection.values(PostgresQuery(unsafeSQL: "select nextval('\(sequence)')"), as: Int.self) == [1])
                    try await connection.run(PostgresQuery(unsafeSQL: "drop sequence \(sequence)"))
                }
            }
        }

        /// With replica_fallback = error and no eligible replica, an autocommit read gets ERROR (not FATAL)
        /// 57P03 and the connection stays usable: routing to the primary, or a write, works next.
        @Test func replicaFallbackErrorRefusesReadsRecoverably() async throws {
            try await withRoutingProxy(["replica_fallback": "error"], replicas: [.unreachable], waitForReplica: false) { proxy in
                // Raw wire: exactly what the client receives.
                let client = try await RawClient.login(port: proxy.port, user: "app")
                defer { client.close() }
                let refused = try await client.query("select 1")
                #expect(refused.errors.count == 1, "\(refused)")
                #expect(refused.firstError?.severity == "ERROR", "\(refused)")
                #expect(refused.firstError?.sqlState == "57P03", "\(refused)")
                #expect(refused.last?.description == "Z(I)", "\(refused)")
                // The same refusal for an extended-protocol batch, answered up to its Sync.
                try await client.send(RoutingWire.batch("select 2"))
                let batch = try await client.readReplies(1)[0]
                #expect(batch.errors.map(\.sqlState) == ["57P03"], "\(batch)")
                #expect(batch.last?.description == "Z(I)", "\(batch)")
                // A read-only transaction needs a replica too.
                let readOnly = try await client.query("begin read only")
                #expect(readOnly.firstError?.sqlState == "57P03", "\(readOnly)")
                #expect(readOnly.last?.description == "Z(I)", "\(readOnly)")
                // Writes still work, as does a read once routed to the primary.
                let write = try await client.query("create temporary table sy_fb_err (x int); insert into sy_fb_err values (1)")
                #expect(write.errors.isEmpty, "\(write)")
                #expect(write.commandTags == ["CREATE TABLE", "INSERT 0 1"], "\(write)")
                // Documented limit: SET switchyard.route is answered only when sent alone; inside a
                // multi-statement string it reaches Postgres, which refuses it (42601), and the
                // connection stays usable.
                let combined = try await client.query("set switchyard.route to primary; select 1")
                #expect(combined.errors.map(\.sqlState) == ["42601"], "\(combined)")
                #expect(combined.last?.description == "Z(I)", "\(combined)")
                let set = try await client.query("set switchyard.route to primary")
                #expect(set.commandTags == ["SET"], "\(set)")
                let read = try await client.query("select 1")
                #expect(read.rowValues == [["1"]], "\(read)")

                // psql: an ERROR, not a disconnection.
                let result = try await psql(port: proxy.port, [
                    "\\set VERBOSITY verbose",
                    "select 'refused', pg_is_in_recovery()",
                    "set switchyard.route to primary",
                    "select 'after', pg_is_in_recovery()",
                ], onErrorStop: false)
                #expect(result.stderr.contains("ERROR:  57P03"), "\(result)")
                #expect(!result.stderr.contains("FATAL"), "\(result)")
                #expect(result.labelled["refused"] == nil, "\(result)")
                #expect(result.labelled["after"] == "f", "\(result)")

                // postgres-nio: the error is an ERROR and the connection stays open.
                try await withNIOConnection(port: proxy.port) { connection in
                    let error = await #expect(throws: (any Error).self) {
                        try await connection.values("select 1", as: Int.self)
                    }
                    #expect(error?.sqlState == "57P03", "\(String(reflecting: error))")
                    #expect(error?.serverSeverity == "ERROR", "\(String(reflecting: error))")
                    #expect(!connection.isClosed)
                    #expect(try await connection.values("/* switchyard: primary */ select 1", as: Int.self) == [1])
                    let sequence = uniqueName("sy_fb_seq")
                    try await connection.run(PostgresQuery(unsafeSQL: "create sequence \(sequence)"))
                    #expect(try await connection.values(PostgresQuery(unsafeSQL: "select nextval('\(sequence)')"), as: Int.self) == [1])
                    try await connection.run(PostgresQuery(unsafeSQL: "drop sequence \(sequence)"))
                }
            }
        }
    }
}
