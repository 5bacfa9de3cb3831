import PostgresWire
import Testing
@testable import SwitchyardProxy

/// `AdminCommand.parse`: what an operator types on the admin console, and what each command answers with.
@Suite struct AdminCommandTests {
    /// The error `parse` throws for `text`; records a test failure if it parses.
    func parseError(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> ErrorFields? {
        do {
            let command = try AdminCommand.parse(text)
            Issue.record("expected a syntax error, got \(command)", sourceLocation: sourceLocation)
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: [
        ("SHOW HELP", AdminCommand.showHelp),
        ("SHOW SERVERS", .showServers),
        ("SHOW POOLS", .showPools),
        ("SHOW CLIENTS", .showClients),
        ("SHOW STATS", .showStats),
        ("SHOW CONFIG", .showConfig),
        ("SHOW VERSION", .showVersion),
        ("PAUSE", .pause(server: nil)),
        ("PAUSE replica1", .pause(server: "replica1")),
        ("RESUME", .resume(server: nil)),
        ("RESUME replica1", .resume(server: "replica1")),
        ("RELOAD", .reload),
        ("DISABLE replica1", .disable(server: "replica1")),
        ("ENABLE replica1", .enable(server: "replica1")),
        ("KILL primary", .kill(server: "primary")),
    ])
    func parsesEveryCommand(text: String, expected: AdminCommand) throws {
        #expect(try AdminCommand.parse(text) == expected)
    }

    @Test func verbsAndShowTargetsAreCaseInsensitive() throws {
        #expect(try AdminCommand.parse("show servers") == .showServers)
        #expect(try AdminCommand.parse("Show Pools") == .showPools)
        #expect(try AdminCommand.parse("sHoW vErSiOn") == .showVersion)
        #expect(try AdminCommand.parse("reload") == .reload)
        #expect(try AdminCommand.parse("pause") == .pause(server: nil))
        #expect(try AdminCommand.parse("Kill primary") == .kill(server: "primary"))
    }

    @Test func serverNamesKeepTheirCase() throws {
        #expect(try AdminCommand.parse("disable Replica_East") == .disable(server: "Replica_East"))
        #expect(try AdminCommand.parse("PAUSE R1") == .pause(server: "R1"))
    }

    @Test func whitespaceAroundAndBetweenWordsIsIgnored() throws {
        #expect(try AdminCommand.parse("  SHOW\t  STATS \n") == .showStats)
        #expect(try AdminCommand.parse("\nENABLE   r1  \r") == .enable(server: "r1"))
        #expect(try AdminCommand.parse("PAUSE\n\tr1\n;\n") == .pause(server: "r1"))
    }

    /// In Swift "\r\n" is one Character, equal neither to "\r" nor to "\n", so the word splitter keeps it.
    @Test
    func crlfLineEndingsSeparateWords() throws {
        #expect(try AdminCommand.parse("SHOW SERVERS\r\n") == .showServers)
        #expect(try AdminCommand.parse("SHOW\r\nSERVERS") == .showServers)
        #expect(try AdminCommand.parse("\r\nRELOAD") == .reload)
    }

    @Test func trailingSemicolonIsOptional() throws {
        #expect(try AdminCommand.parse("SHOW SERVERS;") == .showServers)
        #expect(try AdminCommand.parse("SHOW SERVERS ;") == .showServers)
        #expect(try AdminCommand.parse("RELOAD;") == .reload)
        #expect(try AdminCommand.parse("RELOAD ;") == .reload)
        #expect(try AdminCommand.parse("PAUSE;") == .pause(server: nil))
        #expect(try AdminCommand.parse("PAUSE r1;") == .pause(server: "r1"))
        #expect(try AdminCommand.parse("KILL r1 ;") == .kill(server: "r1"))
    }

    @Test func quotedServerNamesAreUnquoted() throws {
        #expect(try AdminCommand.parse(#"KILL "replica-1""#) == .kill(server: "replica-1"))
        #expect(try AdminCommand.parse(#"PAUSE "Primary";"#) == .pause(server: "Primary"))
        #expect(try AdminCommand.parse(#"RESUME "r1" ;"#) == .resume(server: "r1"))
        #expect(try AdminCommand.parse(#"disable "r2""#) == .disable(server: "r2"))
        // A lone quote character is a (strange) name, not an empty quoted one.
        #expect(try AdminCommand.parse(#"ENABLE ""#) == .enable(server: "\""))
    }

    @Test(arguments: [
        "SHOW SERVERS now",      // SHOW takes exactly one target
        "SHOW",                  // no target
        "SHOW NOTHING",          // unknown target
        "RELOAD now",            // RELOAD takes no argument
        "PAUSE r1 r2",           // at most one server
        "RESUME r1 r2;",
        "DISABLE",               // needs exactly one server
        "ENABLE r1 r2",
        "KILL",
        "KILL;",
        "SELECT 1",              // unknown command
        "SHOWSERVERS",
        "",                      // empty
        ";",
        "   ",
    ])
    func malformedCommandsThrowSyntaxErrorListingTheCommands(text: String) throws {
        let error = try #require(parseError(text))
        #expect(error.code == "42601")
        #expect(error.code == SQLState.syntaxError)
        #expect(error.severity == "ERROR")
        #expect(!error.isFatal)
        #expect(error.message.hasSuffix(" in admin command"))
        #expect(error.detail == "Commands: SHOW HELP, SHOW SERVERS, SHOW POOLS, SHOW CLIENTS, SHOW STATS, SHOW CONFIG, "
            + "SHOW VERSION, SHOW SWITCHOVER, PAUSE [server], RESUME [server], RELOAD, DISABLE <server>, ENABLE <server>, KILL <server>, "
            + "SWITCHOVER TO <server> [TIMEOUT <s>] [DRY RUN] [FORCE].")
        #expect(error.hint == "SHOW HELP lists the commands.")
    }

    @Test func errorMessagesNameTheProblem() throws {
        #expect(parseError("RELOAD now")?.message == "RELOAD takes no argument in admin command")
        #expect(parseError("pause a b")?.message == "PAUSE takes at most one server name in admin command")
        #expect(parseError("kill")?.message == "KILL needs exactly one server name in admin command")
        #expect(parseError("SHOW nothing")?.message == "unknown SHOW target \"nothing\" in admin command")
        #expect(parseError("SHOW")?.message == "SHOW needs one of: HELP, SERVERS, POOLS, CLIENTS, STATS, CONFIG, VERSION, SWITCHOVER in admin command")
        #expect(parseError("select 1")?.message == "unknown command \"select\" in admin command")
        #expect(parseError("")?.message == "empty command in admin command")
        #expect(parseError(";")?.message == "empty command in admin command")
    }

    @Test func helpListsEveryCommandOnce() {
        let commands = AdminCommand.help.map(\.command)
        #expect(commands.count == 15)
        #expect(Set(commands).count == commands.count)
        #expect(AdminCommand.help.allSatisfy { !$0.description.isEmpty })
        #expect(AdminCommand.databaseName == "switchyard")
    }

    @Test(arguments: [
        (AdminCommand.showHelp, "SHOW", ["command", "description"]),
        (.showServers, "SHOW", ["name", "role", "host", "port", "state", "lag_bytes", "lag_seconds", "active", "idle", "weight", "last_error", "replay_lsn"]),
        (.showPools, "SHOW", ["database", "user", "server", "cl_active", "cl_waiting", "cl_paused", "sv_active", "sv_idle", "sv_login",
                              "maxwait_ms", "pool_size"]),
        (.showClients, "SHOW", ["id", "user", "database", "address", "state", "server", "application_name", "connected_seconds", "read_consistency", "last_write_lsn"]),
        (.showStats, "SHOW", ["server", "role", "queries", "transactions", "bytes_received", "bytes_sent", "avg_query_ms", "p99_query_ms",
                              "avg_transaction_ms", "waits", "avg_wait_ms"]),
        (.showConfig, "SHOW", ["key", "value", "reloadable"]),
        (.showVersion, "SHOW", ["version"]),
        (.pause(server: nil), "PAUSE", ["result"]),
        (.pause(server: "r1"), "PAUSE", ["result"]),
        (.resume(server: nil), "RESUME", ["result"]),
        (.reload, "RELOAD", ["result"]),
        (.disable(server: "r1"), "DISABLE", ["result"]),
        (.enable(server: "r1"), "ENABLE", ["result"]),
        (.kill(server: "r1"), "KILL", ["result"]),
    ])
    func columnsAndTag(command: AdminCommand, tag: String, columnNames: [String]) {
        #expect(command.tag == tag)
        #expect(command.columns.map(\.name) == columnNames)
        #expect(command.isAction == (tag != "SHOW"))
    }

    @Test func columnTypes() {
        #expect(AdminCommand.showHelp.columns.map(\.type) == [.text, .text])
        #expect(AdminCommand.showServers.columns.map(\.type)
            == [.text, .text, .text, .int8, .text, .int8, .float8, .int8, .int8, .int8, .text, .text])
        #expect(AdminCommand.showPools.columns.map(\.type)
            == [.text, .text, .text, .int8, .int8, .int8, .int8, .int8, .int8, .float8, .int8])
        #expect(AdminCommand.showClients.columns.map(\.type) == [.int8, .text, .text, .text, .text, .text, .text, .float8, .text, .text])
        #expect(AdminCommand.showStats.columns.map(\.type)
            == [.text, .text, .int8, .int8, .int8, .int8, .float8, .float8, .float8, .int8, .float8])
        #expect(AdminCommand.showConfig.columns.map(\.type) == [.text, .text, .text])
        #expect(AdminCommand.showVersion.columns.map(\.type) == [.text])
        #expect(AdminCommand.kill(server: "r1").columns.map(\.type) == [.text])
    }

    @Test func actionResultsAreOneTextRowPerMessage() {
        let result = AdminResult(messages: ["paused r1", "paused r2"])
        #expect(result.rows == [[.text("paused r1")], [.text("paused r2")]])
        #expect(AdminResult(messages: []).rows.isEmpty)
    }
}

