import NIOCore
import PostgresWire

/// The admin console's side of the query protocol: the ``LocalResponder`` every relay local command
/// uses too, with admin commands, compiled here from Query and Parse messages. Speaks the simple
/// protocol (psql) and the extended one (drivers such as postgres-nio), one command at a time.
package typealias AdminResponder = LocalResponder<AdminCommand>

extension AdminCommand: LocalStatement {
    /// Every admin command answers with rows (actions with one `result` column).
    package var resultColumns: [(name: String, type: ColumnType)]? { columns }
    package var commandTag: String { tag }
}

extension LocalResponder where Statement == AdminCommand {
    package mutating func messageReceived(_ message: Frame) -> [Action] {
        received(Self.event(for: message))
    }

    package mutating func commandFinished(_ result: Result<AdminResult, ErrorFields>) -> [Action] {
        statementFinished(result.map(\.rows))
    }

    /// Compiles a Query (one or more `;`-separated commands) or a Parse into admin commands.
    static func event(for message: Frame) -> Event {
        var body = message.body
        switch message.id {
        case FrontendMessageID.query:
            guard let text = body.readNullTerminatedString() else { return .malformed("Query") }
            let pieces = text.split(separator: ";").map(ConfigurationParser.trim).filter { !$0.isEmpty }
            do {
                return .query(.success(try pieces.map { piece throws(ErrorFields) in try AdminCommand.parse(String(piece)) }))
            } catch {
                return .query(.failure(error))
            }
        case FrontendMessageID.parse:
            guard let parse = ParseMessage(body: body), let text = parse.definition.getNullTerminatedString(at: parse.definition.readerIndex)
            else { return .malformed("Parse") }
            let trimmed = ConfigurationParser.trim(text[...])
            if trimmed.isEmpty || trimmed == ";" { return .parse(name: parse.statement, .success(nil)) }
            do {
                return .parse(name: parse.statement, .success(try AdminCommand.parse(text)))
            } catch {
                return .parse(name: parse.statement, .failure(error))
            }
        default:
            return .message(message)
        }
    }
}
