import NIOCore
import PostgresWire
import Testing
@testable import SwitchyardProxy

/// Transaction mode's statement map, driven event by event: client messages out, server message
/// types back, what to send and what the client sees as the result. No sockets.
@Suite struct StatementMapTests {
    let allocator = ByteBufferAllocator()

    func message(_ id: UInt8, _ body: (inout ByteBuffer) -> Void) -> WireMessage { WireMessage.make(id: id, body) }

    func parse(_ name: String, _ sql: String) -> WireMessage {
        message(FrontendMessageID.parse) {
            $0.writeNullTerminatedString(name)
            $0.writeNullTerminatedString(sql)
            $0.writeInteger(Int16(0))
        }
    }

    func bind(_ statement: String, portal: String = "") -> WireMessage {
        message(FrontendMessageID.bind) {
            $0.writeNullTerminatedString(portal)
            $0.writeNullTerminatedString(statement)
            $0.writeInteger(Int16(0)); $0.writeInteger(Int16(0)); $0.writeInteger(Int16(0))
        }
    }

    func target(_ id: UInt8, _ statement: String) -> WireMessage {
        message(id) { $0.writeInteger(UInt8(ascii: "S")); $0.writeNullTerminatedString(statement) }
    }

    var execute: WireMessage { message(FrontendMessageID.execute) { $0.writeNullTerminatedString(""); $0.writeInteger(Int32(0)) } }
    var sync: WireMessage { message(FrontendMessageID.sync) { _ in } }
    func query(_ sql: String) -> WireMessage { message(FrontendMessageID.query) { $0.writeNullTerminatedString(sql) } }

    /// The composed messages as readable lines: `P sy_… select 1`, `B sy_…`, `C `, ...
    func lines(_ forwarding: StatementMap.Forwarding) throws -> [String] {
        guard var buffer = forwarding.composed else { return [] }
        var seen: [String] = []
        while let message = try buffer.readWireMessage() {
            let id = Character(Unicode.Scalar(message.id))
            switch message.id {
            case FrontendMessageID.parse:
                let parse = try #require(ParseMessage(message))
                var definition = parse.definition
                seen.append("P \(parse.statement) \(definition.readNullTerminatedString() ?? "?")")
            case FrontendMessageID.bind:
                seen.append("B \(try #require(BindMessage(message)).statement)")
            case FrontendMessageID.close, FrontendMessageID.describe:
                seen.append("\(id) \(try #require(TargetMessage(message)).name)")
            default:
                seen.append("\(id)")
            }
        }
        return seen
    }

    let serverName = PreparedStatement(definition: {
        var definition = ByteBuffer()
        definition.writeNullTerminatedString("select 1")
        definition.writeInteger(Int16(0))
        return definition
    }()).serverName

    /// A map whose client prepared `s1` (`select 1`) on `server`, answered.
    func preparedS1(on server: inout ServerStatements) -> StatementMap {
        var map = StatementMap()
        _ = map.clientSent(parse("s1", "select 1"), server: &server, allocator: allocator)
        _ = map.serverSent(BackendMessageID.parseComplete, error: nil, server: &server)
        return map
    }

    @Test func aNamedParseIsRenamedAndAnsweredByTheServer() throws {
        var map = StatementMap()
        var server = ServerStatements()
        let out = map.clientSent(parse("s1", "select 1"), server: &server, allocator: allocator)
        #expect(!out.forwardsMessage)
        #expect(try lines(out) == ["P \(serverName) select 1"])
        #expect(out.madeUpAnswers.isEmpty)
        #expect(server.contains(serverName))
        #expect(map.serverSent(BackendMessageID.parseComplete, error: nil, server: &server).forward)
        #expect(map.isSettled)
    }

    @Test func aParseTheServerHasIsAbsorbedAndItsAnswerMadeUpInTurn() throws {
        var map = StatementMap()
        var server = ServerStatements()
        server.prepared(serverName)
        // Something earlier is still being answered: the made-up ParseComplete waits for it.
        #expect(map.clientSent(query("select 2"), server: &server, allocator: allocator).madeUpAnswers.isEmpty)
        let out = map.clientSent(parse("s1", "select 1"), server: &server, allocator: allocator)
        #expect(!out.forwardsMessage && out.composed == nil && out.madeUpAnswers.isEmpty)
        #expect(map.serverSent(BackendMessageID.commandComplete, error: nil, server: &server).madeUpAfter.isEmpty)
        #expect(map.serverSent(BackendMessageID.readyForQuery, error: nil, server: &server).madeUpAfter == [BackendMessageID.parseComplete])
    }

