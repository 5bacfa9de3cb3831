import NIOCore
import PostgresWire
import Testing
@testable import SwitchyardProxy

/// Frontend messages for the admin console, built as a client would send them.
enum AdminFrames {
    static func frame(_ id: UInt8, _ write: (inout ByteBuffer) -> Void = { _ in }) -> Frame {
        var body = ByteBuffer()
        write(&body)
        return Frame(id: id, body: body)
    }

    static func query(_ sql: String) -> Frame {
        frame(FrontendMessageID.query) { $0.writeNullTerminatedString(sql) }
    }

    static func parse(_ sql: String, name statement: String = "", parameterTypes: [Int32] = []) -> Frame {
        frame(FrontendMessageID.parse) { body in
            body.writeNullTerminatedString(statement)
            body.writeNullTerminatedString(sql)
            body.writeInteger(Int16(parameterTypes.count))
            for type in parameterTypes { body.writeInteger(type) }
        }
    }

    static func bind(portal: String = "", statement: String = "", parameterFormats: [Int16] = [], parameters: [[UInt8]?] = [],
                     resultFormats: [Int16] = []) -> Frame {
        frame(FrontendMessageID.bind) { body in
            body.writeNullTerminatedString(portal)
            body.writeNullTerminatedString(statement)
            body.writeInteger(Int16(parameterFormats.count))
            for format in parameterFormats { body.writeInteger(format) }
            body.writeInteger(Int16(parameters.count))
            for parameter in parameters {
                if let parameter {
                    body.writeInteger(Int32(parameter.count))
                    body.writeBytes(parameter)
                } else {
                    body.writeInteger(Int32(-1))
                }
            }
            body.writeInteger(Int16(resultFormats.count))
            for format in resultFormats { body.writeInteger(format) }
        }
    }

    static func describeStatement(_ name: String = "") -> Frame {
        frame(FrontendMessageID.describe) { $0.writeInteger(UInt8(ascii: "S")); $0.writeNullTerminatedString(name) }
    }

    static func describePortal(_ name: String = "") -> Frame {
        frame(FrontendMessageID.describe) { $0.writeInteger(UInt8(ascii: "P")); $0.writeNullTerminatedString(name) }
    }

    static func execute(_ portal: String = "", maxRows: Int32 = 0) -> Frame {
        frame(FrontendMessageID.execute) { $0.writeNullTerminatedString(portal); $0.writeInteger(maxRows) }
    }

    static func closeStatement(_ name: String) -> Frame {
        frame(FrontendMessageID.close) { $0.writeInteger(UInt8(ascii: "S")); $0.writeNullTerminatedString(name) }
    }

    static func closePortal(_ name: String) -> Frame {
        frame(FrontendMessageID.close) { $0.writeInteger(UInt8(ascii: "P")); $0.writeNullTerminatedString(name) }
    }

    static let sync = frame(FrontendMessageID.sync)
    static let flush = frame(FrontendMessageID.flush)
    static let terminate = frame(FrontendMessageID.terminate)
}

@Suite struct AdminResponderTests {
    typealias Machine = AdminResponder
    typealias F = AdminFrames

    let versionRows: [[ColumnValue]] = [[.text("switchyard 1.2.3")]]
    let helpRows: [[ColumnValue]] = [[.text("SHOW HELP"), .text("this list")], [.text("RELOAD"), .text("re-read")]]
    let serverRows: [[ColumnValue]] = [[
        .text("main"), .text("primary"), .text("db"), .integer(5432), .text("up"), .integer(0),
        .double(0), .integer(1), .integer(2), .integer(1), .null,
    ]]

    func syntaxError(_ text: String) -> ErrorFields {
        do {
            _ = try AdminCommand.parse(text)
            Issue.record("\(text) parsed")
            return ErrorFields(severity: .error, code: "00000", message: "")
        } catch {
            return error
        }
    }

    /// The error replies among `actions`.
    func errors(in actions: [Machine.Action]) -> [ErrorFields] {
        actions.compactMap { action -> ErrorFields? in
            if case .reply(.error(let error)) = action { return error }
            return nil
        }
    }

    // MARK: Simple protocol

