import NIOCore
import PostgresWire

/// Where a session's large message stands with the memory budget.
enum BudgetWait {
    case none
    /// Reads stop until a charge is given back; `timer` gives up at `query_wait_timeout`.
    case waiting(timer: Scheduled<Void>?)
    /// Woken: the next admission asks the budget again, under the same timer.
    case retrying(timer: Scheduled<Void>?)
    /// `query_wait_timeout` passed without room: the message is refused.
    case expired

    mutating func end() {
        switch self {
        case .waiting(let timer), .retrying(let timer): timer?.cancel()
        case .none, .expired: break
        }
        self = .none
    }
}

/// Large client messages and the process-wide ``MemoryBudget``: a message the relay must hold whole is
/// charged in full before its body is read; short of room, the session stops reading from its client
/// (TCP pushes back) until a charge is given back; a message larger than the budget could ever hold
/// is skipped unread and answered with 54000.
extension ClientSession {
    /// ``ClientMessageStream``'s question about a message longer than its streaming threshold.
    func admit(_ id: UInt8, _ length: Int) -> ClientMessageStream.Admission {
        if mayStream(id) { return .stream }
        let budget = runtime.memoryBudget
        let timer: Scheduled<Void>?
        var retrying = false
        switch budgetWait {
        case .waiting:
            // A read that was under way when reads stopped: the wake-up asks again.
            return .notYet
        case .expired:
            budget.noteRefused()
            return .refuse
        case .retrying(let running):
            timer = running
            retrying = true
        case .none:
            timer = nil
        }
        guard budget.couldEverHold(length) else {
            budgetWait.end()
            budget.noteRefused()
            return .refuse
        }
        if let claim = budget.claim(length) {
            budgetWait.end()
            inboundClaim = claim
            return .whole
        }
        logger.debug("waiting for room in max_buffered_bytes", metadata: ["message_bytes": "\(length)", "buffered_bytes": "\(budget.used)"])
        budgetWait = .waiting(timer: timer ?? scheduleBudgetTimeout())
        let session = NIOLoopBound(WeakSession(self), eventLoop: context.eventLoop)
        budget.waitForRoom(length, on: context.eventLoop, counted: !retrying) { session.value.session?.budgetMayHaveRoom() }
        return .notYet
    }

