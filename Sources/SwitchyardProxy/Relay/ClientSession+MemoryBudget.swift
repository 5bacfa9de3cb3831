import NIOCore
import PostgresWire

/// Large client messages and the process-wide ``MemoryBudget``: a message the relay must hold whole is
/// charged in full before its body is read; short of room, the session stops reading from its client
/// (TCP pushes back) until a charge is given back; a message larger than the budget could ever hold
/// is skipped unread and answered with 54000.
extension ClientSession {
    /// ``ClientMessageStream``'s question about a message longer than its streaming threshold.
    func admit(_ id: UInt8, _ length: Int) -> ClientMessageStream.Admission {
        if mayStream(id) { return .stream }
        // Already waiting (a read that was under way when reads stopped): the wake-up asks again.
        if waitingForBudget { return .notYet }
        let budget = runtime.memoryBudget
        guard budget.couldEverHold(length) else {
            budget.noteRefused()
            return .refuse
        }
        if let claim = budget.claim(length) {
            inboundClaim = claim
            return .whole
        }
        logger.debug("waiting for room in max_buffered_bytes", metadata: ["message_bytes": "\(length)", "buffered_bytes": "\(budget.used)"])
        waitingForBudget = true
        let session = NIOLoopBound(self, eventLoop: context.eventLoop)
        budget.waitForRoom(length, on: context.eventLoop) { session.value.budgetMayHaveRoom() }
        return .notYet
    }

    /// Some charge was given back: ask again about the message at the front, and read on if it is admitted.
    func budgetMayHaveRoom() {
        guard waitingForBudget else { return }
        waitingForBudget = false
        guard case .relaying = phase else { return }
        relayFromClient(ByteBuffer())
        backend?.flush()
        resumeHeldRead()
    }

    /// The charge for `message` if it is the large one `inbound` was assembling.
    func takeInboundClaim(for message: WireMessage) -> BudgetClaim? {
        guard let claim = inboundClaim, claim.bytes == message.bytes.readableBytes else { return nil }
        inboundClaim = nil
        return claim
    }

    /// A promise that gives back the charges of the large messages written with it, once written.
    func releasingWhenWritten() -> EventLoopPromise<Void> {
        let promise = context.eventLoop.makePromise(of: Void.self)
        let claims = verbatimClaims
        verbatimClaims.removeAll()
        promise.futureResult.whenComplete { _ in withExtendedLifetime(claims) {} }
        return promise
    }

    /// A message longer than the whole budget: its bytes are skipped as they arrive. Between statements
    /// the client gets an ERROR, as for any failed statement (an extended-protocol batch is then skipped
    /// up to its Sync, as Postgres does after an error); with answers owed or a transaction open the
    /// relay cannot put the error in its place, so the session ends with it once the message's bytes are
    /// read (Postgres itself ends the session on a message over its own limit).
    func refuseOversizedMessage(id: UInt8, length: Int) {
        let limit = runtime.memoryBudget.limit
        logger.warning("refused a client message larger than max_buffered_bytes can hold", metadata: [
            "message_type": "\(Character(Unicode.Scalar(id)))", "message_bytes": "\(length)", "max_buffered_bytes": "\(limit)",
            "user": "\(identity?.user ?? "?")",
        ])
        // Postgres would read it only to discard it: nothing to answer.
        if case .discardingUntilSync = batch { return }
        let betweenStatements = !serverOwesAnswers && localTransactionStatus == .idle && deferred.isEmpty
        let error = ErrorFields(
            severity: betweenStatements ? .error : .fatal, code: SQLState.programLimitExceeded,
            message: "message of \(length) bytes exceeds what Switchyard may hold for it (max_buffered_bytes = \(limit))",
            hint: "Send less in one message (a COPY, or smaller batches), or raise max_buffered_bytes.")
        guard betweenStatements, case .relayed = batch else {
            writeToClient { error.encode(into: &$0) }
            closingAfterSkip = true
            return
        }
        if id == FrontendMessageID.query || id == FrontendMessageID.functionCall {
            writeToClient { error.encode(into: &$0); BackendMessage.readyForQuery(.idle, into: &$0) }
        } else {
            batch = .discardingUntilSync
            writeToClient { error.encode(into: &$0) }
        }
    }
}
