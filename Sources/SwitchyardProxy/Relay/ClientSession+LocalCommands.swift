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
        if let error = perform(command) {
            writeToClient { error.encode(into: &$0); BackendMessage.readyForQuery(status, into: &$0) }
            return true
        }
        writeToClient { buffer in
            if let setting = command.shownSetting {
                BackendMessage.rowDescription(columns: [setting], into: &buffer)
                BackendMessage.dataRow([self.localValue(of: command)], into: &buffer)
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
           name.map(statementMap.hasStatement(named:)) ?? true {
            return .deallocate(name: name)
        }
        return nil
    }

    /// Carries out a local command (at its Query, or at its Execute in the extended protocol); returns
    /// the error Postgres would answer a bad SET with.
    func perform(_ command: LocalCommand) -> ErrorFields? {
        switch command {
        case .route(.set(let setting)):
            planner.setting = setting
        case .route(.setReadConsistency(let level)):
            readFloor.level = level
        case .route(.setMinimumReadLSN(let position)):
            readFloor.minimumRead = position.value == 0 ? nil : position
        case .route(.invalidValue(let parameter, let value, let hint)):
            return ErrorFields(severity: .error, code: SQLState.invalidParameterValue,
                               message: "invalid value for parameter \"\(parameter)\": \"\(value)\"", hint: hint)
        case .route(.showProxySetting("last_write_lsn")) where readFloor.lastWrite == .unknown:
            return ErrorFields(severity: .error, code: SQLState.objectNotInPrerequisiteState,
                               message: "the position of this session's last write is not known",
                               hint: "The primary did not answer after that write; the next write records a position again.")
        case .route(.show), .route(.showProxySetting):
            break
        case .deallocate(let name?):
            statementMap.deallocated(name)
            statementClasses[name] = nil
        case .deallocate(nil):
            statementMap.deallocated(nil)
            statementClasses.removeAll()
        }
        return nil
    }

    /// The value a SHOW answers with.
    func localValue(of command: LocalCommand) -> String {
        switch command {
        case .route(.showProxySetting("read_consistency")): return readFloor.level.rawValue
        case .route(.showProxySetting("min_read_lsn")): return (readFloor.minimumRead ?? LSN(0)).description
        case .route(.showProxySetting("last_write_lsn")):
            if case .at(let position) = readFloor.lastWrite { return position.description }
            return LSN(0).description
        default: return planner.setting.rawValue
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
                if let setting = command.shownSetting {
                    BackendMessage.rowDescription(columns: [setting], into: &buffer)
                } else {
                    buffer.writeMessage(id: BackendMessageID.noData) { _ in }
                }
            }
        case FrontendMessageID.execute:
            if let error = perform(command) {
                // As after any error in a batch: the rest is skipped up to the Sync.
                batch = .discardingUntilSync
                writeToClient { error.encode(into: &$0) }
                return true
            }
            writeToClient { buffer in
                if command.returnsRow { BackendMessage.dataRow([self.localValue(of: command)], into: &buffer) }
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
