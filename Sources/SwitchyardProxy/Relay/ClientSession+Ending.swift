import NIOCore
import PostgresWire

/// How a client session ends: at the client's Terminate or end of input (once the work it sent before
/// is answered, as Postgres finishes it), at shutdown, by an operator, or with a FATAL; and what becomes
/// of its server connection.
extension ClientSession {
    /// The client closed its side: after Terminate, or without it (libpq closes right after sending it,
    /// a crashed client never does). Postgres still runs what it had read by then, so the relay finishes
    /// the work already received, then closes (``closeIfTerminated()``).
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case ChannelEvent.inputClosed = event else { return context.fireUserInboundEventTriggered(event) }
        guard case .relaying = phase else { return close() }
        ending.inputClosed()
        closeIfTerminated()
    }

    /// After Terminate, the client goes once the work it sent before is answered: Postgres finishes a
    /// Query (a write, say) that came before Terminate, so a statement still waiting for a server
    /// must not be dropped. An extended-protocol batch without a Sync is not waited for: Postgres
    /// would roll it back at Terminate, and closing the server connection does the same.
    /// Work that waits for the client's bytes (COPY data, the rest of a streamed message) never ends:
    /// the session closes at once, which ends the server's COPY, as Postgres ends it for a client gone.
    /// Checked on the next tick, never inside the caller: closing runs channelInactive at once, and
    /// the callers (unit ends, refusals, leases) go on touching the session afterwards.
    func closeIfTerminated() {
        guard !ending.isOpen else { return }
        context.eventLoop.assumeIsolated().execute { [self] in
            guard case .relaying = phase else { return }
            let facts = SessionEnding.Facts(
                serverWaitsForClient: copyInProgress || inbound.isStreaming,
                answersOwed: !pending.isEmpty || !deferred.isEmpty || link.isLeasing || link.isAwaitingReplay || closingIdleConnections
                    || watermarkProbe.holdsClientOutput || (backend != nil && tracker.awaitedReadyForQuery > 0),
                skippingRefusedBytes: inbound.isSkipping)
            guard case .close(let fatal, let abandoningWork) = ending.decide(facts) else { return }
            if abandoningWork {
                logger.info("client left while the server waits for its data (COPY FROM STDIN or a streamed message); closing")
            }
            flushVerbatim(wholeRead: nil)
            if let fatal { writeToClient { fatal.encode(into: &$0) } }
            context.flush()
            close()
        }
    }

    /// Shutdown: a client with no transaction in flight is closed now; others at their next idle point.
    func closeIfIdle() {
        switch phase {
        case .startup, .authenticating, .loggingIn:
            // Not logged in yet: nothing of theirs is in flight.
            return fail(ErrorFields(severity: .fatal, code: SQLState.cannotConnectNow, message: "Switchyard is shutting down"))
        case .relaying, .closed:
            break
        }
        guard case .relaying = phase else { return }
        if backend == nil || tracker.isIdle, pending.isEmpty, deferred.isEmpty {
            fail(.switchyardShuttingDown)
        }
    }

    func forceClose() {
        fail(ErrorFields(severity: .fatal, code: SQLState.adminShutdown, message: "terminating connection due to administrator command"))
    }

    func returnOrDiscard(_ connection: BackendConnection) {
        guard let pool else { return connection.close() }
        // A position query's answer still owed means the connection is not clean. The client leaving was
        // told nothing it must see later, so no watermark is harmed.
        let probeOwed = watermarkProbe.abandoned() != nil
        if tracker.isIdle, !unit.hold.isHolding, !parameterSyncAnswer.isAwaiting, !probeOwed, backendScanner.isAtMessageBoundary,
           !(runtime.poolMode == .session && shard.configuration.serverResetMode == .close), !pin.isPinned {
            let reset = runtime.poolMode == .session ? shard.configuration.serverResetQuery : nil
            pool.release(connection, resetQuery: reset)
        } else {
            // Mid-transaction or mid-message (or holding this client's LISTENs or temporary tables, or
            // server_reset_mode = close): the server must not be reused; closing it rolls back.
            if !tracker.isIdle { logger.info("client left in the middle of a transaction; its server connection is closed, which rolls it back") }
            pool.discard(connection)
        }
    }

    /// Sends a FATAL error and closes the client.
    func fail(_ error: ErrorFields) {
        guard let context, context.channel.isActive else { return }
        if case .closed = phase { return }
        var buffer = context.channel.allocator.buffer(capacity: 128)
        error.encode(into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        close()
    }

    func close() {
        guard let context else { return }
        context.close(promise: nil)
    }
}
