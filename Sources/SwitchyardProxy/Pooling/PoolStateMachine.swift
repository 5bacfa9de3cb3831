import DequeModule

/// The bookkeeping of one pool of backend connections (one server, one user/database pair,
/// one event loop), as a pure value: it takes events and returns the action to perform.
/// ``ConnectionPool`` performs the actions; tests drive this type with no sockets at all.
public struct PoolStateMachine: Sendable {
    public typealias ConnectionID = Int
    public typealias WaiterID = Int

    public enum Action: Equatable, Sendable {
        case none
        /// Open a new backend connection with this ID.
        case createConnection(ConnectionID)
        /// Hand this connection to this waiter.
        case lease(ConnectionID, to: WaiterID)
        /// Tell the waiter no connection is coming (connect failure or timeout).
        case failWaiter(WaiterID)
        /// Close this idle connection.
        case closeConnection(ConnectionID)
    }

    public private(set) var maximumConnections: Int
    /// Idle connections with the time they became idle; the most recently used is last (LIFO keeps caches warm).
    private var idle: [(id: ConnectionID, since: ContinuousClock.Instant)] = []
    private var leased: Set<ConnectionID> = []
    private var connecting: Set<ConnectionID> = []
    private var waiters: Deque<WaiterID> = []
    private var nextConnectionID = 0

    public init(maximumConnections: Int) {
        precondition(maximumConnections > 0)
        self.maximumConnections = maximumConnections
    }

    public var idleCount: Int { idle.count }
    public var leasedCount: Int { leased.count }
    public var connectingCount: Int { connecting.count }
    public var waiterCount: Int { waiters.count }
    private var totalConnections: Int { idle.count + leased.count + connecting.count }

    public mutating func leaseRequested(by waiter: WaiterID) -> Action {
        if let connection = idle.popLast() {
            leased.insert(connection.id)
            return .lease(connection.id, to: waiter)
        }
        waiters.append(waiter)
        return startConnectionIfNeeded()
    }

    public mutating func connectionEstablished(_ id: ConnectionID, now: ContinuousClock.Instant) -> Action {
        guard connecting.remove(id) != nil else { return .closeConnection(id) }
        // Opened before a lowered limit (RELOAD) and nobody waits for it: it goes.
        if waiters.isEmpty, totalConnections >= maximumConnections { return .closeConnection(id) }
        return handOut(id, now: now)
    }

    /// The oldest waiter learns why instead of waiting for its timeout. Waiters queued beyond the
    /// attempts in flight (more clients than `pool_size`) get an attempt of their own now: nothing else
    /// would start one before their `query_wait_timeout`.
    public mutating func connectionFailed(_ id: ConnectionID) -> [Action] {
        guard connecting.remove(id) != nil else { return [] }
        guard let waiter = waiters.popFirst() else { return [] }
        let retry = startConnectionIfNeeded()
        return retry == .none ? [.failWaiter(waiter)] : [.failWaiter(waiter), retry]
    }

    public mutating func connectionReleased(_ id: ConnectionID, now: ContinuousClock.Instant) -> Action {
        guard leased.remove(id) != nil else { return .none }
        // Over a lowered limit (RELOAD): the connection goes instead of back to the pool.
        guard totalConnections < maximumConnections else { return .closeConnection(id) }
        return handOut(id, now: now)
    }

    /// A new `pool_size` share (RELOAD). Growing opens connections for waiters at once; shrinking
    /// closes idle connections now and leased ones as they come back.
    public mutating func resized(to maximum: Int, now: ContinuousClock.Instant) -> [Action] {
        precondition(maximum > 0)
        maximumConnections = maximum
        var actions: [Action] = []
        while totalConnections > maximumConnections, let connection = idle.first {
            idle.removeFirst()
            actions.append(.closeConnection(connection.id))
        }
        while case .createConnection(let id) = startConnectionIfNeeded() { actions.append(.createConnection(id)) }
        return actions
    }

    /// A connection closed or was discarded, from whichever state.
    public mutating func connectionClosed(_ id: ConnectionID) -> Action {
        leased.remove(id)
        connecting.remove(id)
        idle.removeAll { $0.id == id }
        return startConnectionIfNeeded()
    }

    public mutating func waiterTimedOut(_ waiter: WaiterID) -> Action {
        guard let index = waiters.firstIndex(of: waiter) else { return .none }
        waiters.remove(at: index)
        return .failWaiter(waiter)
    }

    /// The waiter went away (its client disconnected): forget it quietly.
    public mutating func waiterCancelled(_ waiter: WaiterID) {
        if let index = waiters.firstIndex(of: waiter) { waiters.remove(at: index) }
    }

    /// Idle connections unused since before `deadline`, removed from the pool: close them.
    public mutating func expireIdleConnections(idleSince deadline: ContinuousClock.Instant) -> [ConnectionID] {
        let expired = idle.filter { $0.since < deadline }.map(\.id)
        idle.removeAll { $0.since < deadline }
        return expired
    }

    /// Every idle connection, removed from the pool (for KILL, reload or shutdown).
    public mutating func drainIdleConnections() -> [ConnectionID] {
        defer { idle.removeAll() }
        return idle.map(\.id)
    }

    private mutating func handOut(_ id: ConnectionID, now: ContinuousClock.Instant) -> Action {
        if let waiter = waiters.popFirst() {
            leased.insert(id)
            return .lease(id, to: waiter)
        }
        idle.append((id, now))
        return .none
    }

    private mutating func startConnectionIfNeeded() -> Action {
        guard waiters.count > connecting.count, totalConnections < maximumConnections else { return .none }
        let id = nextConnectionID
        nextConnectionID += 1
        connecting.insert(id)
        return .createConnection(id)
    }
}
