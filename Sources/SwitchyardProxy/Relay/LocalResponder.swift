import DequeModule
import NIOCore
import PostgresWire

/// A statement Switchyard answers itself, without a server.
package protocol LocalStatement: Equatable {
    /// The columns of its rows; nil when it returns none (a Describe then answers NoData).
    var resultColumns: [(name: String, type: ColumnType)]? { get }
    /// Its CommandComplete tag.
    var commandTag: String { get }
}

/// Answers a client without a server, in the simple and the extended protocol, with the messages
/// Postgres would send, in its order. A pure value: frontend events in, replies and statements to run
/// out. The admin console answers every message with it, the relay its local commands
/// (``LocalCommand``); one place, so both speak the protocol the same way. Events that arrive while a
/// statement runs wait their turn.
package struct LocalResponder<Statement: LocalStatement> {
    package enum Event {
        /// A simple Query, compiled by its owner: its statements (none: an empty query), or why not.
        case query(Result<[Statement], ErrorFields>)
        /// A Parse, compiled: nil is the empty statement.
        case parse(name: String, Result<Statement?, ErrorFields>)
        /// A Query or Parse that could not be decoded.
        case malformed(String)
        /// Any other frontend message: Bind, Describe, Execute, Close, Flush, Sync, Terminate.
        case message(Frame)
    }

    package enum Reply: Equatable {
        case parseComplete, bindComplete, closeComplete, noData, emptyQuery
        /// With the owner's transaction status.
        case readyForQuery
        /// No parameters: local statements take none.
        case parameterDescription
        case rowDescription(Statement, formats: [Int16])
        case dataRows([[ColumnValue]], formats: [Int16])
        case commandComplete(String)
        case error(ErrorFields)
    }

    package enum Action: Equatable {
        case reply(Reply)
        /// Run the statement, then report with ``statementFinished(_:)``.
        case execute(Statement)
        case close
    }

    private struct Execution {
        var statement: Statement
        /// Simple protocol: the RowDescription goes with the rows, and ReadyForQuery follows the last statement.
        var simple: Bool
        var formats: [Int16]
        /// The rest of a simple Query holding several statements.
        var remaining: [Statement]
    }

    /// Prepared statements by name; a nil statement is the empty one.
    private var statements: [String: Statement?] = [:]
    private var portals: [String: (statement: Statement?, formats: [Int16])] = [:]
    /// After an error in an extended-protocol batch, everything up to Sync is skipped, as in Postgres.
    private(set) var isSkippingUntilSync = false
    private var running: Execution?
    private var queued: Deque<Event> = []
    /// Set by an owner whose client is inside a transaction block: portals then outlive Sync, until
    /// the block ends (``forgetPortal(named:)``), as in Postgres.
    var transactionBlockOpen = false
    /// Events queued behind a running statement before the client is cut off (it floods us).
    static var queueLimit: Int { 1000 }

    package init() {}

    /// Whether a Bind of `name` is answered here.
    func hasStatement(named name: String) -> Bool { statements[name] != nil }
    /// The prepared statement `name`, if it is answered here.
    func preparedStatement(named name: String) -> Statement? { statements[name] ?? nil }
    /// Whether the statement or portal `name` is answered here.
    func knows(_ kind: TargetMessage.Kind, named name: String) -> Bool {
        kind == .statement ? statements[name] != nil : portals[name] != nil
    }
    /// Whether any prepared statement is answered here (a cheap check before decoding a Bind).
    var hasStatements: Bool { !statements.isEmpty }
    /// Whether any portal is answered here.
    var hasPortals: Bool { !portals.isEmpty }

    /// The client's statement `name` now lives elsewhere (a server parsed one of that name), or was
    /// deallocated: nil forgets them all.
    mutating func forgetStatement(named name: String?) {
        if let name { statements[name] = nil } else { statements.removeAll() }
    }

    /// The portal `name` now lives on a server (a relayed Bind), or every portal ended with its
    /// transaction (nil).
    mutating func forgetPortal(named name: String?) {
        if let name { portals[name] = nil } else { portals.removeAll() }
    }

    mutating func received(_ event: Event) -> [Action] {
        guard running == nil else {
            guard queued.count < Self.queueLimit else {
                return [.reply(.error(ErrorFields(severity: .fatal, code: SQLState.protocolViolation,
                                                  message: "too many messages queued behind a running command"))), .close]
            }
            queued.append(event)
            return []
        }
        return process(event)
    }

    /// The statement ``Action/execute(_:)`` asked for ran: its rows, or its error.
    mutating func statementFinished(_ result: Result<[[ColumnValue]], ErrorFields>) -> [Action] {
        guard var execution = running else { return [] }
        var actions: [Action] = []
        switch result {
        case .success(let rows):
            if execution.simple, execution.statement.resultColumns != nil {
                actions.append(.reply(.rowDescription(execution.statement, formats: [])))
            }
            actions.append(.reply(.dataRows(rows, formats: execution.formats)))
            actions.append(.reply(.commandComplete(execution.statement.commandTag)))
            if execution.simple, !execution.remaining.isEmpty {
                execution.statement = execution.remaining.removeFirst()
                running = execution
                return actions + [.execute(execution.statement)]
            }
        case .failure(let error):
            actions.append(.reply(.error(error)))
            if !execution.simple { isSkippingUntilSync = true }
        }
        if execution.simple { actions.append(.reply(.readyForQuery)) }
        running = nil
        while running == nil, let next = queued.popFirst() {
            actions += process(next)
        }
        return actions
    }

    private mutating func process(_ event: Event) -> [Action] {
        if case .message(let message) = event {
            switch message.id {
            case FrontendMessageID.sync:
                isSkippingUntilSync = false
                // Sync ends the implicit transaction, and its portals with it; a block still open keeps them.
                if !transactionBlockOpen { portals.removeAll() }
                return [.reply(.readyForQuery)]
            case FrontendMessageID.terminate:
                return [.close]
            default:
                break
            }
        }
        // After an error only Sync (or Terminate) counts, a simple Query too is discarded, as in Postgres.
        guard !isSkippingUntilSync else { return [] }
        if case .query = event {
            // Every simple Query drops the unnamed statement and portal first, as in Postgres, even an empty or failing one.
            statements[""] = nil
            portals[""] = nil
        }
        switch event {
        case .query(.failure(let error)):
            return [.reply(.error(error)), .reply(.readyForQuery)]
        case .query(.success(var statements)):
            guard !statements.isEmpty else { return [.reply(.emptyQuery), .reply(.readyForQuery)] }
            let first = statements.removeFirst()
            running = Execution(statement: first, simple: true, formats: [], remaining: statements)
            return [.execute(first)]
        case .parse(let name, .success(let statement)):
            statements[name] = .some(statement)
            return [.reply(.parseComplete)]
        case .parse(_, .failure(let error)):
            return failBatch(error)
        case .malformed(let what):
            return malformed(what)
        case .message(let message):
            return process(message)
        }
    }

    private mutating func process(_ message: Frame) -> [Action] {
        let body = message.body
        switch message.id {
        case FrontendMessageID.flush:
            return []
        case FrontendMessageID.bind:
            guard let bind = BindMessage(body: body), let parameters = bind.decodeParameters() else { return malformed("Bind") }
            guard let statement = statements[bind.statement] else { return failBatch(Self.unknownStatement(bind.statement)) }
            guard parameters.values.isEmpty else {
                // Postgres' own words for a Bind that does not match its statement.
                return failBatch(ErrorFields(severity: .error, code: SQLState.protocolViolation,
                                             message: "bind message supplies \(parameters.values.count) parameters, but prepared statement \"\(bind.statement)\" requires 0"))
            }
            portals[bind.portal] = (statement, parameters.resultFormats)
            return [.reply(.bindComplete)]
        case FrontendMessageID.describe:
            guard let target = TargetMessage(id: message.id, body: body) else { return malformed("Describe") }
            switch target.kind {
            case .statement:
                guard let statement = statements[target.name] else { return failBatch(Self.unknownStatement(target.name)) }
                return [.reply(.parameterDescription), .reply(Self.description(of: statement, formats: []))]
            case .portal:
                guard let portal = portals[target.name] else { return failBatch(Self.unknownPortal(target.name)) }
                return [.reply(Self.description(of: portal.statement, formats: portal.formats))]
            }
        case FrontendMessageID.execute:
            guard let execute = ExecuteMessage(body: body) else { return malformed("Execute") }
            guard let portal = portals[execute.portal] else { return failBatch(Self.unknownPortal(execute.portal)) }
            guard let statement = portal.statement else { return [.reply(.emptyQuery)] }
            running = Execution(statement: statement, simple: false, formats: portal.formats, remaining: [])
            return [.execute(statement)]
        case FrontendMessageID.close:
            guard let target = TargetMessage(id: message.id, body: body) else { return malformed("Close") }
            switch target.kind {
            case .statement: statements[target.name] = nil
            case .portal: portals[target.name] = nil
            }
            return [.reply(.closeComplete)]
        default:
            return failBatch(ErrorFields(severity: .error, code: SQLState.featureNotSupported,
                                         message: "message type '\(Character(Unicode.Scalar(message.id)))' is not supported here"))
        }
    }

    private static func description(of statement: Statement?, formats: [Int16]) -> Reply {
        guard let statement, statement.resultColumns != nil else { return .noData }
        return .rowDescription(statement, formats: formats)
    }

    private mutating func failBatch(_ error: ErrorFields) -> [Action] {
        isSkippingUntilSync = true
        return [.reply(.error(error))]
    }

    private func malformed(_ what: String) -> [Action] {
        [.reply(.error(ErrorFields(severity: .fatal, code: SQLState.protocolViolation, message: "malformed \(what) message"))), .close]
    }

    private static func unknownStatement(_ name: String) -> ErrorFields {
        ErrorFields(severity: .error, code: "26000", message: "prepared statement \"\(name)\" does not exist")
    }

    private static func unknownPortal(_ name: String) -> ErrorFields {
        ErrorFields(severity: .error, code: "34000", message: "portal \"\(name)\" does not exist")
    }
}