@Suite struct SwitchoverCommandTests {
    @Test func parsesEveryOption() throws {
        #expect(try AdminCommand.parse("switchover to standby") == .switchover(.init(target: "standby")))
        #expect(try AdminCommand.parse("SWITCHOVER TO \"Blue\" TIMEOUT 2.5 DRY RUN FORCE;")
                == .switchover(.init(target: "Blue", timeout: .milliseconds(2500), dryRun: true, force: true)))
        #expect(try AdminCommand.parse("show switchover") == .showSwitchover)
        #expect(AdminCommand.switchover(.init(target: "x")).tag == "SWITCHOVER")
        #expect(AdminCommand.showSwitchover.columns.map(\.name) == AdminCommand.switchover(.init(target: "x")).columns.map(\.name))
    }

    @Test(arguments: ["SWITCHOVER", "SWITCHOVER standby", "SWITCHOVER TO", "SWITCHOVER TO s TIMEOUT", "SWITCHOVER TO s TIMEOUT -1",
                      "SWITCHOVER TO s TIMEOUT 1 TIMEOUT 2", "SWITCHOVER TO s DRY", "SWITCHOVER TO s FORCE FORCE", "SWITCHOVER TO s NOW"])
    func rejectsMalformedForms(_ text: String) {
        #expect(throws: ErrorFields.self) { try AdminCommand.parse(text) }
        do { _ = try AdminCommand.parse(text) } catch { #expect(error.code == SQLState.syntaxError) }
    }
}