    @Test func aBindOnAServerLackingTheStatementPreparesItThereAndCutsThatAnswer() throws {
        var map = StatementMap()
        var first = ServerStatements()
        _ = map.clientSent(parse("s1", "select 1"), server: &first, allocator: allocator)
        _ = map.serverSent(BackendMessageID.parseComplete, error: nil, server: &first)
        // The next unit runs on another server.
        map.serverAttached()
        var second = ServerStatements()
        let out = map.clientSent(bind("s1"), server: &second, allocator: allocator)
        #expect(try lines(out) == ["P \(serverName) select 1", "B \(serverName)"])
        #expect(!out.forwardsMessage)
        #expect(map.clientSent(execute, server: &second, allocator: allocator).forwardsMessage)
        #expect(map.clientSent(sync, server: &second, allocator: allocator).forwardsMessage)
        #expect(!map.serverSent(BackendMessageID.parseComplete, error: nil, server: &second).forward, "injected: the client never sent it")
        for id in [BackendMessageID.bindComplete, BackendMessageID.dataRow, BackendMessageID.commandComplete, BackendMessageID.readyForQuery] {
            #expect(map.serverSent(id, error: nil, server: &second).forward)
        }
        #expect(map.isSettled)
    }

    @Test func composedBytesStayIntactWhileTheNextMessageIsComposed() throws {
        var server = ServerStatements()
        var map = preparedS1(on: &server)
        let first = map.clientSent(bind("s1", portal: "p1"), server: &server, allocator: allocator)
        let second = map.clientSent(bind("s1", portal: "p2"), server: &server, allocator: allocator)
        let portal = { (forwarding: StatementMap.Forwarding) throws -> String? in
            var buffer = forwarding.composed ?? ByteBuffer()
            return try buffer.readWireMessage().flatMap(BindMessage.init)?.portal
        }
        #expect(try portal(first) == "p1", "a write still in flight must not see the next message's bytes")
        #expect(try portal(second) == "p2")
    }

    @Test func aRefusedParseIsNotRecordedAsPreparedAndIsSentAgainNextTime() throws {
        var map = StatementMap()
        var server = ServerStatements()
        _ = map.clientSent(parse("s1", "select 1"), server: &server, allocator: allocator)
        _ = map.clientSent(sync, server: &server, allocator: allocator)
        let error = ErrorFields(severity: .error, code: "42P01", message: "relation does not exist")
        #expect(map.serverSent(BackendMessageID.errorResponse, error: error, server: &server).forward)
        #expect(!server.contains(serverName))
        _ = map.serverSent(BackendMessageID.readyForQuery, error: nil, server: &server)
        let again = map.clientSent(bind("s1"), server: &server, allocator: allocator)
        #expect(try lines(again) == ["P \(serverName) select 1", "B \(serverName)"])
    }

    @Test func aParseAfterAnErrorInTheSameBatchIsNotRecorded() throws {
        var map = StatementMap()
        var server = ServerStatements()
        _ = map.clientSent(bind("missing-is-unknown-so-relayed"), server: &server, allocator: allocator)
        _ = map.serverSent(BackendMessageID.errorResponse, error: ErrorFields(severity: .error, code: "26000", message: "no such statement"),
                           server: &server)
        // The server skips everything up to Sync: a Parse sent now never runs there.
        _ = map.clientSent(parse("s1", "select 1"), server: &server, allocator: allocator)
        #expect(!server.contains(serverName))
    }