extension LocalResponder.Reply {
    /// Encodes the reply as backend messages; ReadyForQuery with `status`.
    package func encode(into buffer: inout ByteBuffer, status: TransactionStatus = .idle) {
        switch self {
        case .parseComplete: buffer.writeMessage(id: BackendMessageID.parseComplete) { _ in }
        case .bindComplete: buffer.writeMessage(id: BackendMessageID.bindComplete) { _ in }
        case .closeComplete: buffer.writeMessage(id: BackendMessageID.closeComplete) { _ in }
        case .noData: buffer.writeMessage(id: BackendMessageID.noData) { _ in }
        case .emptyQuery: buffer.writeMessage(id: BackendMessageID.emptyQueryResponse) { _ in }
        case .readyForQuery: BackendMessage.readyForQuery(status, into: &buffer)
        case .parameterDescription: buffer.writeMessage(id: BackendMessageID.parameterDescription) { $0.writeInteger(Int16(0)) }
        case .rowDescription(let statement, let formats):
            BackendMessage.rowDescription(columns: statement.resultColumns ?? [], formats: formats, into: &buffer)
        case .dataRows(let rows, let formats): for row in rows { BackendMessage.dataRow(row, formats: formats, into: &buffer) }
        case .commandComplete(let tag): BackendMessage.commandComplete(tag, into: &buffer)
        case .error(let error): error.encode(into: &buffer)
        }
    }
}
