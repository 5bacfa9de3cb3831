import DequeModule
import NIOCore
import PostgresWire

/// Statements Switchyard answers itself (``LocalCommand``), in the simple and the extended protocol,
/// with the message sequence Postgres would send.
extension ClientSession {
    /// What became of a client message that may be a local command.
    enum LocalDisposition {
        /// Not a local command (or one inside a batch already relayed): the servers answer it.
        case relayed
        /// Answered (or its batch opened) now.
        case answered
        /// Answers to the messages before it are still owed: it waits, and everything after it, in
        /// `deferred`, so the client gets every answer in the order Postgres would send them.
        case deferred
    }

    /// Answers `request` itself if it is a ``LocalCommand`` (`SET`/`SHOW switchyard.route`, DEALLOCATE of
    /// the client's statements) sent as a statement of its own: a simple Query, or the Parse (or the Bind
    /// of a statement prepared earlier) that opens an extended-protocol batch.
    func answerIfLocal(_ request: inout ClientRequest) -> LocalDisposition {
        guard let command = localCommand(of: &request) else { return .relayed }
        if serverOwesAnswers {
            // Deferred only when what is ahead ends with a ReadyForQuery (a Query or Sync), whose arrival
            // ends the wait; inside a batch still open it goes on to Postgres (README, differences).
            if let last = pending.last { return last.id == FrontendMessageID.sync || last.id == FrontendMessageID.query ? .deferred : .relayed }
            return tracker.extendedBatchOpen ? .relayed : .deferred
        }
        let status = localTransactionStatus
        if status == .failed {
            // Postgres refuses everything but the end of the block, Parse and Bind included.
            let error = ErrorFields(severity: .error, code: SQLState.inFailedSQLTransaction,
                                    message: "current transaction is aborted, commands ignored until end of transaction block")
            if request.id == FrontendMessageID.query {
                writeToClient { error.encode(into: &$0); BackendMessage.readyForQuery(status, into: &$0) }
            } else {
                batch = .discardingUntilSync
                writeToClient { error.encode(into: &$0) }
            }
            return .answered
        }
        localAnswers.transactionBlockOpen = status != .idle
        switch request.id {
        case FrontendMessageID.query:
            answerLocally(localAnswers.received(.query(.success([command]))))
        case FrontendMessageID.parse:
            batch = .local
            answerLocally(localAnswers.received(.parse(name: ParseMessage(request.message)?.statement ?? "", .success(command))))
        default:
            batch = .local
            answerLocally(localAnswers.received(.message(Frame(id: request.id, body: request.message.body))))
        }
        return .answered
    }

    /// The transaction status a local answer reports: with no server attached the client is between
    /// transactions.
    var localTransactionStatus: TransactionStatus { backend == nil ? .idle : tracker.status }

    /// Whether a server still owes answers to client messages sent (or queued) before now.
    var serverOwesAnswers: Bool {
        !pending.isEmpty || link.isLeasing || watermarkProbe.isAwaiting || closingIdleConnections
            || (backend != nil && (tracker.awaitedReadyForQuery > 0 || tracker.extendedBatchOpen))
    }

    /// The local command a Query or Parse carries, or a Bind names. A first-byte check comes before
    /// classifying: SET, SHOW, DEALLOCATE, or a comment.
    func localCommand(of request: inout ClientRequest) -> LocalCommand? {
        let message = request.message
        switch message.id {
        case FrontendMessageID.query, FrontendMessageID.parse:
            guard let text = message.id == FrontendMessageID.query ? message.body : message.statementText,
                  Self.mayBeLocalCommand(text), let classification = request.classification(by: shard) else { return nil }
            return localCommand(classification)
        case FrontendMessageID.bind:
            guard localAnswers.hasStatements, let bind = BindMessage(message) else { return nil }
            return localAnswers.preparedStatement(named: bind.statement)
        default:
            return nil
        }
    }

    /// Performs what the local responder asks (running a command is synchronous here) and writes its
    /// replies, ReadyForQuery with the session's transaction status.
    func answerLocally(_ actions: [LocalResponder<LocalCommand>.Action]) {
        let status = localTransactionStatus
        var buffer = context.channel.allocator.buffer(capacity: 128)
        var actions = Deque(actions)
        while let action = actions.popFirst() {
            switch action {
            case .reply(let reply):
                reply.encode(into: &buffer, status: status)
            case .execute(let command):
                let result: Result<[[ColumnValue]], ErrorFields> = perform(command).map { .failure($0) }
                    ?? .success(command.returnsRow ? [[.text(localValue(of: command))]] : [])
                logger.debug("answered a statement locally", metadata: ["command": "\(command.commandTag)"])
                actions.append(contentsOf: localAnswers.statementFinished(result))
            case .close:
                context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
                return close()
            }
        }
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        // Answered inside a transaction, the client may now sit idle holding its server.
        armIdleTransactionTimer()
    }

