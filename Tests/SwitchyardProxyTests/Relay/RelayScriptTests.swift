import NIOCore
import PostgresWire
import Testing
@testable import SwitchyardProxy

/// The relay driven message by message against scripted servers (``RelayHarness``): the orderings
/// that real servers produce only by chance — a reply split across reads, a server dying between two
/// messages, a warning behind an injected query's answer — each written down once and replayed exactly.
@Suite struct RelayScriptTests {
    /// The messages' type letters, "TDCZ" for a one-row answer.
    static func ids(_ frames: [Frame]) -> String { String(frames.map { Character(UnicodeScalar($0.id)) }) }

    @Test func aLoginIsAnsweredWithItsServersParametersAndReadyForQuery() throws {
        let relay = try RelayHarness()
        let login = try relay.logIn()
        #expect(Self.ids(login) == "RSSSSSKZ")
        let reported = login.compactMap { $0.id == BackendMessageID.parameterStatus ? BackendMessage.decodeParameterStatus($0.body) : nil }
        #expect(reported.first { $0.0 == "TimeZone" }?.1 == "UTC")
        // Transaction mode: the login's server went back to the pool, and the client keeps its connection.
        #expect(relay.client.isActive)
    }

    @Test func aReadRunsOnAReplicaAndOnlyItsAnswerReachesTheClient() throws {
        let relay = try RelayHarness()
        try relay.logIn()
        try relay.clientSends { FrontendMessage.query("SELECT 1", into: &$0) }
        let replica = try #require(relay.servers.last)
        #expect(replica.name == "r1" || replica.name == "r2")
        try replica.acceptStartup()
        #expect(try replica.received().compactMap(\.queryText) == ["SELECT 1"])
        #expect(try relay.server("main").received().isEmpty)
        try replica.answer(rows: ["1"])
        #expect(Self.ids(try relay.clientReceived()) == "TDCZ")
    }

    /// A replica's answer is held until it shows success: a read-only refusal (25006) never reaches
    /// the client, and the same statement runs on the primary.
    @Test func aReplicaRefusalIsRerunOnThePrimaryUnseen() throws {
        let relay = try RelayHarness()
        try relay.logIn()
        try relay.clientSends { FrontendMessage.query("SELECT 1", into: &$0) }
        let replica = try #require(relay.servers.last)
        try replica.acceptStartup()
        _ = try replica.received()
        try replica.send { buffer in
            ErrorFields(severity: .error, code: "25006", message: "cannot execute INSERT in a read-only transaction").encode(into: &buffer)
            BackendMessage.readyForQuery(.idle, into: &buffer)
        }
        #expect(try relay.clientReceived().isEmpty)
        let primary = try relay.server("main")
        #expect(try primary.received().compactMap(\.queryText) == ["SELECT 1"])
        try primary.answer(rows: ["7"])
        let answer = try relay.clientReceived()
        #expect(Self.ids(answer) == "TDCZ")
        #expect(answer.allSatisfy { $0.errorFields == nil })
    }

    /// A replica that dies before its first row: nothing reached the client, so the read runs elsewhere.
    @Test func aReplicaLostBeforeItsFirstRowIsRetriedElsewhere() throws {
        let relay = try RelayHarness()
        try relay.logIn()
        try relay.clientSends { FrontendMessage.query("SELECT 1", into: &$0) }
        let first = try #require(relay.servers.last)
        try first.acceptStartup()
        _ = try first.received()
        try first.send { BackendMessage.rowDescription(columns: ["?column?"], into: &$0) }
        try first.channel.close().wait()
        #expect(try relay.clientReceived().isEmpty)
        let second = try #require(relay.servers.last)
        #expect(second !== first)
        #expect(second.name != first.name)
        if second.name != "main" { try second.acceptStartup() }
        #expect(try second.received().compactMap(\.queryText) == ["SELECT 1"])
        try second.answer(rows: ["1"])
        #expect(Self.ids(try relay.clientReceived()) == "TDCZ")
        #expect(relay.client.isActive)
    }

