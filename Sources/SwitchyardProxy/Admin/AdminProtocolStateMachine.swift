import DequeModule
import NIOCore
import PostgresWire

/// The admin console's side of the query protocol, as a pure value: frontend messages in, replies
/// and commands to run out. Speaks the simple protocol (psql) and the extended one (drivers such as
/// postgres-nio: Parse/Bind/Describe/Execute/Sync), one command at a time; messages that arrive
/// while a command runs wait their turn.
struct AdminProtocolStateMachine {
    enum Reply: Equatable {
        case parseComplete, bindComplete, closeComplete, noData, emptyQuery, readyForQuery
        /// No parameters: admin commands take none.
        case parameterDescription
        case rowDescription(AdminCommand, formats: [Int16])
        case dataRows([[ColumnValue]], formats: [Int16])
        case commandComplete(String)
        case error(ErrorFields)
    }

    enum Action: Equatable {
        case reply(Reply)
        /// Run the command, then report with ``commandFinished(_:)``.
        case execute(AdminCommand)
        case close
    }

    private struct Execution {
        var command: AdminCommand
        /// Simple protocol: the RowDescription goes with the rows, and ReadyForQuery follows the last command.
        var simple: Bool
        var formats: [Int16]
        /// The rest of a simple Query holding several commands.
        var remaining: [AdminCommand]
    }

    /// Prepared statements by name; a nil command is the empty statement.
    private var statements: [String: AdminCommand?] = [:]
    private var portals: [String: (command: AdminCommand?, formats: [Int16])] = [:]
    /// After an error in an extended-protocol batch, everything up to Sync is skipped, as in Postgres.
    private var skippingUntilSync = false
    private var running: Execution?
    private var queued: Deque<Frame> = []
    /// Messages queued behind a running command before the client is cut off (it floods us).
    static let queueLimit = 1000

    mutating func messageReceived(_ message: Frame) -> [Action] {
        guard running == nil else {
            guard queued.count < Self.queueLimit else {
                return [.reply(.error(ErrorFields(severity: .fatal, code: SQLState.protocolViolation,
                                                  message: "too many admin messages queued behind a running command"))), .close]
            }
            queued.append(message)
            return []
        }
        return process(message)
    }

    mutating func commandFinished(_ result: Result<AdminResult, ErrorFields>) -> [Action] {
        guard var execution = running else { return [] }
        var actions: [Action] = []
        switch result {
        case .success(let output):
            if execution.simple { actions.append(.reply(.rowDescription(execution.command, formats: []))) }
            actions.append(.reply(.dataRows(output.rows, formats: execution.formats)))
            actions.append(.reply(.commandComplete(execution.command.tag)))
            if execution.simple, !execution.remaining.isEmpty {
                execution.command = execution.remaining.removeFirst()
                running = execution
                return actions + [.execute(execution.command)]
            }
        case .failure(let error):
            actions.append(.reply(.error(error)))
            if !execution.simple { skippingUntilSync = true }
        }
        if execution.simple { actions.append(.reply(.readyForQuery)) }
        running = nil
        while running == nil, let next = queued.popFirst() {
            actions += process(next)
        }
        return actions
    }