    @Test func aStalePlanIsClosedAndPreparedAgainOnNextUse() throws {
        var map = StatementMap()
        var server = ServerStatements()
        server.prepared(serverName)
        _ = map.clientSent(parse("s1", "select 1"), server: &server, allocator: allocator)   // absorbed
        _ = map.clientSent(bind("s1"), server: &server, allocator: allocator)
        _ = map.clientSent(execute, server: &server, allocator: allocator)
        _ = map.clientSent(sync, server: &server, allocator: allocator)
        let stale = ErrorFields(severity: .error, code: SQLState.featureNotSupported, message: "cached plan must not change result type")
        let verdict = map.serverSent(BackendMessageID.errorResponse, error: stale, server: &server)
        #expect(verdict.forward)
        #expect(verdict.wentStale == [serverName])
        #expect(!server.contains(serverName))
        _ = map.serverSent(BackendMessageID.readyForQuery, error: nil, server: &server)
        let retry = map.clientSent(bind("s1"), server: &server, allocator: allocator)
        #expect(try lines(retry) == ["C \(serverName)", "P \(serverName) select 1", "B \(serverName)"])
        #expect(!map.serverSent(BackendMessageID.closeComplete, error: nil, server: &server).forward)
        #expect(!map.serverSent(BackendMessageID.parseComplete, error: nil, server: &server).forward)
        #expect(map.serverSent(BackendMessageID.bindComplete, error: nil, server: &server).forward)
    }

    @Test func anotherErrorOnABindDoesNotMarkThePlanStale() {
        var map = StatementMap()
        var server = ServerStatements()
        server.prepared(serverName)
        _ = map.clientSent(parse("s1", "select 1"), server: &server, allocator: allocator)
        _ = map.clientSent(bind("s1"), server: &server, allocator: allocator)
        let verdict = map.serverSent(BackendMessageID.errorResponse,
                                     error: ErrorFields(severity: .error, code: "22P02", message: "invalid input syntax"), server: &server)
        #expect(verdict.wentStale.isEmpty)
        #expect(server.contains(serverName))
    }

    @Test func theServersStatementsStayBoundedByClosingTheOldest() throws {
        var server = ServerStatements()
        for index in 0..<ServerStatements.limit { server.prepared("sy_\(index)") }
        var map = StatementMap()
        let out = map.clientSent(parse("s1", "select 1"), server: &server, allocator: allocator)
        #expect(try lines(out) == ["C sy_0", "P \(serverName) select 1"])
        #expect(server.count == ServerStatements.limit)
        #expect(!server.contains("sy_0"))
        #expect(!map.serverSent(BackendMessageID.closeComplete, error: nil, server: &server).forward)
        #expect(map.serverSent(BackendMessageID.parseComplete, error: nil, server: &server).forward)
    }

    @Test func repeatedFailuresDoNotGrowTheServersRecordWithoutBound() {
        var server = ServerStatements()
        for _ in 0..<(5 * ServerStatements.limit) {
            server.prepared("sy_failing")
            server.prepareFailed("sy_failing")
        }
        #expect(server.queuedCount <= 2 * ServerStatements.limit + 1)
        server.prepared("sy_kept")
        #expect(server.count == 1)
        for index in 0..<(ServerStatements.limit - 1) { server.prepared("sy_\(index)") }
        #expect(server.evictOldestIfFull() == "sy_kept", "the failed names are skipped, the oldest live one goes")
    }

    @Test func closingANamedStatementForgetsOnlyTheClientsName() throws {
        var server = ServerStatements()
        var map = preparedS1(on: &server)
        let out = map.clientSent(target(FrontendMessageID.close, "s1"), server: &server, allocator: allocator)
        #expect(!out.forwardsMessage && out.composed == nil)
        #expect(out.madeUpAnswers == [BackendMessageID.closeComplete])
        #expect(server.contains(serverName), "other clients may share it")
        #expect(!map.hasStatement(named: "s1"))
        // Now unknown to the map: relayed as the client wrote it, and Postgres answers.
        #expect(map.clientSent(bind("s1"), server: &server, allocator: allocator).forwardsMessage)
    }

    @Test func aDescribeOfANamedStatementIsRenamed() throws {
        var server = ServerStatements()
        var map = preparedS1(on: &server)
        let out = map.clientSent(target(FrontendMessageID.describe, "s1"), server: &server, allocator: allocator)
        #expect(try lines(out) == ["D \(serverName)"])
        #expect(map.serverSent(BackendMessageID.parameterDescription, error: nil, server: &server).forward)
        #expect(map.serverSent(BackendMessageID.rowDescription, error: nil, server: &server).forward)
        #expect(map.isSettled)
    }

