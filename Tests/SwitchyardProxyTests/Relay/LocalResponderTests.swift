import NIOCore
import PostgresWire
import Testing
@testable import SwitchyardProxy

/// The local responder with the relay's own statements (``LocalCommand``), event by event: the
/// message sequences Postgres would send for a SET (no rows) and a SHOW (one row), in both protocols.
/// (``AdminResponderTests`` drive the same machine with admin commands.)
@Suite struct LocalResponderTests {
    typealias Machine = LocalResponder<LocalCommand>
    typealias F = AdminFrames
    let set = LocalCommand.route(.set(.primary))
    let show = LocalCommand.route(.show)

    @Test func simpleSetAnswersTagAndReadyWithoutRowDescription() {
        var machine = Machine()
        #expect(machine.received(.query(.success([set]))) == [.execute(set)])
        #expect(machine.statementFinished(.success([])) == [.reply(.dataRows([], formats: [])), .reply(.commandComplete("SET")), .reply(.readyForQuery)])
    }

    @Test func simpleShowAnswersRowDescriptionRowAndTag() {
        var machine = Machine()
        #expect(machine.received(.query(.success([show]))) == [.execute(show)])
        #expect(machine.statementFinished(.success([[.text("auto")]])) == [
            .reply(.rowDescription(show, formats: [])), .reply(.dataRows([[.text("auto")]], formats: [])),
            .reply(.commandComplete("SHOW")), .reply(.readyForQuery),
        ])
    }

    @Test func extendedSetDescribesNoDataAndExecutesWithoutRows() {
        var machine = Machine()
        #expect(machine.received(.parse(name: "s", .success(set))) == [.reply(.parseComplete)])
        #expect(machine.received(.message(F.describeStatement("s"))) == [.reply(.parameterDescription), .reply(.noData)])
        #expect(machine.received(.message(F.bind(statement: "s"))) == [.reply(.bindComplete)])
        #expect(machine.received(.message(F.describePortal())) == [.reply(.noData)])
        #expect(machine.received(.message(F.execute())) == [.execute(set)])
        #expect(machine.statementFinished(.success([])) == [.reply(.dataRows([], formats: [])), .reply(.commandComplete("SET"))])
        #expect(machine.received(.message(F.sync)) == [.reply(.readyForQuery)])
        #expect(machine.preparedStatement(named: "s") == set, "a named statement outlives its Sync")
    }

    @Test func failedExecuteSkipsToSync() {
        var machine = Machine()
        let bad = LocalCommand.route(.invalidValue(parameter: "switchyard.route", value: "x", hint: "auto, primary or replica"))
        _ = machine.received(.parse(name: "", .success(bad)))
        _ = machine.received(.message(F.bind()))
        #expect(machine.received(.message(F.execute())) == [.execute(bad)])
        let error = ErrorFields(severity: .error, code: SQLState.invalidParameterValue, message: "invalid value")
        #expect(machine.statementFinished(.failure(error)) == [.reply(.error(error))])
        #expect(machine.isSkippingUntilSync)
        #expect(machine.received(.message(F.describePortal())) == [], "skipped until Sync")
        #expect(machine.received(.message(F.sync)) == [.reply(.readyForQuery)])
        #expect(!machine.isSkippingUntilSync)
    }

    @Test func bindWithParametersGetsPostgresWords() throws {
        var machine = Machine()
        _ = machine.received(.parse(name: "s", .success(show)))
        let actions = machine.received(.message(F.bind(statement: "s", parameters: [Array("1".utf8)])))
        guard case .reply(.error(let error))? = actions.first else { Issue.record("\(actions)"); return }
        #expect(error.code == SQLState.protocolViolation)
        #expect(error.message == "bind message supplies 1 parameters, but prepared statement \"s\" requires 0")
    }

    @Test func simpleQueryDropsTheUnnamedStatementAsPostgresDoes() {
        var machine = Machine()
        _ = machine.received(.parse(name: "", .success(show)))
        _ = machine.received(.parse(name: "kept", .success(show)))
        #expect(machine.hasStatement(named: ""))
        _ = machine.received(.query(.success([set])))
        _ = machine.statementFinished(.success([]))
        #expect(!machine.hasStatement(named: ""))
        #expect(machine.hasStatement(named: "kept"))
    }

    @Test func forgottenStatementsAreNoLongerKnown() {
        var machine = Machine()
        _ = machine.received(.parse(name: "a", .success(set)))
        _ = machine.received(.parse(name: "b", .success(show)))
        _ = machine.received(.message(F.bind(portal: "p", statement: "b")))
        #expect(machine.knows(.portal, named: "p"))
        #expect(!machine.knows(.portal, named: "q"))
        machine.forgetStatement(named: "a")
        #expect(!machine.hasStatement(named: "a"))
        #expect(machine.hasStatements)
        machine.forgetStatement(named: nil)
        #expect(!machine.hasStatements)
    }

    @Test func messagesWaitBehindARunningStatement() {
        var machine = Machine()
        #expect(machine.received(.query(.success([show]))) == [.execute(show)])
        #expect(machine.received(.query(.success([set]))) == [], "queued")
        #expect(machine.statementFinished(.success([[.text("auto")]])) == [
            .reply(.rowDescription(show, formats: [])), .reply(.dataRows([[.text("auto")]], formats: [])),
            .reply(.commandComplete("SHOW")), .reply(.readyForQuery), .execute(set),
        ], "the queued Query runs only after the first is wholly answered")
    }

    @Test func extendedShowDescribesItsRowThenExecutesWithoutRowDescription() {
        var machine = Machine()
        _ = machine.received(.parse(name: "", .success(show)))
        #expect(machine.received(.message(F.describeStatement())) == [.reply(.parameterDescription), .reply(.rowDescription(show, formats: []))])
        _ = machine.received(.message(F.bind()))
        #expect(machine.received(.message(F.execute())) == [.execute(show)])
        #expect(machine.statementFinished(.success([[.text("replica")]])) == [
            .reply(.dataRows([[.text("replica")]], formats: [])), .reply(.commandComplete("SHOW")),
        ], "Execute sends no RowDescription")
    }

    @Test func unknownStatementIs26000AndSkipsEvenASimpleQuery() {
        var machine = Machine()
        let actions = machine.received(.message(F.bind(statement: "nope")))
        guard case .reply(.error(let error))? = actions.first else { Issue.record("\(actions)"); return }
        #expect(error.code == "26000")
        #expect(machine.received(.query(.success([show]))) == [], "a Query before the Sync is discarded")
        #expect(machine.received(.malformed("Query")) == [], "skipped unread, as Postgres does, not a reason to close")
        #expect(machine.received(.message(F.sync)) == [.reply(.readyForQuery)])
    }

    @Test func everySimpleQueryDropsTheUnnamedStatementAndPortal() {
        var machine = Machine()
        _ = machine.received(.parse(name: "", .success(show)))
        _ = machine.received(.message(F.bind()))
        machine.transactionBlockOpen = true
        _ = machine.received(.message(F.sync))
        #expect(machine.knows(.portal, named: ""), "inside a block the portal outlives Sync")
        let error = ErrorFields(severity: .error, code: SQLState.syntaxError, message: "syntax error")
        _ = machine.received(.query(.failure(error)))
        #expect(!machine.hasStatement(named: ""), "even a failing Query drops it")
        #expect(!machine.knows(.portal, named: ""))
    }

    @Test func portalsEndWithTheirTransaction() {
        var machine = Machine()
        _ = machine.received(.parse(name: "s", .success(show)))
        _ = machine.received(.message(F.bind(portal: "p", statement: "s")))
        _ = machine.received(.message(F.sync))
        #expect(!machine.knows(.portal, named: "p"), "Sync ends the implicit transaction and its portals")
        #expect(machine.hasStatement(named: "s"))
        machine.transactionBlockOpen = true
        _ = machine.received(.message(F.bind(portal: "p", statement: "s")))
        _ = machine.received(.message(F.sync))
        #expect(machine.knows(.portal, named: "p"))
        machine.forgetPortal(named: nil)
        #expect(!machine.hasPortals)
        #expect(machine.received(.message(F.execute("p"))).first.map { if case .reply(.error(let e)) = $0 { e.code == "34000" } else { false } } == true)
    }
}