    private mutating func process(_ message: Frame) -> [Action] {
        var body = message.body
        switch message.id {
        case FrontendMessageID.sync:
            skippingUntilSync = false
            return [.reply(.readyForQuery)]
        case FrontendMessageID.terminate:
            return [.close]
        default:
            break
        }
        // After an error only Sync (or Terminate) counts, a simple Query too is discarded, as in Postgres.
        guard !skippingUntilSync else { return [] }
        switch message.id {
        case FrontendMessageID.query:
            guard let text = body.readNullTerminatedString() else { return malformed("Query") }
            let pieces = text.split(separator: ";").map(ConfigurationParser.trim).filter { !$0.isEmpty }
            guard !pieces.isEmpty else { return [.reply(.emptyQuery), .reply(.readyForQuery)] }
            var commands: [AdminCommand] = []
            do {
                for piece in pieces { commands.append(try AdminCommand.parse(String(piece))) }
            } catch {
                return [.reply(.error(error)), .reply(.readyForQuery)]
            }
            let first = commands.removeFirst()
            running = Execution(command: first, simple: true, formats: [], remaining: commands)
            return [.execute(first)]
        case FrontendMessageID.flush:
            return []
        case FrontendMessageID.parse:
            guard let parse = ParseMessage(body: body), let text = parse.definition.getNullTerminatedString(at: parse.definition.readerIndex)
            else { return malformed("Parse") }
            let trimmed = ConfigurationParser.trim(text[...])
            if trimmed.isEmpty || trimmed == ";" {
                statements[parse.statement] = .some(nil)
                return [.reply(.parseComplete)]
            }
            do {
                statements[parse.statement] = .some(try AdminCommand.parse(text))
                return [.reply(.parseComplete)]
            } catch {
                return failBatch(error)
            }
        case FrontendMessageID.bind:
            guard let bind = BindMessage(body: body), let parameters = bind.decodeParameters() else { return malformed("Bind") }
            guard parameters.values.isEmpty else {
                return failBatch(ErrorFields(severity: .error, code: SQLState.protocolViolation,
                                             message: "admin commands take no parameters, but Bind supplied \(parameters.values.count)"))
            }
            guard let command = statements[bind.statement] else { return failBatch(Self.unknownStatement(bind.statement)) }
            portals[bind.portal] = (command, parameters.resultFormats)
            return [.reply(.bindComplete)]
        case FrontendMessageID.describe:
            guard let target = TargetMessage(id: message.id, body: body) else { return malformed("Describe") }
            switch target.kind {
            case .statement:
                guard let command = statements[target.name] else { return failBatch(Self.unknownStatement(target.name)) }
                return [.reply(.parameterDescription), .reply(Self.description(of: command, formats: []))]
            case .portal:
                guard let portal = portals[target.name] else { return failBatch(Self.unknownPortal(target.name)) }
                return [.reply(Self.description(of: portal.command, formats: portal.formats))]
            }
        case FrontendMessageID.execute:
            guard let execute = ExecuteMessage(body: body) else { return malformed("Execute") }
            guard let portal = portals[execute.portal] else { return failBatch(Self.unknownPortal(execute.portal)) }
            guard let command = portal.command else { return [.reply(.emptyQuery)] }
            running = Execution(command: command, simple: false, formats: portal.formats, remaining: [])
            return [.execute(command)]
        case FrontendMessageID.close:
            guard let target = TargetMessage(id: message.id, body: body) else { return malformed("Close") }
            switch target.kind {
            case .statement: statements[target.name] = nil
            case .portal: portals[target.name] = nil
            }
            return [.reply(.closeComplete)]
        default:
            return failBatch(ErrorFields(severity: .error, code: SQLState.featureNotSupported,
                                         message: "message type '\(Character(Unicode.Scalar(message.id)))' is not supported on the admin console"))
        }
    }

    private static func description(of command: AdminCommand?, formats: [Int16]) -> Reply {
        guard let command else { return .noData }
        return .rowDescription(command, formats: formats)
    }

    private mutating func failBatch(_ error: ErrorFields) -> [Action] {
        skippingUntilSync = true
        return [.reply(.error(error))]
    }

    private mutating func malformed(_ what: String) -> [Action] {
        [.reply(.error(ErrorFields(severity: .fatal, code: SQLState.protocolViolation, message: "malformed \(what) message"))), .close]
    }

    private static func unknownStatement(_ name: String) -> ErrorFields {
        ErrorFields(severity: .error, code: "26000", message: "prepared statement \"\(name)\" does not exist")
    }

    private static func unknownPortal(_ name: String) -> ErrorFields {
        ErrorFields(severity: .error, code: "34000", message: "portal \"\(name)\" does not exist")
    }
}

extension AdminProtocolStateMachine.Reply {
    /// Encodes the reply as backend messages.
    func encode(into buffer: inout ByteBuffer) {
        switch self {
        case .parseComplete: buffer.writeMessage(id: BackendMessageID.parseComplete) { _ in }
        case .bindComplete: buffer.writeMessage(id: BackendMessageID.bindComplete) { _ in }
        case .closeComplete: buffer.writeMessage(id: BackendMessageID.closeComplete) { _ in }
        case .noData: buffer.writeMessage(id: BackendMessageID.noData) { _ in }
        case .emptyQuery: buffer.writeMessage(id: BackendMessageID.emptyQueryResponse) { _ in }
        case .readyForQuery: BackendMessage.readyForQuery(.idle, into: &buffer)
        case .parameterDescription: buffer.writeMessage(id: BackendMessageID.parameterDescription) { $0.writeInteger(Int16(0)) }
        case .rowDescription(let command, let formats): BackendMessage.rowDescription(columns: command.columns, formats: formats, into: &buffer)
        case .dataRows(let rows, let formats): for row in rows { BackendMessage.dataRow(row, formats: formats, into: &buffer) }
        case .commandComplete(let tag): BackendMessage.commandComplete(tag, into: &buffer)
        case .error(let error): error.encode(into: &buffer)
        }
    }
}