    @Test func theUnnamedStatementFollowsTheClientToAnotherServer() throws {
        var map = StatementMap()
        var server = ServerStatements()
        let unnamed = parse("", "select 1")
        #expect(map.clientSent(unnamed, server: &server, allocator: allocator).forwardsMessage)
        #expect(map.clientSent(bind(""), server: &server, allocator: allocator).composed == nil, "parsed on this server already")
        #expect(map.serverSent(BackendMessageID.parseComplete, error: nil, server: &server).forward)
        #expect(map.serverSent(BackendMessageID.bindComplete, error: nil, server: &server).forward)
        #expect(map.isSettled)
        map.serverAttached()
        let out = map.clientSent(bind(""), server: &server, allocator: allocator)
        #expect(out.forwardsMessage)
        #expect(out.composed?.readableBytesView.elementsEqual(unnamed.bytes.readableBytesView) == true)
        // Only once per server.
        #expect(map.clientSent(target(FrontendMessageID.describe, ""), server: &server, allocator: allocator).composed == nil)
        #expect(!map.serverSent(BackendMessageID.parseComplete, error: nil, server: &server).forward)
        #expect(map.serverSent(BackendMessageID.bindComplete, error: nil, server: &server).forward)
    }

    @Test func withoutAnUnnamedStatementTheServersOwnIsClosedSoPostgresAnswers26000() throws {
        var map = StatementMap()
        var server = ServerStatements()
        _ = map.clientSent(parse("", "select 1"), server: &server, allocator: allocator)
        _ = map.clientSent(query("select 2"), server: &server, allocator: allocator)   // destroys it
        map.serverAttached()
        let out = map.clientSent(bind(""), server: &server, allocator: allocator)
        #expect(try lines(out) == ["C "])
        #expect(out.forwardsMessage)
    }

    @Test func anUnnamedStatementTooLargeToKeepIsNotCopiedSoAnotherServerAnswers26000() throws {
        var map = StatementMap()
        var server = ServerStatements()
        let large = parse("", "select 1 /* " + String(repeating: "x", count: StatementMap.unnamedCopyLimit) + " */")
        #expect(map.clientSent(large, server: &server, allocator: allocator).forwardsMessage)
        #expect(map.clientSent(bind(""), server: &server, allocator: allocator).composed == nil, "parsed on this server")
        map.serverAttached()
        #expect(try lines(map.clientSent(bind(""), server: &server, allocator: allocator)) == ["C "], "no copy to parse it again")
    }

    @Test func largeNamedStatementCopiesAreChargedUntilTheClientLetsGo() throws {
        let budget = MemoryBudget(limit: 1 << 30)
        var map = StatementMap()
        map.budget = budget
        var server = ServerStatements()
        _ = map.clientSent(parse("small", "select 1"), server: &server, allocator: allocator)
        #expect(budget.used == 0, "small copies are not charged")
        let text = "select 2 /* " + String(repeating: "x", count: 100_000) + " */"
        _ = map.clientSent(parse("large", text), server: &server, allocator: allocator)
        #expect(budget.retained == text.utf8.count + 3 && budget.used == budget.retained)
        #expect(!budget.couldEverHold(budget.limit - budget.retained + 1), "what is retained is not waited for")
        _ = map.clientSent(target(FrontendMessageID.close, "large"), server: &server, allocator: allocator)
        #expect(budget.used == 0 && budget.retained == 0)
    }

    @Test func aLargeUnnamedCopyIsChargedWhileKeptAndNotKeptPastHalfTheBudget() throws {
        let budget = MemoryBudget(limit: 1 << 20)
        var map = StatementMap()
        map.budget = budget
        var server = ServerStatements()
        let text = "select 3 /* " + String(repeating: "x", count: 200_000) + " */"
        _ = map.clientSent(parse("", text), server: &server, allocator: allocator)
        let copied = budget.retained
        #expect(copied > 200_000 && budget.used == copied, "charged while kept")
        // A Query destroys the unnamed statement: the charge goes with the copy.
        _ = map.clientSent(query("select 1"), server: &server, allocator: allocator)
        #expect(budget.used == 0)

        // With the budget's retained half taken, the copy is not kept: another server gets Postgres' 26000.
        let others = budget.claimRetained((1 << 19) - 100_000)
        _ = map.clientSent(parse("", text), server: &server, allocator: allocator)
        #expect(budget.retained == others.bytes, "not charged, not kept")
        map.serverAttached()
        #expect(try lines(map.clientSent(bind(""), server: &server, allocator: allocator)) == ["C "], "no copy to parse it again")
    }

