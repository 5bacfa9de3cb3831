/// Session state that exists on one server connection only. While a transaction-mode client has
/// any, it keeps that connection between transactions, as a session-mode client would: its
/// LISTENs' notifications arrive there and its temporary tables live there. A pure value.
struct ServerPin: Equatable {
    /// Channels the client listens on.
    private(set) var channels: Set<String> = []
    /// The client created temporary objects (or ran a multi-statement string that may have).
    private(set) var holdsTemporaryObjects = false

    var isPinned: Bool { !channels.isEmpty || holdsTemporaryObjects }

    /// A statement with `effect` went to the pinned (or about to be pinned) server connection.
    mutating func apply(_ effect: SessionEffect) {
        switch effect {
        case .listen(let channel): channels.insert(channel)
        case .unlisten(let channel?): channels.remove(channel)
        case .unlisten(nil): channels.removeAll()
        case .createTemporary: holdsTemporaryObjects = true
        case .discard(all: true): self = ServerPin()
        case .discard(all: false): holdsTemporaryObjects = false
        case .deallocate, .databaseDDL: break
        }
    }

    /// A string whose session state cannot be told apart (`LISTEN a; SELECT 1`): keep the
    /// connection until DISCARD ALL or DISCARD TEMP says otherwise.
    mutating func pinUntilDiscarded() { holdsTemporaryObjects = true }
}