    /// Once rows went out, a lost server cannot be hidden: the client gets 08006 as FATAL and is closed.
    @Test func aServerLostMidAnswerEndsTheClientWith08006() throws {
        let relay = try RelayHarness()
        try relay.logIn()
        try relay.clientSends { FrontendMessage.query("INSERT INTO t VALUES (1)", into: &$0) }
        let primary = try relay.server("main")
        #expect(try primary.received().compactMap(\.queryText) == ["INSERT INTO t VALUES (1)"])
        try primary.channel.close().wait()
        let frames = try relay.clientReceived()
        let error = try #require(frames.last?.errorFields)
        #expect(error.code == SQLState.connectionFailure)
        #expect(error.severity == "FATAL")
        #expect(!relay.client.isActive)
    }

    /// The chaos suite's hang: a shutting-down server's WARNING in the same read as the answer to the
    /// write-position query Switchyard sent behind a commit. The client's work is done, so it is not
    /// told; that server connection is closed instead of pooled, and the client goes on.
    @Test func aServersOwnWarningBehindThePositionAnswerClosesThatConnectionNotTheClient() throws {
        let relay = try RelayHarness()
        try relay.logIn()
        let primary = try relay.server("main")
        try relay.clientSends { FrontendMessage.query("INSERT INTO t VALUES (1)", into: &$0) }
        _ = try primary.received()
        try primary.complete("INSERT 0 1")
        #expect(Self.ids(try relay.clientReceived()) == "CZ")
        // Behind the commit: the query for the primary's write position.
        let probe = try primary.received()
        #expect(probe.count == 1 && probe.first?.id == FrontendMessageID.query)
        try primary.send { buffer in
            Self.writePositionAnswer(into: &buffer)
            ErrorFields(severity: .warning, code: "57P02", message: "terminating connection because of unexpected SIGQUIT signal")
                .encode(into: &buffer, id: BackendMessageID.noticeResponse)
        }
        #expect(try relay.clientReceived().isEmpty)
        #expect(relay.client.isActive)
        #expect(!primary.channel.isActive)
        // The next write gets a new server connection.
        try relay.clientSends { FrontendMessage.query("INSERT INTO t VALUES (2)", into: &$0) }
        let next = try relay.server("main", 1)
        try next.acceptStartup()
        #expect(try next.received().compactMap(\.queryText) == ["INSERT INTO t VALUES (2)"])
    }

    /// An extended-protocol batch that reaches the relay a few bytes at a time goes to one server,
    /// in order and whole; the server's answer, also split, reaches the client whole.
    @Test(arguments: [1, 3, 7, 64])
    func aPipelineSplitAcrossReadsArrivesWhole(chunk: Int) throws {
        let relay = try RelayHarness()
        try relay.logIn()
        var batch = ByteBuffer()
        ParseMessage.encode(statement: "", definition: Self.definition("SELECT 1"), into: &batch)
        batch.writeMessage(id: FrontendMessageID.bind) { body in
            body.writeInteger(UInt8(0)); body.writeInteger(UInt8(0))
            body.writeInteger(Int16(0)); body.writeInteger(Int16(0)); body.writeInteger(Int16(0))
        }
        batch.writeMessage(id: FrontendMessageID.describe) { $0.writeInteger(UInt8(ascii: "P")); $0.writeInteger(UInt8(0)) }
        batch.writeMessage(id: FrontendMessageID.execute) { $0.writeInteger(UInt8(0)); $0.writeInteger(Int32(0)) }
        batch.writeMessage(id: FrontendMessageID.sync) { _ in }
        let sent = Array(batch.readableBytesView)
        var offset = 0
        while offset < sent.count {
            let end = min(offset + chunk, sent.count)
            try relay.clientSends { $0.writeBytes(sent[offset..<end]) }
            offset = end
        }
        let replica = try #require(relay.servers.last)
        #expect(replica.name != "main")
        try replica.acceptStartup()
        var received: [UInt8] = []
        while let buffer = try replica.channel.readOutbound(as: ByteBuffer.self) { received += buffer.readableBytesView }
        #expect(received == sent)
        var answer = ByteBuffer()
        for id in [BackendMessageID.parseComplete, BackendMessageID.bindComplete] { answer.writeMessage(id: id) { _ in } }
        BackendMessage.rowDescription(columns: ["?column?"], into: &answer)
        BackendMessage.dataRow(["1"], into: &answer)
        BackendMessage.commandComplete("SELECT 1", into: &answer)
        BackendMessage.readyForQuery(.idle, into: &answer)
        let reply = Array(answer.readableBytesView)
        offset = 0
        while offset < reply.count {
            let end = min(offset + chunk, reply.count)
            try replica.send { $0.writeBytes(reply[offset..<end]) }
            offset = end
        }
        var delivered: [UInt8] = []
        while let buffer = try relay.client.readOutbound(as: ByteBuffer.self) { delivered += buffer.readableBytesView }
        #expect(delivered == reply)
    }

