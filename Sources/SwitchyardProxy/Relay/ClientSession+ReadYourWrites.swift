import DequeModule
import NIOCore
import PostgresWire

/// Read-your-writes (``ReadFloor``): after a unit of work on the primary that may have written, the
/// session learns a WAL position at or past its commit (``WatermarkProbe``, pipelined on the same server
/// connection before it goes back to its pool); a later replica read goes only to a replica known to
/// have replayed that position, waits up to `read_consistency_max_wait` for one, or runs on the primary.
extension ClientSession {
    enum ReadPlacement: Equatable {
        /// No floor: any eligible replica.
        case anyReplica
        /// A replica that has replayed this position.
        case replica(LSN)
        case primary
        /// Wait for a replica to report replaying this position.
        case wait(LSN)
    }

    /// Where a replica read may go under the client's floor.
    func placeRead(excluding excluded: String?, mayWait: Bool) -> ReadPlacement {
        let database = readFloor.level == .database ? databaseWatermark?.watermark ?? .none : .none
        switch readFloor.requirement(database: database) {
        case .anyReplica:
            return .anyReplica
        case .primary:
            runtime.metrics.consistentPrimaryReads.increment()
            return .primary
        case .replayed(let position):
            // With no replica eligible at all, replica_fallback decides, as for any read.
            guard shard.eligibleReplicas.contains(where: { $0.name != excluded }) else { return .replica(position) }
            if shard.hasReplicaReplayed(position, excluding: excluded) {
                runtime.metrics.consistentReplicaReads.increment()
                return .replica(position)
            }
            if mayWait, shard.configuration.routing.healthCheckUser != nil, shard.configuration.routing.readConsistencyMaxWait > .zero {
                return .wait(position)
            }
            runtime.metrics.consistentPrimaryReads.increment()
            return .primary
        }
    }

    /// Holds this client's read (only this client: its later messages queue behind it) until a replica
    /// reports replaying `position`, or `read_consistency_max_wait` passes and the primary serves it.
    func waitForReplay(_ position: LSN) {
        let maxWait = TimeAmount(shard.configuration.routing.readConsistencyMaxWait)
        let timer = context.eventLoop.assumeIsolated().scheduleTask(in: maxWait) { [self] in
            guard case .awaitingReplay(_, let since) = link else { return }
            link = .none
            shard.stopAwaitingReplay(self)
            runtime.metrics.consistencyWaitTimeouts.increment()
            runtime.metrics.consistentPrimaryReads.increment()
            runtime.metrics.consistencyWait.recordNanoseconds((NIODeadline.now() - since).nanoseconds)
            logger.debug("no replica replayed the client's last write in time; reading from the primary",
                         metadata: ["lsn": "\(position)"])
            guard case .relaying = phase else { return }
            startUnit(target: .primary, mayWait: false)
        }
        link = .awaitingReplay(timer: timer, since: .now())
        shard.awaitReplay(self, position: position)
    }

    /// The shard saw a replica replay what the waiting read must see.
    func replicaCaughtUp() {
        guard case .awaitingReplay(let timer, let since) = link else { return }
        timer.cancel()
        link = .none
        runtime.metrics.consistencyWait.recordNanoseconds((NIODeadline.now() - since).nanoseconds)
        guard case .relaying = phase else { return }
        startUnit(mayWait: false)
    }

    /// On the primary, a unit may have written unless every statement in it is provably read-only.
    func noteWhetherItMayWrite(_ request: inout ClientRequest) {
        switch request.id {
        case FrontendMessageID.query, FrontendMessageID.parse, FrontendMessageID.bind:
            let classification = routingClass(of: &request)
            if request.id == FrontendMessageID.parse {
                // A Parse runs nothing: its Binds, in this unit or a later one, are judged by it.
                if let parse = ParseMessage(request.message) {
                    if parse.statement.isEmpty { unnamedStatementClass = classification } else { statementClasses[parse.statement] = classification }
                }
                return
            }
            // Reads, transaction control and SET/RESET/SHOW write nothing (the statements between BEGIN and
            // COMMIT are judged one by one, or together when in one string); anything else may write, as does
            // a Bind of a statement never classified.
            guard let classification, classification.writesNothing else {
                unit.mayHaveWritten = true
                return
            }
        case FrontendMessageID.functionCall:
            unit.mayHaveWritten = true
        default:
            break
        }
    }