    @Test func simpleQueryExecutesThenAnswersWithRowsAndReadyForQuery() {
        var machine = Machine()
        let started = machine.messageReceived(F.query("SHOW VERSION"))
        #expect(started == [.execute(.showVersion)])
        let finished = machine.commandFinished(.success(AdminResult(rows: versionRows)))
        #expect(finished == [
            .reply(.rowDescription(.showVersion, formats: [])),
            .reply(.dataRows(versionRows, formats: [])),
            .reply(.commandComplete("SHOW")),
            .reply(.readyForQuery),
        ])
        // Nothing runs any more: a stray report is ignored.
        let stray = machine.commandFinished(.success(AdminResult(rows: versionRows)))
        #expect(stray == [])
    }

    @Test func simpleQueryWithTrailingSemicolonAndLowerCase() {
        var machine = Machine()
        let started = machine.messageReceived(F.query("  pause r1 ;  "))
        #expect(started == [.execute(.pause(server: "r1"))])
        let finished = machine.commandFinished(.success(AdminResult(messages: ["paused r1"])))
        #expect(finished == [
            .reply(.rowDescription(.pause(server: "r1"), formats: [])),
            .reply(.dataRows([[.text("paused r1")]], formats: [])),
            .reply(.commandComplete("PAUSE")),
            .reply(.readyForQuery),
        ])
    }

    @Test func multiCommandQueryRunsEachThenOneReadyForQuery() {
        var machine = Machine()
        let started = machine.messageReceived(F.query("SHOW VERSION; SHOW HELP"))
        #expect(started == [.execute(.showVersion)])
        let first = machine.commandFinished(.success(AdminResult(rows: versionRows)))
        #expect(first == [
            .reply(.rowDescription(.showVersion, formats: [])),
            .reply(.dataRows(versionRows, formats: [])),
            .reply(.commandComplete("SHOW")),
            .execute(.showHelp),
        ])
        let second = machine.commandFinished(.success(AdminResult(rows: helpRows)))
        #expect(second == [
            .reply(.rowDescription(.showHelp, formats: [])),
            .reply(.dataRows(helpRows, formats: [])),
            .reply(.commandComplete("SHOW")),
            .reply(.readyForQuery),
        ])
    }

    @Test func multiCommandQueryWithABadCommandRunsNothing() {
        var machine = Machine()
        let actions = machine.messageReceived(F.query("SHOW VERSION; FROBNICATE; RELOAD"))
        #expect(actions == [.reply(.error(syntaxError("FROBNICATE"))), .reply(.readyForQuery)])
        // The console is idle again.
        let next = machine.messageReceived(F.query("RELOAD"))
        #expect(next == [.execute(.reload)])
    }

    @Test(arguments: ["", "   ", ";", " ; ;; ", "\n\t"])
    func emptyQueryAnswersEmptyQueryResponse(sql: String) {
        var machine = Machine()
        let actions = machine.messageReceived(F.query(sql))
        #expect(actions == [.reply(.emptyQuery), .reply(.readyForQuery)])
    }

    @Test func unparsableQueryAnswersErrorAndReadyForQuery() throws {
        var machine = Machine()
        let actions = machine.messageReceived(F.query("SHOW NOTHING"))
        #expect(actions == [.reply(.error(syntaxError("SHOW NOTHING"))), .reply(.readyForQuery)])
        let error = try #require(errors(in: actions).first)
        #expect(error.code == "42601")
        #expect(error.detail?.contains("SHOW SERVERS") == true)
    }

    @Test func failedSimpleCommandAnswersErrorAndReadyForQuery() {
        var machine = Machine()
        _ = machine.messageReceived(F.query("KILL nosuch"))
        let failure = ErrorFields(severity: .error, code: SQLState.undefinedObject, message: "no server named \"nosuch\"")
        let actions = machine.commandFinished(.failure(failure))
        #expect(actions == [.reply(.error(failure)), .reply(.readyForQuery)])
    }

    @Test func failureInAMultiCommandQueryDropsTheRest() {
        var machine = Machine()
        _ = machine.messageReceived(F.query("PAUSE; SHOW POOLS"))
        let failure = ErrorFields(severity: .error, code: SQLState.objectNotInPrerequisiteState, message: "already paused")
        let actions = machine.commandFinished(.failure(failure))
        #expect(actions == [.reply(.error(failure)), .reply(.readyForQuery)])
        let stray = machine.commandFinished(.success(AdminResult(rows: [])))
        #expect(stray == [])
    }

    @Test func messagesArrivingWhileACommandRunsWaitTheirTurn() {
        var machine = Machine()
        let started = machine.messageReceived(F.query("SHOW VERSION"))
        #expect(started == [.execute(.showVersion)])
        let queuedQuery = machine.messageReceived(F.query("SHOW HELP"))
        let queuedTerminate = machine.messageReceived(F.terminate)
        #expect(queuedQuery == [])
        #expect(queuedTerminate == [])
        let first = machine.commandFinished(.success(AdminResult(rows: versionRows)))
        #expect(first == [
            .reply(.rowDescription(.showVersion, formats: [])),
            .reply(.dataRows(versionRows, formats: [])),
            .reply(.commandComplete("SHOW")),
            .reply(.readyForQuery),
            .execute(.showHelp),
        ])
        // The Terminate stays queued behind SHOW HELP.
        let second = machine.commandFinished(.success(AdminResult(rows: helpRows)))
        #expect(second == [
            .reply(.rowDescription(.showHelp, formats: [])),
            .reply(.dataRows(helpRows, formats: [])),
            .reply(.commandComplete("SHOW")),
            .reply(.readyForQuery),
            .close,
        ])
    }

    @Test func floodingTheQueueIsCutOff() throws {
        var machine = Machine()
        _ = machine.messageReceived(F.query("SHOW STATS"))
        for _ in 0..<Machine.queueLimit {
            let queued = machine.messageReceived(F.flush)
            #expect(queued == [])
        }
        let overflow = machine.messageReceived(F.flush)
        #expect(overflow.count == 2)
        #expect(overflow.last == .close)
        let error = try #require(errors(in: overflow).first)
        #expect(error.code == SQLState.protocolViolation)
        #expect(error.isFatal)
    }

    @Test func terminateCloses() {
        var machine = Machine()
        let actions = machine.messageReceived(F.terminate)
        #expect(actions == [.close])
    }

    @Test func flushAloneAnswersNothing() {
        var machine = Machine()
        let actions = machine.messageReceived(F.flush)
        #expect(actions == [])
    }

    @Test func malformedQueryIsFatal() throws {
        var machine = Machine()
        // No NUL terminator.
        let actions = machine.messageReceived(F.frame(FrontendMessageID.query) { $0.writeString("SHOW HELP") })
        #expect(actions.count == 2)
        #expect(actions.last == .close)
        let error = try #require(errors(in: actions).first)
        #expect(error.code == SQLState.protocolViolation)
        #expect(error.severity == "FATAL")
        #expect(error.message == "malformed Query message")
    }

    @Test func unsupportedMessageTypeIsRefusedWith0A000() throws {
        var machine = Machine()
        let actions = machine.messageReceived(F.frame(FrontendMessageID.functionCall) { $0.writeInteger(Int32(1)) })
        let error = try #require(errors(in: actions).first)
        #expect(actions.count == 1)
        #expect(error.code == SQLState.featureNotSupported)
        #expect(error.severity == "ERROR")
        // ...and the batch is skipped until Sync.
        let skipped = machine.messageReceived(F.parse("SHOW HELP"))
        #expect(skipped == [])
        let sync = machine.messageReceived(F.sync)
        #expect(sync == [.reply(.readyForQuery)])
    }

    // MARK: Extended protocol

    @Test func extendedFlowCarriesResultFormats() {
        var machine = Machine()
        let parse = machine.messageReceived(F.parse("SHOW SERVERS"))
        #expect(parse == [.reply(.parseComplete)])
        let bind = machine.messageReceived(F.bind(resultFormats: [1]))
        #expect(bind == [.reply(.bindComplete)])
        let describe = machine.messageReceived(F.describePortal())
        #expect(describe == [.reply(.rowDescription(.showServers, formats: [1]))])
        let execute = machine.messageReceived(F.execute())
        #expect(execute == [.execute(.showServers)])
        let sync = machine.messageReceived(F.sync)
        #expect(sync == [], "Sync waits behind the running command")
        let finished = machine.commandFinished(.success(AdminResult(rows: serverRows)))
        #expect(finished == [
            .reply(.dataRows(serverRows, formats: [1])),
            .reply(.commandComplete("SHOW")),
            .reply(.readyForQuery),
        ])
    }

    @Test func extendedFlowWithPerColumnFormatsAndNamedStatementAndPortal() {
        var machine = Machine()
        let formats: [Int16] = [0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 0]
        let parse = machine.messageReceived(F.parse("show servers;", name: "servers"))
        #expect(parse == [.reply(.parseComplete)])
        let describeStatement = machine.messageReceived(F.describeStatement("servers"))
        #expect(describeStatement == [.reply(.parameterDescription), .reply(.rowDescription(.showServers, formats: []))])
        let bind = machine.messageReceived(F.bind(portal: "p1", statement: "servers", resultFormats: formats))
        #expect(bind == [.reply(.bindComplete)])
        let describePortal = machine.messageReceived(F.describePortal("p1"))
        #expect(describePortal == [.reply(.rowDescription(.showServers, formats: formats))])
        let execute = machine.messageReceived(F.execute("p1"))
        #expect(execute == [.execute(.showServers)])
        let finished = machine.commandFinished(.success(AdminResult(rows: serverRows)))
        #expect(finished == [.reply(.dataRows(serverRows, formats: formats)), .reply(.commandComplete("SHOW"))],
                "no RowDescription and no ReadyForQuery before Sync in the extended protocol")
        let sync = machine.messageReceived(F.sync)
        #expect(sync == [.reply(.readyForQuery)])
        // The statement survives Sync and can be bound again, in text this time.
        let rebind = machine.messageReceived(F.bind(portal: "p2", statement: "servers"))
        #expect(rebind == [.reply(.bindComplete)])
        let describeAgain = machine.messageReceived(F.describePortal("p2"))
        #expect(describeAgain == [.reply(.rowDescription(.showServers, formats: []))])
    }

    @Test func pipelinedBatchIsQueuedAndFinishedAfterTheCommand() {
        var machine = Machine()
        var actions: [Machine.Action] = []
        for frame in [F.parse("RELOAD"), F.bind(), F.execute(), F.parse("SHOW VERSION"), F.bind(resultFormats: [0]),
                      F.describePortal(), F.execute(), F.sync] {
            actions += machine.messageReceived(frame)
        }
        #expect(actions == [.reply(.parseComplete), .reply(.bindComplete), .execute(.reload)])
        let reloaded = machine.commandFinished(.success(AdminResult(messages: ["reloaded"])))
        #expect(reloaded == [
            .reply(.dataRows([[.text("reloaded")]], formats: [])),
            .reply(.commandComplete("RELOAD")),
            .reply(.parseComplete),
            .reply(.bindComplete),
            .reply(.rowDescription(.showVersion, formats: [0])),
            .execute(.showVersion),
        ])
        let version = machine.commandFinished(.success(AdminResult(rows: versionRows)))
        #expect(version == [
            .reply(.dataRows(versionRows, formats: [0])),
            .reply(.commandComplete("SHOW")),
            .reply(.readyForQuery),
        ])
    }

    @Test func emptyStatementDescribesAsNoDataAndExecutesAsEmptyQuery() {
        var machine = Machine()
        let parse = machine.messageReceived(F.parse(" ; "))
        #expect(parse == [.reply(.parseComplete)])
        let describeStatement = machine.messageReceived(F.describeStatement())
        #expect(describeStatement == [.reply(.parameterDescription), .reply(.noData)])
        let bind = machine.messageReceived(F.bind())
        #expect(bind == [.reply(.bindComplete)])
        let describePortal = machine.messageReceived(F.describePortal())
        #expect(describePortal == [.reply(.noData)])
        let execute = machine.messageReceived(F.execute())
        #expect(execute == [.reply(.emptyQuery)])
        let sync = machine.messageReceived(F.sync)
        #expect(sync == [.reply(.readyForQuery)])
    }

    @Test func errorInABatchSkipsEverythingUntilSync() throws {
        var machine = Machine()
        let parse = machine.messageReceived(F.parse("SHOW WHATEVER"))
        #expect(parse == [.reply(.error(syntaxError("SHOW WHATEVER")))])
        for frame in [F.bind(), F.describePortal(), F.execute(), F.parse("SHOW HELP", name: "s2"), F.closeStatement("s2"), F.flush] {
            let skipped = machine.messageReceived(frame)
            #expect(skipped == [])
        }
        let sync = machine.messageReceived(F.sync)
        #expect(sync == [.reply(.readyForQuery)])
        // Skipped messages really were skipped: s2 was never prepared.
        let bind = machine.messageReceived(F.bind(statement: "s2"))
        let error = try #require(errors(in: bind).first)
        #expect(error.code == "26000")
        let sync2 = machine.messageReceived(F.sync)
        #expect(sync2 == [.reply(.readyForQuery)])
        // After Sync the console works again.
        let parse2 = machine.messageReceived(F.parse("SHOW HELP"))
        #expect(parse2 == [.reply(.parseComplete)])
    }

    @Test func failedExtendedCommandSkipsUntilSync() {
        var machine = Machine()
        _ = machine.messageReceived(F.parse("KILL nosuch"))
        _ = machine.messageReceived(F.bind())
        let execute = machine.messageReceived(F.execute())
        #expect(execute == [.execute(.kill(server: "nosuch"))])
        let failure = ErrorFields(severity: .error, code: SQLState.undefinedObject, message: "no server named \"nosuch\"")
        let finished = machine.commandFinished(.failure(failure))
        #expect(finished == [.reply(.error(failure))], "no ReadyForQuery before Sync")
        let skippedParse = machine.messageReceived(F.parse("SHOW HELP"))
        let skippedExecute = machine.messageReceived(F.execute())
        #expect(skippedParse == [])
        #expect(skippedExecute == [])
        let sync = machine.messageReceived(F.sync)
        #expect(sync == [.reply(.readyForQuery)])
    }

    @Test func failedExtendedCommandSkipsQueuedMessagesUntilTheQueuedSync() {
        var machine = Machine()
        _ = machine.messageReceived(F.parse("KILL nosuch"))
        _ = machine.messageReceived(F.bind())
        _ = machine.messageReceived(F.execute())
        // Pipelined behind the running command.
        for frame in [F.parse("SHOW HELP"), F.bind(), F.execute(), F.sync] {
            let queued = machine.messageReceived(frame)
            #expect(queued == [])
        }
        let failure = ErrorFields(severity: .error, code: SQLState.undefinedObject, message: "no server named \"nosuch\"")
        let finished = machine.commandFinished(.failure(failure))
        #expect(finished == [.reply(.error(failure)), .reply(.readyForQuery)])
    }

    @Test func extendedParseOfANewlineTerminatedCommand() {
        var machine = Machine()
        // Only the \n variant: see AdminCommandTests.crlfLineEndingsSeparateWords for "\r\n".
        let parse = machine.messageReceived(F.parse("SHOW SERVERS\n"))
        #expect(parse == [.reply(.parseComplete)])
    }

    /// Postgres discards a Query that arrives while it skips to Sync after an extended-protocol error
    /// (postgres.c: `if (ignore_till_sync && firstchar != EOF) continue;`, and only Sync or Terminate clear it).
    @Test
    func queryWhileSkippingUntilSyncIsDiscarded() {
        var machine = Machine()
        _ = machine.messageReceived(F.parse("BOGUS"))
        let query = machine.messageReceived(F.query("KILL primary"))
        #expect(query == [])
        let sync = machine.messageReceived(F.sync)
        #expect(sync == [.reply(.readyForQuery)])
    }

    @Test func bindWithParametersIsRefused() throws {
        var machine = Machine()
        _ = machine.messageReceived(F.parse("SHOW SERVERS"))
        let bind = machine.messageReceived(F.bind(parameterFormats: [0], parameters: [Array("x".utf8)]))
        #expect(bind.count == 1)
        let error = try #require(errors(in: bind).first)
        #expect(error.code == SQLState.protocolViolation)
        #expect(error.severity == "ERROR")
        #expect(error.message == "bind message supplies 1 parameters, but prepared statement \"\" requires 0")
        let execute = machine.messageReceived(F.execute())
        #expect(execute == [], "skipped until Sync")
        let sync = machine.messageReceived(F.sync)
        #expect(sync == [.reply(.readyForQuery)])
        // A NULL parameter counts, too.
        let nullBind = machine.messageReceived(F.bind(parameters: [nil, nil]))
        #expect(errors(in: nullBind).first?.message == "bind message supplies 2 parameters, but prepared statement \"\" requires 0")
    }

    /// The answer is one ErrorResponse and nothing else; returns it.
    func loneError(_ actions: [Machine.Action], sourceLocation: SourceLocation = #_sourceLocation) throws -> ErrorFields {
        #expect(actions.count == 1, sourceLocation: sourceLocation)
        return try #require(errors(in: actions).first, sourceLocation: sourceLocation)
    }

    @Test func unknownStatementIs26000() throws {
        var machine = Machine()
        let bindError = try loneError(machine.messageReceived(F.bind(statement: "nope")))
        #expect(bindError.code == "26000")
        #expect(bindError.message == "prepared statement \"nope\" does not exist")
        _ = machine.messageReceived(F.sync)
        #expect(try loneError(machine.messageReceived(F.describeStatement("nope"))).code == "26000")
    }

    @Test func unknownPortalIs34000() throws {
        var machine = Machine()
        let describeError = try loneError(machine.messageReceived(F.describePortal("nope")))
        #expect(describeError.code == "34000")
        #expect(describeError.message == "portal \"nope\" does not exist")
        _ = machine.messageReceived(F.sync)
        #expect(try loneError(machine.messageReceived(F.execute("nope"))).code == "34000")
    }

    @Test func closedStatementsAndPortalsAreGone() throws {
        var machine = Machine()
        _ = machine.messageReceived(F.parse("SHOW CLIENTS", name: "s"))
        _ = machine.messageReceived(F.bind(portal: "p", statement: "s"))
        let closePortal = machine.messageReceived(F.closePortal("p"))
        #expect(closePortal == [.reply(.closeComplete)])
        let execute = machine.messageReceived(F.execute("p"))
        #expect(try #require(errors(in: execute).first).code == "34000")
        _ = machine.messageReceived(F.sync)

        let closeStatement = machine.messageReceived(F.closeStatement("s"))
        #expect(closeStatement == [.reply(.closeComplete)])
        let bind = machine.messageReceived(F.bind(statement: "s"))
        #expect(try #require(errors(in: bind).first).code == "26000")
        _ = machine.messageReceived(F.sync)

        // Closing what does not exist is not an error.
        let closeMissing = machine.messageReceived(F.closeStatement("never"))
        #expect(closeMissing == [.reply(.closeComplete)])
    }

    @Test func malformedBindIsFatal() throws {
        var machine = Machine()
        _ = machine.messageReceived(F.parse("SHOW HELP"))
        // Announces two result formats but carries one.
        let truncated = F.frame(FrontendMessageID.bind) { body in
            body.writeNullTerminatedString("")
            body.writeNullTerminatedString("")
            body.writeInteger(Int16(0))
            body.writeInteger(Int16(0))
            body.writeInteger(Int16(2))
            body.writeInteger(Int16(1))
        }
        let actions = machine.messageReceived(truncated)
        #expect(actions.last == .close)
        let error = try #require(errors(in: actions).first)
        #expect(error.isFatal)
        #expect(error.message == "malformed Bind message")
    }

    // MARK: Encoding

    @Test func repliesEncodeAsBackendMessages() throws {
        func encoded(_ reply: Machine.Reply) throws -> [Frame] {
            var buffer = ByteBuffer()
            reply.encode(into: &buffer)
            var decoder = FrameDecoder(maximumLength: 1 << 16)
            var frames: [Frame] = []
            while let frame = try decoder.decode(buffer: &buffer) { frames.append(frame) }
            #expect(buffer.readableBytes == 0)
            return frames
        }
        #expect(try encoded(.parseComplete).map(\.id) == [BackendMessageID.parseComplete])
        #expect(try encoded(.bindComplete).map(\.id) == [BackendMessageID.bindComplete])
        #expect(try encoded(.closeComplete).map(\.id) == [BackendMessageID.closeComplete])
        #expect(try encoded(.noData).map(\.id) == [BackendMessageID.noData])
        #expect(try encoded(.emptyQuery).map(\.id) == [BackendMessageID.emptyQueryResponse])
        let ready = try encoded(.readyForQuery)
        #expect(ready == [Frame(id: BackendMessageID.readyForQuery, body: ByteBuffer(bytes: [UInt8(ascii: "I")]))])
        let parameters = try encoded(.parameterDescription)
        #expect(parameters == [Frame(id: BackendMessageID.parameterDescription, body: ByteBuffer(bytes: [0, 0]))])
        let complete = try encoded(.commandComplete("PAUSE"))
        #expect(complete == [Frame(id: BackendMessageID.commandComplete, body: ByteBuffer(bytes: Array("PAUSE\0".utf8)))])

        let description = try #require(try encoded(.rowDescription(.showConfig, formats: [])).first)
        #expect(description.id == BackendMessageID.rowDescription)
        #expect(description.body.getInteger(at: description.body.readerIndex, as: Int16.self) == 3)

        let rows = try encoded(.dataRows([[.text("a")], [.text("b")], [.null]], formats: []))
        #expect(rows.map(\.id) == Array(repeating: BackendMessageID.dataRow, count: 3))

        let failure = ErrorFields(severity: .error, code: "26000", message: "gone")
        let error = try #require(try encoded(.error(failure)).first)
        #expect(error.id == BackendMessageID.errorResponse)
        #expect(ErrorFields(decoding: error.body) == failure)
    }
}
