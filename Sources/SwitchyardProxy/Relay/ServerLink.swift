import NIOCore

/// Where a client's work stands with a server: exactly one of these at a time. It replaces four
/// optionals (an attached connection, a lease's wait, a replay wait, a PAUSE hold) that every reader
/// had to check together and every writer had to keep apart.
enum ServerLink {
    /// No server serves the client and none is being sought: between units, or nothing to do.
    case none
    /// PAUSE holds the client's next unit (or its login) for this server, until RESUME.
    case heldByPause(server: String)
    /// A lease is outstanding at the pool; `waitID` cancels it.
    case leasing(waitID: Int)
    /// A read waits for a replica to replay what the client must see; `timer` sends it to the primary.
    case awaitingReplay(timer: Scheduled<Void>, since: NIODeadline)
    /// This server connection serves the unit in flight (or, in session mode, the whole session).
    case attached(BackendConnection)

    var connection: BackendConnection? {
        if case .attached(let connection) = self { return connection }
        return nil
    }

    var isLeasing: Bool {
        if case .leasing = self { return true }
        return false
    }

    var isAwaitingReplay: Bool {
        if case .awaitingReplay = self { return true }
        return false
    }

    /// The server whose PAUSE holds the client, if one does.
    var heldBy: String? {
        if case .heldByPause(let server) = self { return server }
        return nil
    }
}