    /// Sends the write position query behind a unit that may have written, when reads can go to
    /// replicas; returns whether it did (the server then stays attached until the answer).
    func startWatermarkProbe(on backend: BackendConnection) -> Bool {
        guard runtime.poolMode == .transaction, unit.role == .primary, unit.mayHaveWritten, readFloor.tracksWrites,
              !shard.topology.replicas.isEmpty else { return false }
        unit.mayHaveWritten = false
        if readFloor.level == .session, planner.setting == .primary {
            // Its reads all run on the primary: no position needed unless it routes reads again later.
            readFloor.writeNotTracked()
            return false
        }
        let holding = readFloor.level == .database
        watermarkProbe.querySent(holdingClientOutput: holding, failuresBefore: databaseWatermark?.failureCount ?? 0)
        if !holding { context.flush() }
        flushVerbatim(wholeRead: nil)
        statementMap.serverRanItsOwnQuery()
        backend.write(WatermarkProbe.message)
        backend.flush()
        return true
    }

    /// Whether `request` may go to the attached server while its position query is owed: always once a
    /// unit started behind the query; and a message that starts a primary unit starts it there, right behind
    /// the query (no lease, no wait), unless PAUSE, a topology change or shutdown would hold or move it.
    /// Reads that may go to a replica, local commands and session effects wait for the answer.
    func mayForwardBehindProbe(_ request: inout ClientRequest, on backend: BackendConnection) -> Bool {
        guard watermarkProbe.isAwaiting else { return true }
        if unit.startedBehindProbe { return true }
        guard !watermarkProbe.holdsClientOutput, tracker.status == .idle, !runtime.isDraining,
              backend.server.name == shard.topology.primary.name, shard.topology.primaryState == .writable,
              !shard.isPaused(backend.server.name), let classification = routingClass(of: &request),
              classification.routeCommand == nil, classification.sessionEffect == nil else { return false }
        refreshSessionReadOnly()
        guard planner.target(for: classification) == .primary else { return false }
        unit = UnitOfWork(role: .primary)
        unit.startedBehindProbe = true
        return true
    }

    /// Server bytes while the write position is owed; returns the bytes after its answer that belong to a
    /// unit started behind it, if any.
    func watermarkProbeBytesRead(_ buffer: ByteBuffer) throws -> ByteBuffer? {
        let failuresBefore = watermarkProbe.awaiting?.failuresBefore ?? 0
        let outcome = try watermarkProbe.bytesRead(buffer) { noteParameterStatus($0, clientSeesIt: false) }
        guard case .finished(let position, let problem, let rest) = outcome else { return nil }
        // Nothing else was sent after the probe, so more bytes are the server's own: the FATAL of a shutdown
        // (`pg_ctl -m immediate` sends it right behind the answer), a notice. The client's work is done.
        let serverSpokeUnasked = !unit.startedBehindProbe && rest.readableBytes > 0
        if let position {
            readFloor.wrote(at: position)
            databaseWatermark?.advance(to: position, failuresBeforeProbe: failuresBefore)
        } else {
            logger.warning("could not learn the position of a write; this client's reads go to the primary until its next write",
                           metadata: ["problem": "\(problem ?? "?")"])
            writePositionLost()
        }
        context.flush()
        if unit.startedBehindProbe {
            // The next unit is already on this connection: it goes on, and its answers follow.
            unit.startedBehindProbe = false
            return rest
        }
        guard let backend else { return nil }
        deferAllPending()
        // The unit's end comes from here, not from a server read's end: a client that has left is closed now.
        defer { closeIfTerminated() }
        if serverSpokeUnasked, !pin.isPinned {
            // Between transactions: not the client's business, but the connection is not reused.
            logger.notice("server sent a message of its own after the write position's answer; its connection is closed, not reused",
                          metadata: ["server": "\(backend.server.name)"])
            unitEnded(on: backend, reusable: false)
            return nil
        }
        unitEnded(on: backend)
        // A pinned client owns this connection (LISTEN, temporary tables): it is told, as if connected directly.
        return serverSpokeUnasked ? rest : nil
    }

    /// What the client sent while the answer was owed is handled afresh once the unit ended (``replayDeferred()``):
    /// a SHOW switchyard.last_write_lsn right after a write is answered locally, with the position just
    /// learnt, and a read is routed under the new floor.
    private func deferAllPending() {
        deferred.prepend(contentsOf: pending)
        pending.removeAll()
    }

    /// The server closed before answering: the write committed, but where is unknown.
    func watermarkProbeLost(_ connection: BackendConnection) {
        _ = watermarkProbe.abandoned()
        writePositionLost()
        logger.warning("server closed before the position of a write was known; this client's reads go to the primary until its next write",
                       metadata: ["server": "\(connection.server.name)"])
        context.flush()
        unit = UnitOfWork()
        deferAllPending()
        replayDeferred()
    }

    /// The client was told its write committed, but not where. At `database` level its commit was held
    /// for the position, so the database's readers were promised it too: they go to the primary until a
    /// later position covers it. (Other levels' writes join the database's watermark only once known.)
    func writePositionLost() {
        readFloor.writePositionLost()
        if readFloor.level == .database { databaseWatermark?.probeFailed() }
    }
}