    /// PAUSE holds a new transaction (nothing reaches the server); RESUME lets it run, in order.
    @Test func pauseHoldsTheNextTransactionAndResumeReleasesIt() throws {
        let relay = try RelayHarness()
        try relay.logIn()
        let primary = try relay.server("main")
        relay.shard.setPause(PauseScope(everything: true))
        try relay.clientSends { FrontendMessage.query("INSERT INTO t VALUES (1)", into: &$0) }
        #expect(try primary.received().isEmpty)
        #expect(try relay.session().heldFor == "main")
        relay.shard.setPause(PauseScope())
        #expect(try primary.received().compactMap(\.queryText) == ["INSERT INTO t VALUES (1)"])
        try primary.complete("INSERT 0 1")
        #expect(Self.ids(try relay.clientReceived()) == "CZ")
    }

    /// A read whose replica died after Switchyard set the client's parameters on it is re-run on another
    /// server, which gets its own set_config: only that one's answer is swallowed, not the client's.
    @Test func aRetriedReadOwesOnlyTheNewServersParameterAnswer() throws {
        let relay = try RelayHarness()
        #expect(Self.ids(try relay.logIn([("application_name", "x")])) == "R")
        // The login's server is set to what the client asked for before the client is told anything.
        let primary = try relay.server("main")
        #expect(try primary.received().compactMap(\.queryText).first?.contains("set_config(E'application_name', E'x', false)") == true)
        try primary.send(Self.setConfigAnswer(application: "x"))
        #expect(Self.ids(try relay.clientReceived()) == "SSSSSKZ")
        try relay.clientSends { FrontendMessage.query("SELECT 1", into: &$0) }
        let first = try #require(relay.servers.last)
        #expect(first.name != "main")
        try first.acceptStartup()
        let sent = try first.received().compactMap(\.queryText)
        #expect(sent.count == 2 && sent.first?.contains("set_config(E'application_name', E'x', false)") == true && sent.last == "SELECT 1",
                "\(sent)")
        try first.channel.close().wait()
        let second = try #require(relay.servers.last)
        #expect(second !== first && second.name != "main")
        try second.acceptStartup()
        let resent = try second.received().compactMap(\.queryText)
        #expect(resent.count == 2 && resent.first?.contains("set_config") == true && resent.last == "SELECT 1", "\(resent)")
        try second.send(Self.setConfigAnswer(application: "x"))
        try second.answer(rows: ["1"])
        #expect(Self.ids(try relay.clientReceived()) == "TDCZ")
    }

    /// A pipeline whose reads went to a replica reaches a write: the replica's part ends with a Sync of
    /// Switchyard's own. When that part failed, Postgres would skip the rest up to the client's Sync,
    /// so the write never runs and the client gets the error and one ReadyForQuery.
    @Test func aFailedReadInAPipelineSkipsTheWriteBehindIt() throws {
        let relay = try RelayHarness()
        try relay.logIn()
        let primary = try relay.server("main")
        try relay.clientSends { batch in
            for sql in ["SELECT * FROM missing", "INSERT INTO t VALUES (1)"] {
                ParseMessage.encode(statement: "", definition: Self.definition(sql), into: &batch)
                batch.writeMessage(id: FrontendMessageID.bind) { body in
                    body.writeInteger(UInt8(0)); body.writeInteger(UInt8(0))
                    body.writeInteger(Int16(0)); body.writeInteger(Int16(0)); body.writeInteger(Int16(0))
                }
                batch.writeMessage(id: FrontendMessageID.execute) { $0.writeInteger(UInt8(0)); $0.writeInteger(Int32(0)) }
            }
            batch.writeMessage(id: FrontendMessageID.sync) { _ in }
        }
        let replica = try #require(relay.servers.last)
        #expect(replica.name != "main")
        try replica.acceptStartup()
        #expect(Self.ids(try replica.received()) == "PBES")
        try replica.send { buffer in
            ErrorFields(severity: .error, code: "42P01", message: "relation \"missing\" does not exist").encode(into: &buffer)
            BackendMessage.readyForQuery(.idle, into: &buffer)
        }
        let answer = try relay.clientReceived()
        #expect(Self.ids(answer) == "EZ")
        #expect(answer.first?.errorFields?.code == "42P01")
        #expect(try primary.received().isEmpty)
    }

    /// Read-your-writes: a write is followed by the query for its position, also when its BEGIN and COMMIT
    /// come in the same string; a SET, a SHOW or a COMMIT alone writes nothing and costs no such query.
    @Test(arguments: [
        ("BEGIN; INSERT INTO t VALUES (1); COMMIT", ["BEGIN", "INSERT 0 1", "COMMIT"], true),
        ("INSERT INTO t VALUES (1); SELECT 1", ["INSERT 0 1", "SELECT 1"], true),
        ("UPDATE t SET a = 1", ["UPDATE 1"], true),
        ("SET search_path = app, public", ["SET"], false),
        ("RESET search_path", ["RESET"], false),
        ("SHOW search_path", ["SHOW"], false),
        ("BEGIN; SET LOCAL work_mem = '64MB'; COMMIT", ["BEGIN", "SET", "COMMIT"], false),
    ])
    func aWriteIsFollowedByThePositionQueryAndOnlyAWrite(sql: String, tags: [String], wrote: Bool) throws {
        let relay = try RelayHarness()
        try relay.logIn()
        let primary = try relay.server("main")
        try relay.clientSends { FrontendMessage.query(sql, into: &$0) }
        #expect(try primary.received().compactMap(\.queryText) == [sql])
        try primary.send { buffer in
            for tag in tags { BackendMessage.commandComplete(tag, into: &buffer) }
            BackendMessage.readyForQuery(.idle, into: &buffer)
        }
        #expect(Self.ids(try relay.clientReceived()) == String(repeating: "C", count: tags.count) + "Z")
        let after = try primary.received().compactMap(\.queryText)
        #expect(after == (wrote ? [WatermarkProbe.query] : []))
    }

    /// Transaction mode: a statement the client prepared on one server connection is prepared again on
    /// the next one its Bind lands on (here, the first closed between transactions), and that injected
    /// Parse's answer never reaches the client. A Parse the server already has is answered by Switchyard.
    @Test func aPreparedStatementFollowsTheClientToANewServerConnection() throws {
        let relay = try RelayHarness()
        try relay.logIn()
        let first = try relay.server("main")
        try relay.clientSends { Self.parse("s1", "INSERT INTO t VALUES ($1)", into: &$0); Self.sync(into: &$0) }
        let prepared = try first.received()
        #expect(Self.ids(prepared) == "PS")
        try first.send { $0.writeMessage(id: BackendMessageID.parseComplete) { _ in }; BackendMessage.readyForQuery(.idle, into: &$0) }
        #expect(Self.ids(try relay.clientReceived()) == "1Z")
        try Self.answerPositionQueryIfAsked(first)
        // The server goes away between transactions (a restart); the pool drops the connection.
        try first.channel.close().wait()
        #expect(relay.client.isActive)
        try relay.clientSends { Self.bind("s1", ["42"], into: &$0); Self.execute(into: &$0); Self.sync(into: &$0) }
        let second = try relay.server("main", 1)
        try second.acceptStartup()
        let sent = try second.received()
        #expect(Self.ids(sent) == "PBES")
        // The same statement, under the same server-side name, as on the first connection.
        #expect(sent.first?.body == prepared.first?.body)
        try second.send { buffer in
            buffer.writeMessage(id: BackendMessageID.parseComplete) { _ in }
            buffer.writeMessage(id: BackendMessageID.bindComplete) { _ in }
            BackendMessage.commandComplete("INSERT 0 1", into: &buffer)
            BackendMessage.readyForQuery(.idle, into: &buffer)
        }
        #expect(Self.ids(try relay.clientReceived()) == "2CZ")
        try Self.answerPositionQueryIfAsked(second)
        // Closed by the client and prepared again with the same text: the server keeps it all along.
        try relay.clientSends { Self.close("s1", into: &$0); Self.sync(into: &$0) }
        try relay.clientSends { Self.parse("s1", "INSERT INTO t VALUES ($1)", into: &$0); Self.sync(into: &$0) }
        let toServer = try second.received()
        #expect(!toServer.contains { $0.id == FrontendMessageID.parse }, "\(Self.ids(toServer))")
        for _ in toServer.filter({ $0.id == FrontendMessageID.sync }) {
            try second.send { BackendMessage.readyForQuery(.idle, into: &$0) }
        }
        #expect(Self.ids(try relay.clientReceived()) == "3Z1Z")
    }

    /// A server that dies while the client streams COPY data: the client is told at once (08006), not
    /// left sending into nothing.
    @Test func aServerLostDuringCopyEndsTheClientWith08006() throws {
        let relay = try RelayHarness()
        try relay.logIn()
        let primary = try relay.server("main")
        try relay.clientSends { FrontendMessage.query("COPY t FROM STDIN", into: &$0) }
        _ = try primary.received()
        try primary.send { buffer in
            buffer.writeMessage(id: BackendMessageID.copyInResponse) { $0.writeInteger(UInt8(0)); $0.writeInteger(Int16(1)); $0.writeInteger(Int16(0)) }
        }
        #expect(Self.ids(try relay.clientReceived()) == "G")
        try relay.clientSends { $0.writeMessage(id: FrontendMessageID.copyData) { $0.writeString("1\n2\n") } }
        #expect(Self.ids(try primary.received()) == "d")
        try primary.channel.close().wait()
        let frames = try relay.clientReceived()
        #expect(frames.last?.errorFields?.code == SQLState.connectionFailure)
        #expect(!relay.client.isActive)
    }

    /// A large prepared statement's copy is charged to the memory budget while the client may use it,
    /// and given back when the client leaves, even while something still holds its session.
    @Test func aStatementCopysChargeEndsWithItsClient() throws {
        let relay = try RelayHarness()
        try relay.logIn()
        let primary = try relay.server("main")
        let session = try relay.session()
        let sql = "INSERT INTO t VALUES ('" + String(repeating: "x", count: 100_000) + "')"
        try relay.clientSends { Self.parse("big", sql, into: &$0); Self.sync(into: &$0) }
        #expect(Self.ids(try primary.received()) == "PS")
        try primary.send { $0.writeMessage(id: BackendMessageID.parseComplete) { _ in }; BackendMessage.readyForQuery(.idle, into: &$0) }
        #expect(Self.ids(try relay.clientReceived()) == "1Z")
        try Self.answerPositionQueryIfAsked(primary)
        #expect(relay.runtime.memoryBudget.retained >= 100_000)
        try relay.clientSends { $0.writeMessage(id: FrontendMessageID.terminate) { _ in } }
        #expect(!relay.client.isActive)
        #expect(relay.runtime.memoryBudget.retained == 0)
        withExtendedLifetime(session) {}
    }

    /// A client that sends part of a large message (held whole, charged to the budget) and then nothing for
    /// `message_stall_timeout` is closed with 08P01, and its charge goes back; each read of it restarts the clock.
    @Test func aClientStalledPartwayThroughALargeMessageIsClosedAndItsChargeGoesBack() throws {
        let relay = try RelayHarness(configuration: RelayHarness.config("message_stall_timeout = 2"))
        try relay.logIn()
        var parse = ByteBuffer()
        Self.parse("", "INSERT INTO t VALUES ('" + String(repeating: "x", count: 100_000) + "')", into: &parse)
        let bytes = Array(parse.readableBytesView)
        try relay.clientSends { $0.writeBytes(bytes[0..<50_000]) }
        #expect(relay.runtime.memoryBudget.used >= 100_000)
        relay.loop.advanceTime(by: .milliseconds(1500))
        try relay.clientSends { $0.writeBytes(bytes[50_000..<60_000]) }
        relay.loop.advanceTime(by: .milliseconds(1500))
        // 1.5 s since the last bytes: still open.
        #expect(relay.client.isActive)
        #expect(try relay.clientReceived().isEmpty)
        relay.loop.advanceTime(by: .milliseconds(600))
        let error = try #require(try relay.clientReceived().last?.errorFields)
        #expect(error.code == SQLState.protocolViolation && error.severity == "FATAL")
        #expect(!relay.client.isActive)
        #expect(relay.runtime.memoryBudget.used == 0)
    }

    /// The same message sent slowly but steadily, then completed, runs: the stall check is not a deadline.
    @Test func aLargeMessageSentSlowlyButSteadilyRuns() throws {
        let relay = try RelayHarness(configuration: RelayHarness.config("message_stall_timeout = 2"))
        try relay.logIn()
        let primary = try relay.server("main")
        var batch = ByteBuffer()
        Self.parse("", "INSERT INTO t VALUES ('" + String(repeating: "x", count: 100_000) + "')", into: &batch)
        Self.sync(into: &batch)
        let bytes = Array(batch.readableBytesView)
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + 10_000, bytes.count)
            try relay.clientSends { $0.writeBytes(bytes[offset..<end]) }
            relay.loop.advanceTime(by: .milliseconds(1500))
            offset = end
        }
        #expect(relay.client.isActive)
        #expect(Self.ids(try primary.received()) == "PS")
        // Only the unnamed statement's copy, kept until its next Parse, is still charged.
        #expect(relay.runtime.memoryBudget.used == relay.runtime.memoryBudget.retained)
    }

    /// The primary moves (a switchover's flip) while the client is inside a transaction: the transaction
    /// finishes where it began, and the client's next unit goes to the new primary; the old primary's
    /// connection is closed when the transaction gives it back, not pooled.
    @Test func aPrimaryMovedMidTransactionTakesTheNextUnitNotThisOne() throws {
        let relay = try RelayHarness()
        try relay.logIn()
        let old = try relay.server("main")
        func commandOn(_ server: ScriptedServer, _ sql: String, tag: String, status: TransactionStatus) throws {
            try relay.clientSends { FrontendMessage.query(sql, into: &$0) }
            #expect(try server.received().compactMap(\.queryText) == [sql])
            try server.complete(tag, status: status)
            #expect(Self.ids(try relay.clientReceived()) == "CZ")
        }
        try commandOn(old, "BEGIN", tag: "BEGIN", status: .inTransaction)
        relay.shard.topologyChanged(try #require(relay.shard.topology.switchedOver(to: "r1")))
        try commandOn(old, "INSERT INTO t VALUES (1)", tag: "INSERT 0 1", status: .inTransaction)
        try commandOn(old, "COMMIT", tag: "COMMIT", status: .idle)
        try Self.answerPositionQueryIfAsked(old)
        #expect(!old.channel.isActive)
        try relay.clientSends { FrontendMessage.query("INSERT INTO t VALUES (2)", into: &$0) }
        let new = try #require(relay.servers.last)
        #expect(new.name == "r1")
        try new.acceptStartup()
        #expect(try new.received().compactMap(\.queryText) == ["INSERT INTO t VALUES (2)"])
    }

    /// A primary that reports being in recovery: a write gets a clear 25006 from Switchyard, naming the
    /// server, without reaching it; reads still run, and the session goes on.
    @Test func aWriteToAPrimaryInRecoveryIsRefusedClearly() throws {
        let relay = try RelayHarness()
        try relay.logIn()
        let primary = try relay.server("main")
        relay.shard.topologyChanged(relay.shard.topology.withPrimaryState(.inRecovery))
        try relay.clientSends { FrontendMessage.query("INSERT INTO t VALUES (1)", into: &$0) }
        let refused = try relay.clientReceived()
        #expect(Self.ids(refused) == "EZ")
        #expect(refused.first?.errorFields?.code == SQLState.readOnlySQLTransaction)
        #expect(refused.first?.errorFields?.message.contains("\"main\"") == true)
        #expect(try primary.received().isEmpty)
        try relay.clientSends { FrontendMessage.query("SELECT 1", into: &$0) }
        let replica = try #require(relay.servers.last)
        #expect(replica.name != "main")
        try replica.acceptStartup()
        _ = try replica.received()
        try replica.answer(rows: ["1"])
        #expect(Self.ids(try relay.clientReceived()) == "TDCZ")
    }

    /// Preparing a write runs nothing, so it costs no write-position query; executing it does.
    @Test func preparingAWriteLearnsNoPositionAndExecutingItDoes() throws {
        let relay = try RelayHarness()
        try relay.logIn()
        let primary = try relay.server("main")
        try relay.clientSends { Self.parse("w", "INSERT INTO t VALUES ($1)", into: &$0); Self.sync(into: &$0) }
        #expect(Self.ids(try primary.received()) == "PS")
        try primary.send { $0.writeMessage(id: BackendMessageID.parseComplete) { _ in }; BackendMessage.readyForQuery(.idle, into: &$0) }
        #expect(Self.ids(try relay.clientReceived()) == "1Z")
        #expect(try primary.received().isEmpty)
        try relay.clientSends { Self.bind("w", ["1"], into: &$0); Self.execute(into: &$0); Self.sync(into: &$0) }
        #expect(Self.ids(try primary.received()) == "BES")
        try primary.send { buffer in
            buffer.writeMessage(id: BackendMessageID.bindComplete) { _ in }
            BackendMessage.commandComplete("INSERT 0 1", into: &buffer)
            BackendMessage.readyForQuery(.idle, into: &buffer)
        }
        #expect(Self.ids(try relay.clientReceived()) == "2CZ")
        #expect(try primary.received().compactMap(\.queryText) == [WatermarkProbe.query])
    }

    static let sessionMode = RelayHarness.config(poolMode: "session")

    /// Session mode: the client keeps its server; when it leaves, the server runs `server_reset_query`
    /// before the next client gets it, and that client is told the parameters the reset restored.
    @Test func sessionModeResetsTheServerBeforeTheNextClientGetsIt() throws {
        let relay = try RelayHarness(configuration: Self.sessionMode)
        try relay.logIn()
        let server = try relay.server("main")
        try relay.clientSends { FrontendMessage.query("SET TimeZone = 'Europe/Paris'", into: &$0) }
        #expect(try server.received().compactMap(\.queryText) == ["SET TimeZone = 'Europe/Paris'"])
        try server.send { buffer in
            BackendMessage.parameterStatus(name: "TimeZone", value: "Europe/Paris", into: &buffer)
            BackendMessage.commandComplete("SET", into: &buffer)
            BackendMessage.readyForQuery(.idle, into: &buffer)
        }
        #expect(Self.ids(try relay.clientReceived()) == "SCZ")
        try relay.clientSends { $0.writeMessage(id: FrontendMessageID.terminate) { _ in } }
        #expect(!relay.client.isActive)
        #expect(try server.received().compactMap(\.queryText) == ["DISCARD ALL"])
        try server.send { buffer in
            BackendMessage.parameterStatus(name: "TimeZone", value: "UTC", into: &buffer)
            BackendMessage.commandComplete("DISCARD ALL", into: &buffer)
            BackendMessage.readyForQuery(.idle, into: &buffer)
        }
        let next = try relay.anotherClient()
        let login = try RelayHarness.received(by: next)
        #expect(relay.servers.count == 1, "the reset connection is reused")
        let reported = login.compactMap { $0.id == BackendMessageID.parameterStatus ? BackendMessage.decodeParameterStatus($0.body) : nil }
        #expect(reported.first { $0.0 == "TimeZone" }?.1 == "UTC")
        #expect(login.last?.id == BackendMessageID.readyForQuery)
    }

    /// The server ends the session itself (pg_terminate_backend: FATAL 57P01, then the close): the
    /// client gets that FATAL once, as from Postgres, and nothing after it.
    @Test(arguments: ["transaction", "session"])
    func aServersOwnFatalReachesTheClientAloneAndClosesIt(mode: String) throws {
        let relay = try RelayHarness(configuration: mode == "session" ? Self.sessionMode : RelayHarness.configuration)
        try relay.logIn()
        let server = try relay.server("main")
        try relay.clientSends { FrontendMessage.query("SELECT pg_sleep(10) FROM t FOR UPDATE", into: &$0) }
        _ = try server.received()
        try server.send { ErrorFields(severity: .fatal, code: "57P01", message: "terminating connection due to administrator command").encode(into: &$0) }
        try server.channel.close().wait()
        let frames = try relay.clientReceived()
        #expect(Self.ids(frames) == "E", "\(frames.map(\.errorFields))")
        #expect(frames.first?.errorFields?.code == "57P01")
        #expect(!relay.client.isActive)
    }

    /// A CancelRequest with the key the client was given reaches the server running its query, on a
    /// connection of its own, with that server's own key; the query's answer then comes as usual.
    @Test func aCancelReachesTheServerRunningTheClientsQueryWithThatServersKey() throws {
        let relay = try RelayHarness()
        let login = try relay.logIn()
        let key = try #require(login.first { $0.id == BackendMessageID.backendKeyData }.flatMap { BackendMessage.decodeBackendKeyData($0.body) })
        let primary = try relay.server("main")
        try relay.clientSends { FrontendMessage.query("UPDATE t SET a = pg_sleep(60)", into: &$0) }
        _ = try primary.received()
        var cancel = ByteBuffer()
        key.encode(into: &cancel)
        let canceller = try relay.rawClient(sending: cancel)
        #expect(!canceller.isActive)
        let sender = try #require(relay.servers.last)
        #expect(sender !== primary && sender.name == "main")
        var sent = ByteBuffer()
        while let buffer = try sender.channel.readOutbound(as: ByteBuffer.self) { sent.writeImmutableBuffer(buffer) }
        var expected = ByteBuffer()
        CancelRequest(processID: primary.processID, secretKey: 7).encode(into: &expected)
        #expect(sent == expected)
        #expect(!sender.channel.isActive)
        try primary.send { buffer in
            ErrorFields(severity: .error, code: "57014", message: "canceling statement due to user request").encode(into: &buffer)
            BackendMessage.readyForQuery(.idle, into: &buffer)
        }
        let answer = try relay.clientReceived()
        #expect(Self.ids(answer) == "EZ" && answer.first?.errorFields?.code == "57014")
        #expect(relay.client.isActive)
    }

    /// A cancel with a key nobody was given is ignored, as Postgres ignores it: no server is contacted.
    @Test func aCancelWithAnUnknownKeyReachesNoServer() throws {
        let relay = try RelayHarness()
        try relay.logIn()
        var cancel = ByteBuffer()
        CancelRequest(processID: 4242, secretKey: 99).encode(into: &cancel)
        let canceller = try relay.rawClient(sending: cancel)
        #expect(!canceller.isActive)
        #expect(relay.servers.count == 1)
    }

    static func parse(_ name: String, _ sql: String, into buffer: inout ByteBuffer) {
        ParseMessage.encode(statement: name, definition: definition(sql), into: &buffer)
    }

    static func bind(_ statement: String, _ values: [String], into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: FrontendMessageID.bind) { body in
            body.writeInteger(UInt8(0))
            body.writeNullTerminatedString(statement)
            body.writeInteger(Int16(0))
            body.writeInteger(Int16(values.count))
            for value in values { body.writeInteger(Int32(value.utf8.count)); body.writeString(value) }
            body.writeInteger(Int16(0))
        }
    }

    static func execute(into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: FrontendMessageID.execute) { $0.writeInteger(UInt8(0)); $0.writeInteger(Int32(0)) }
    }

    static func sync(into buffer: inout ByteBuffer) { buffer.writeMessage(id: FrontendMessageID.sync) { _ in } }

    static func close(_ statement: String, into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: FrontendMessageID.close) { $0.writeInteger(UInt8(ascii: "S")); $0.writeNullTerminatedString(statement) }
    }

    /// Answers the write-position query Switchyard sends behind a unit that may have written, if it sent one.
    static func answerPositionQueryIfAsked(_ server: ScriptedServer) throws {
        let sent = try server.received()
        guard !sent.isEmpty else { return }
        #expect(sent.compactMap(\.queryText) == [WatermarkProbe.query])
        try server.send(Self.writePositionAnswer)
    }

    /// The answer to the write-position query: one row, then ReadyForQuery.
    static func writePositionAnswer(into buffer: inout ByteBuffer) {
        ScriptedServer.writeRows(column: "lsn", ["0/3000060"], into: &buffer)
        BackendMessage.readyForQuery(.idle, into: &buffer)
    }

    /// Postgres' answer to `SELECT set_config('application_name', ...)`: the row, then the report.
    static func setConfigAnswer(application: String) -> (inout ByteBuffer) -> Void {
        { buffer in
            ScriptedServer.writeRows(column: "set_config", [application], into: &buffer)
            BackendMessage.parameterStatus(name: "application_name", value: application, into: &buffer)
            BackendMessage.readyForQuery(.idle, into: &buffer)
        }
    }

    static func definition(_ sql: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeNullTerminatedString(sql)
        buffer.writeInteger(Int16(0))
        return buffer
    }
}