    @Test func aStreamedQueryDestroysTheUnnamedStatementToo() throws {
        var map = StatementMap()
        var server = ServerStatements()
        _ = map.clientSent(parse("", "select 1"), server: &server, allocator: allocator)
        _ = map.clientStartedStreaming(FrontendMessageID.query)
        map.serverAttached()
        #expect(try lines(map.clientSent(bind(""), server: &server, allocator: allocator)) == ["C "])
    }

    @Test func discardAllForgetsEveryStatementOnBothSides() throws {
        var server = ServerStatements()
        var map = preparedS1(on: &server)
        _ = map.clientSent(parse("", "select 2"), server: &server, allocator: allocator)
        map.serverDroppedAllStatements(&server)
        #expect(server.count == 0)
        #expect(!map.hasStatement(named: "s1"))
        // The unnamed one went too: the server's own is closed, so Postgres answers 26000.
        #expect(try lines(map.clientSent(bind(""), server: &server, allocator: allocator)) == ["C "])
    }

    @Test func anAbandonedServerLeavesNothingOwed() throws {
        var map = StatementMap()
        var server = ServerStatements()
        _ = map.clientSent(parse("s1", "select 1"), server: &server, allocator: allocator)
        #expect(!map.isSettled)
        _ = map.clientSent(parse("", "select 2"), server: &server, allocator: allocator)
        map.serverAbandoned()
        #expect(map.isSettled)
        #expect(map.hasStatement(named: "s1"), "the client's statements outlive the server")
        #expect(try lines(map.clientSent(bind(""), server: &server, allocator: allocator)) == ["P  select 2"],
                "the unit is re-run elsewhere: the unnamed statement is parsed again")
    }

    @Test func theWritePositionQueryDropsTheUnnamedStatementOnItsServer() throws {
        var map = StatementMap()
        var server = ServerStatements()
        _ = map.clientSent(parse("", "insert into t values (1)"), server: &server, allocator: allocator)
        #expect(map.clientSent(bind(""), server: &server, allocator: allocator).composed == nil)
        // The next unit goes right behind Switchyard's own simple Query on the same connection.
        map.serverRanItsOwnQuery()
        #expect(try lines(map.clientSent(bind(""), server: &server, allocator: allocator)) == ["P  insert into t values (1)"])
    }

    @Test func nothingIsEvictedOrUnmarkedByAParseTheServerWillSkip() throws {
        var server = ServerStatements()
        for index in 0..<ServerStatements.limit { server.prepared("sy_\(index)") }
        var map = StatementMap()
        _ = map.clientSent(bind("unknown"), server: &server, allocator: allocator)
        _ = map.serverSent(BackendMessageID.errorResponse, error: ErrorFields(severity: .error, code: "26000", message: "no such statement"),
                           server: &server)
        // Skipped up to Sync: a Close sent now would not run, so the record must not drop sy_0.
        _ = map.clientSent(parse("s1", "select 1"), server: &server, allocator: allocator)
        #expect(server.contains("sy_0"))
        #expect(server.count == ServerStatements.limit)
    }

    @Test func ownSyncAnswerIsCutAndDeallocateForgetsTheClientsName() {
        var map = StatementMap()
        var server = ServerStatements()
        _ = map.clientSent(parse("s1", "select 1"), server: &server, allocator: allocator)
        #expect(map.ownSyncSent().isEmpty)
        #expect(map.serverSent(BackendMessageID.parseComplete, error: nil, server: &server).forward)
        #expect(!map.serverSent(BackendMessageID.readyForQuery, error: nil, server: &server).forward)
        map.deallocated("s1")
        #expect(!map.hasStatement(named: "s1"))
        #expect(server.contains(serverName), "DEALLOCATE of a client name leaves the shared server statement")
    }
}
