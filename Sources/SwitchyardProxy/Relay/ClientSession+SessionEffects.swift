import NIOCore
import PostgresWire

/// What the relay does about statements whose effects outlive their unit: database DDL that waits for
/// idle connections to close, replica pipelines ended early for a write, LISTEN / temporary tables /
/// DISCARD / DEALLOCATE, and the unnamed statement that must follow the client across servers.
extension ClientSession {
    /// The database a DROP DATABASE, ALTER DATABASE ... RENAME or CREATE DATABASE ... TEMPLATE
    /// names, when `message` carries one. Cheap for everything else (a first-word check).
    func databaseDDLTarget(_ request: inout ClientRequest) -> String? {
        guard request.id == FrontendMessageID.query || request.id == FrontendMessageID.parse,
              let text = request.message.statementText, SessionEffect.mayBeginDatabaseDDL(text),
              case .databaseDDL(let database)? = request.classification(by: shard)?.sessionEffect else { return nil }
        return database
    }

    /// Postgres refuses database-level DDL while any other session is connected to the database,
    /// Switchyard's idle pooled ones included: close those on every loop and server first. Busy
    /// ones are left alone, so Postgres' own error stands for them.
    func closeIdleConnections(to database: String) {
        closingIdleConnections = true
        let loop = context.eventLoop
        runtime.closeIdleServerConnections(database: database, on: loop).assumeIsolated().whenComplete { [self] result in
            closingIdleConnections = false
            let closed = (try? result.get()) ?? 0
            logger.info("closed idle server connections before database DDL", metadata: ["database": "\(database)", "closed": "\(closed)"])
            guard case .relaying = phase else { return }
            switch link {
            case .none: startUnit()
            case .attached: drainPending()
            case .leasing, .awaitingReplay, .heldByPause: break
            }
        }
    }

    /// A pipeline (no Sync yet) whose reads went to a replica reached a statement that needs the
    /// primary. The replica's answers may never come (a server buffers them until Sync or Flush)
    /// and the client's Sync sits behind that statement: waiting would deadlock. So the replica's
    /// part ends here, with a Sync of Switchyard's own whose ReadyForQuery the client never sees,
    /// and the rest runs on the primary. If the replica's part failed, Postgres would skip the rest
    /// up to the client's Sync; ``backendReadComplete()`` does that.
    func endReplicaBatchEarlyIfBlocked(_ backend: BackendConnection) {
        guard runtime.poolMode == .transaction, unit.role == .replica, !unit.explicitTransaction, !unit.endedEarly,
              tracker.extendedBatchOpen, !pending.isEmpty, !canForward(&pending[pending.startIndex]) else { return }
        unit.endedEarly = true
        tracker.clientSent(FrontendMessageID.sync)
        sendSynthesized(statementMap.ownSyncSent())
        send(composed(capacity: 5) { $0.writeMessage(id: FrontendMessageID.sync) { _ in } }, to: backend)
        backend.flush()
        logger.debug("pipeline needs the primary after replica reads; ended the replica's part with a Sync of its own")
    }

    /// Follows what a statement does to state kept on its server connection (see ``ServerPin``) and
    /// to the server's prepared statements.
    func noteSessionEffects(_ classification: StatementClassification, on backend: BackendConnection) {
        if let effect = classification.sessionEffect {
            if !effect.pinsServerConnection || unit.role == .primary { pin.apply(effect) }
            switch effect {
            case .discard(all: true), .deallocate(name: nil):
                statementMap.serverDroppedAllStatements(&backend.statements)
                statementClasses.removeAll()
            case .deallocate(let name?):
                perform(.deallocate(name: name))
            case .listen, .unlisten, .createTemporary, .discard, .databaseDDL:
                break
            }
        }
        if classification.pinsServerConnection, unit.role == .primary, !(classification.sessionEffect?.pinsServerConnection ?? false) {
            pin.pinUntilDiscarded()
        }
    }
}