    /// A server parses, binds or closes (or a simple Query replaces) a statement or portal of a name a
    /// local one had: that name belongs to the server from now on.
    func noteRelayedStatement(_ request: ClientRequest) {
        guard localAnswers.hasStatements || localAnswers.hasPortals else { return }
        switch request.id {
        case FrontendMessageID.query:
            localAnswers.forgetStatement(named: "")
            localAnswers.forgetPortal(named: "")
        case FrontendMessageID.parse:
            if let parse = ParseMessage(request.message) { localAnswers.forgetStatement(named: parse.statement) }
        case FrontendMessageID.bind:
            if let bind = BindMessage(request.message) { localAnswers.forgetPortal(named: bind.portal) }
        case FrontendMessageID.close:
            guard let target = TargetMessage(request.message) else { return }
            if target.kind == .statement { localAnswers.forgetStatement(named: target.name) } else { localAnswers.forgetPortal(named: target.name) }
        default: break
        }
    }

    /// Handles deferred messages in order, as if they arrived now, up to a local command that must wait
    /// again: a read after `SET switchyard.route` is routed under the new setting.
    /// Re-entry (a replayed unit refused at once ends by replaying again) returns at once; the outer
    /// loop carries on, so a long pipeline does not grow the stack.
    func replayDeferred() {
        guard !isReplayingDeferred else { return }
        // With nothing to replay, a read held while answers were owed is resumed all the same.
        guard !deferred.isEmpty else { return resumeHeldRead() }
        isReplayingDeferred = true
        idleTransactionTimer?.cancel()
        idleTransactionTimer = nil
        while case .relaying = phase, let request = deferred.popFirst() {
            guard receive(request) else { break }
        }
        isReplayingDeferred = false
        flushVerbatim(wholeRead: nil)
        backend?.flush()
        resumeHeldRead()
        armIdleTransactionTimer()
        closeIfTerminated()
    }

    /// The local command a statement string is, if it is exactly one.
    func localCommand(_ classification: StatementClassification) -> LocalCommand? {
        guard classification.statementCount == 1 else { return nil }
        if let command = classification.routeCommand { return .route(command) }
        // Only the client's protocol-level statements; SQL-level PREPAREs live on a pinned server.
        if runtime.poolMode == .transaction, !pin.isPinned, case .deallocate(let name)? = classification.sessionEffect,
           name.map({ statementMap.hasStatement(named: $0) || localAnswers.hasStatement(named: $0) }) ?? true {
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
        case .route(.showProxySetting("last_write_lsn")) where !readFloor.tracksWrites:
            // A token that silently misses the session's writes would let a reader see older data.
            return ErrorFields(severity: .error, code: SQLState.objectNotInPrerequisiteState,
                               message: "write positions are not tracked at read_consistency = eventual",
                               hint: "SET switchyard.read_consistency = session to get a causal token for later writes.")
        case .route(.showProxySetting("last_write_lsn")) where readFloor.untrackedWrite:
            return ErrorFields(severity: .error, code: SQLState.objectNotInPrerequisiteState,
                               message: "the position of this session's last write was not recorded",
                               hint: "Writes made while switchyard.route = primary are not tracked; the next write under another route records a position.")
        case .route(.showProxySetting("last_write_lsn")) where readFloor.lastWrite == .unknown:
            return ErrorFields(severity: .error, code: SQLState.objectNotInPrerequisiteState,
                               message: "the position of this session's last write is not known",
                               hint: "The primary did not answer after that write; the next write records a position again.")
        case .route(.show), .route(.showProxySetting):
            break
        case .deallocate(let name?):
            statementMap.deallocated(name)
            statementClasses[name] = nil
            localAnswers.forgetStatement(named: name)
        case .deallocate(nil):
            statementMap.deallocated(nil)
            statementClasses.removeAll()
            localAnswers.forgetStatement(named: nil)
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

    /// First-byte check before classifying a Query or Parse: SET, SHOW, DEALLOCATE, or a comment.
    static func mayBeLocalCommand(_ text: ByteBuffer) -> Bool {
        guard let first = text.readableBytesView.first(where: { !isSQLSpace($0) }) else { return false }
        return first | 0x20 == UInt8(ascii: "s") || first | 0x20 == UInt8(ascii: "d") || first == UInt8(ascii: "/") || first == UInt8(ascii: "-")
    }

    /// One message of a batch a local Parse or Bind opened: the responder answers it, up to the Sync.
    /// False hands it back to the normal path: a message about a statement or portal the servers hold.
    func answerLocallyInBatch(_ message: WireMessage) -> Bool {
        if !localAnswers.isSkippingUntilSync {
            let local: Bool
            switch message.id {
            case FrontendMessageID.sync, FrontendMessageID.flush:
                local = true
            case FrontendMessageID.bind:
                local = BindMessage(message).map { localAnswers.hasStatement(named: $0.statement) } ?? true
            case FrontendMessageID.describe, FrontendMessageID.close:
                local = TargetMessage(message).map { localAnswers.knows($0.kind, named: $0.name) } ?? true
            case FrontendMessageID.execute:
                local = ExecuteMessage(message).map { localAnswers.knows(.portal, named: $0.portal) } ?? true
            default:
                local = false
            }
            guard local else {
                batch = .relayed
                return false
            }
        }
        if message.id == FrontendMessageID.sync { batch = .relayed }
        localAnswers.transactionBlockOpen = localTransactionStatus != .idle
        answerLocally(localAnswers.received(.message(Frame(id: message.id, body: message.body))))
        return true
    }
}