    /// Waiting for room ends at `query_wait_timeout`, as waiting for a server does: room held by sessions
    /// that themselves wait for a server this one holds would otherwise never come.
    private func scheduleBudgetTimeout() -> Scheduled<Void>? {
        guard let timeout = shard.configuration.queryWaitTimeout else { return nil }
        return context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) { [self] in
            guard case .waiting = budgetWait else { return }
            budgetWait = .expired
            askAgainAboutTheHeldMessage()
        }
    }

    /// Some charge was given back: ask again about the message at the front, and read on if it is admitted.
    func budgetMayHaveRoom() {
        guard case .waiting(let timer) = budgetWait else { return }
        budgetWait = .retrying(timer: timer)
        askAgainAboutTheHeldMessage()
    }

    private func askAgainAboutTheHeldMessage() {
        guard case .relaying = phase else { return budgetWait.end() }
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

    /// A client that sends part of a large message and then stops would keep its charge, and the room
    /// other clients wait for, for ever: after `message_stall_timeout` without a byte of it, it is closed.
    /// Called after every client read; time while Switchyard itself holds the reads does not count.
    func watchForStall() {
        guard inboundClaim != nil, case .relaying = phase, let timeout = shard.configuration.messageStallTimeout.map(TimeAmount.init) else {
            stallWatch?.check.cancel()
            stallWatch = nil
            return
        }
        let now = context.eventLoop.now
        if stallWatch != nil {
            // One timer per message, not per read: it looks at the time of the last read when it fires.
            stallWatch!.lastProgress = now
        } else {
            stallWatch = (scheduleStallCheck(in: timeout), now)
        }
    }

    private func scheduleStallCheck(in delay: TimeAmount) -> Scheduled<Void> {
        context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in stallCheckDue() }
    }

    private func stallCheckDue() {
        guard let watch = stallWatch, let claim = inboundClaim, case .relaying = phase,
              let timeout = shard.configuration.messageStallTimeout.map(TimeAmount.init) else {
            stallWatch = nil
            return
        }
        let now = context.eventLoop.now
        if readHeld || shouldHoldClientReads {
            // Switchyard holds the reads (a lease, backpressure): the client gets a full timeout once they resume.
            stallWatch = (scheduleStallCheck(in: timeout), now)
            return
        }
        let quiet = now - watch.lastProgress
        guard quiet >= timeout else {
            stallWatch = (scheduleStallCheck(in: timeout - quiet), watch.lastProgress)
            return
        }
        stallWatch = nil
        let seconds = timeout.nanoseconds / 1_000_000_000
        logger.warning("closing a client that stopped partway through a large message; its max_buffered_bytes charge goes back", metadata: [
            "message_bytes": "\(claim.bytes)", "message_stall_timeout_s": "\(seconds)", "user": "\(identity?.user ?? "?")",
        ])
        fail(ErrorFields(severity: .fatal, code: SQLState.protocolViolation,
                         message: "terminating connection: the client sent part of a \(claim.bytes)-byte message and then nothing for \(seconds) s",
                         hint: "message_stall_timeout closes such clients, so the memory held for their message goes back to the others."))
    }

    /// A promise that gives back the charges of the large messages written with it, once written.
    func releasingWhenWritten() -> EventLoopPromise<Void> {
        let promise = context.eventLoop.makePromise(of: Void.self)
        let claims = verbatimClaims
        verbatimClaims.removeAll()
        promise.futureResult.whenComplete { _ in withExtendedLifetime(claims) {} }
        return promise
    }

    /// A message longer than the whole budget, or that found no room in time: its bytes are skipped as
    /// they arrive, and it is answered as ``refuse(id:_:_:hint:)`` says.
    func refuseOversizedMessage(id: UInt8, length: Int) {
        let limit = runtime.memoryBudget.limit
        var timedOut = false
        if case .expired = budgetWait { timedOut = true }
        budgetWait.end()
        logger.warning(timedOut ? "refused a client message: no room in max_buffered_bytes within query_wait_timeout"
                                : "refused a client message larger than max_buffered_bytes can hold", metadata: [
            "message_type": "\(Character(Unicode.Scalar(id)))", "message_bytes": "\(length)", "max_buffered_bytes": "\(limit)",
            "buffered_bytes": "\(runtime.memoryBudget.used)", "user": "\(identity?.user ?? "?")",
        ])
        refuse(id: id, SQLState.programLimitExceeded,
               timedOut ? "no room to hold a message of \(length) bytes within query_wait_timeout (max_buffered_bytes = \(limit) is in use)"
                        : "message of \(length) bytes exceeds what Switchyard may hold for it (max_buffered_bytes = \(limit))",
               hint: "Send less in one message (a COPY, or smaller batches), or raise max_buffered_bytes.")
    }

    /// A named Parse over ``PreparedStatement/chargedSize`` whose copy (kept to prepare it again on other
    /// servers, for as long as the client keeps the statement) would take the copies kept past half of
    /// `max_buffered_bytes`: refused rather than kept, so copies never crowd out the messages passing through.
    /// Returns whether it was refused.
    func refusesStatementCopy(_ message: WireMessage) -> Bool {
        guard message.id == FrontendMessageID.parse, runtime.poolMode == .transaction,
              message.bytes.readableBytes > PreparedStatement.chargedSize, let parse = ParseMessage(message), !parse.statement.isEmpty,
              parse.definition.readableBytes > PreparedStatement.chargedSize else { return false }
        let budget = runtime.memoryBudget
        let size = parse.definition.readableBytes
        guard !budget.mayRetain(size) else { return false }
        budget.noteRefused()
        logger.warning("refused a prepared statement: copies of large prepared statements would pass half of max_buffered_bytes", metadata: [
            "statement_bytes": "\(size)", "retained_bytes": "\(budget.retained)", "max_buffered_bytes": "\(budget.limit)",
            "user": "\(identity?.user ?? "?")",
        ])
        refuse(id: message.id, SQLState.programLimitExceeded,
               "prepared statement of \(size) bytes: the copies Switchyard keeps of large prepared statements would pass half of max_buffered_bytes (\(budget.limit))",
               hint: "Deallocate prepared statements no longer used, use the unnamed statement for one-off batches, or raise max_buffered_bytes.")
        return true
    }

    /// Answers a message the relay will not take. Between statements the client gets an ERROR, as for any
    /// failed statement (an extended-protocol batch is then skipped up to its Sync, as Postgres does after an
    /// error); with answers owed or a transaction open the relay cannot answer it as a failed statement (the
    /// server's transaction would not know), so the session ends with it after the answers owed before it,
    /// as Postgres ends the session on a message over its own limit.
    private func refuse(id: UInt8, _ code: String, _ message: String, hint: String) {
        // Postgres would read it only to discard it: nothing to answer.
        if case .discardingUntilSync = batch { return }
        let betweenStatements = !serverOwesAnswers && localTransactionStatus == .idle && deferred.isEmpty
        let error = ErrorFields(severity: betweenStatements ? .error : .fatal, code: code, message: message, hint: hint)
        guard betweenStatements, case .relayed = batch else {
            // As Postgres would: what came before runs and is answered, then the FATAL, then the close.
            ending.endedWith(error)
            return closeIfTerminated()
        }
        if id == FrontendMessageID.query || id == FrontendMessageID.functionCall {
            writeToClient { error.encode(into: &$0); BackendMessage.readyForQuery(.idle, into: &$0) }
        } else {
            batch = .discardingUntilSync
            writeToClient { error.encode(into: &$0) }
        }
    }
}

/// The waiter a budget keeps must not keep a closed session alive until the next charge is given back.
private struct WeakSession {
    weak var session: ClientSession?
    init(_ session: ClientSession) { self.session = session }
}
