import NIOCore
import PostgresWire

/// Statements Switchyard answers itself (``LocalCommand``), in the simple and the extended protocol,
/// with the message sequence Postgres would send.
extension ClientSession {
    /// A ``LocalCommand`` (`SET`/`SHOW switchyard.route`, DEALLOCATE of the client's statements) sent
    /// alone as a simple Query is answered by Switchyard itself.
    func answerLocally(_ query: inout ClientRequest) -> Bool {
        guard Self.mayBeLocalCommand(query.message.body), let classification = query.classification(by: shard),
              let command = localCommand(classification) else { return false }
        let status = backend == nil ? TransactionStatus.idle : tracker.status
        perform(command)
        writeToClient { buffer in
            if command.returnsRow {
                BackendMessage.rowDescription(columns: ["switchyard.route"], into: &buffer)
                BackendMessage.dataRow([self.planner.setting.rawValue], into: &buffer)
            }
            BackendMessage.commandComplete(command.commandTag, into: &buffer)
            BackendMessage.readyForQuery(status, into: &buffer)
        }
        logger.debug("answered a statement locally", metadata: ["command": "\(command.commandTag)"])
        return true
    }

    /// The local command a statement string is, if it is exactly one.
    func localCommand(_ classification: StatementClassification) -> LocalCommand? {
        guard classification.statementCount == 1 else { return nil }
        if let command = classification.routeCommand { return .route(command) }
        // Only the client's protocol-level statements; SQL-level PREPAREs live on a pinned server.
        if runtime.poolMode == .transaction, !pin.isPinned, case .deallocate(let name)? = classification.sessionEffect,
           name.map({ preparedStatements[$0] != nil }) ?? true {
            return .deallocate(name: name)
        }
        return nil
    }

    /// Carries out a local command (at its Query, or at its Execute in the extended protocol).
    func perform(_ command: LocalCommand) {
        switch command {
        case .route(.set(let setting)):
            planner.setting = setting
        case .route(.show):
            break
        case .deallocate(let name?):
            preparedStatements[name] = nil
            statementClasses[name] = nil
        case .deallocate(nil):
            preparedStatements.removeAll()
            statementClasses.removeAll()
        }
    }

    /// A Parse of a local command (or a Bind of one prepared earlier) opens a batch that Switchyard
    /// answers message by message, as Postgres would, up to the Sync.
    func startLocalBatch(_ request: inout ClientRequest) -> Bool {
        let message = request.message
        switch message.id {
        case FrontendMessageID.parse:
            guard let text = message.statementText, Self.mayBeLocalCommand(text),
                  let classification = request.classification(by: shard), let command = localCommand(classification),
                  let parse = ParseMessage(message) else { return false }
            if !parse.statement.isEmpty { localStatements[parse.statement] = command }
            batch = .local(command)
            writeToClient { $0.writeMessage(id: BackendMessageID.parseComplete) { _ in } }
            return true
        case FrontendMessageID.bind:
            guard !localStatements.isEmpty, let bind = BindMessage(message), let command = localStatements[bind.statement] else { return false }
            batch = .local(command)
            writeToClient { $0.writeMessage(id: BackendMessageID.bindComplete) { _ in } }
            return true
        default:
            return false
        }
    }

    /// First-byte check before classifying a Query or Parse: SET, SHOW, DEALLOCATE, or a comment.
    static func mayBeLocalCommand(_ text: ByteBuffer) -> Bool {
        guard let first = text.readableBytesView.first(where: { !isSQLSpace($0) }) else { return false }
        return first | 0x20 == UInt8(ascii: "s") || first | 0x20 == UInt8(ascii: "d") || first == UInt8(ascii: "/") || first == UInt8(ascii: "-")
    }

    /// Answers one message of a local batch; false hands it back to the normal path (a new statement).
    func answerLocallyInBatch(_ message: WireMessage, _ command: LocalCommand) -> Bool {
        switch message.id {
        case FrontendMessageID.bind:
            writeToClient { $0.writeMessage(id: BackendMessageID.bindComplete) { _ in } }
        case FrontendMessageID.describe:
            let describesStatement = message.body.getInteger(at: message.body.readerIndex, as: UInt8.self) == UInt8(ascii: "S")
            writeToClient { buffer in
                if describesStatement {
                    buffer.writeMessage(id: BackendMessageID.parameterDescription) { $0.writeInteger(Int16(0)) }
                }
                if command.returnsRow {
                    BackendMessage.rowDescription(columns: ["switchyard.route"], into: &buffer)
                } else {
                    buffer.writeMessage(id: BackendMessageID.noData) { _ in }
                }
            }
        case FrontendMessageID.execute:
            perform(command)
            writeToClient { buffer in
                if command.returnsRow { BackendMessage.dataRow([self.planner.setting.rawValue], into: &buffer) }
                BackendMessage.commandComplete(command.commandTag, into: &buffer)
            }
        case FrontendMessageID.close:
            writeToClient { $0.writeMessage(id: BackendMessageID.closeComplete) { _ in } }
        case FrontendMessageID.flush:
            break
        case FrontendMessageID.sync:
            batch = .relayed
            let status = backend == nil ? TransactionStatus.idle : tracker.status
            writeToClient { BackendMessage.readyForQuery(status, into: &$0) }
        default:
            batch = .relayed
            return false
        }
        return true
    }
}
