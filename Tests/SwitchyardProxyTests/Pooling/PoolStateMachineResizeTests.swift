import Testing
@testable import SwitchyardProxy

/// `pool_size` changed by RELOAD: `PoolStateMachine.resized(to:now:)` and releases over a lowered limit.
@Suite struct PoolStateMachineResizeTests {
    let now = ContinuousClock.now

    /// A pool with `leased` connections lent out (IDs 0..<leased, to waiters 0..<leased) and `idle`
    /// more returned (IDs after those, released in order, one second apart).
    func pool(maximum: Int, leased: Int, idle: Int = 0) -> PoolStateMachine {
        var pool = PoolStateMachine(maximumConnections: maximum)
        let total = leased + idle
        for waiter in 0..<total {
            let action = pool.leaseRequested(by: waiter)
            #expect(action == .createConnection(waiter))
        }
        for id in 0..<total {
            let action = pool.connectionEstablished(id, now: now)
            #expect(action == .lease(id, to: id))
        }
        for id in leased..<total {
            let action = pool.connectionReleased(id, now: now + .seconds(id))
            #expect(action == .none)
        }
        #expect(pool.leasedCount == leased && pool.idleCount == idle)
        return pool
    }

    // MARK: Growing

    @Test func growingOpensConnectionsForWaitingLeases() {
        var pool = PoolStateMachine(maximumConnections: 1)
        let first = pool.leaseRequested(by: 1)
        let second = pool.leaseRequested(by: 2)
        let third = pool.leaseRequested(by: 3)
        #expect(first == .createConnection(0))
        #expect(second == .none && third == .none)
        #expect(pool.waiterCount == 3 && pool.connectingCount == 1)

        let actions = pool.resized(to: 3, now: now)
        #expect(actions == [.createConnection(1), .createConnection(2)])
        #expect(pool.maximumConnections == 3)
        #expect(pool.connectingCount == 3)

        let established0 = pool.connectionEstablished(0, now: now)
        let established1 = pool.connectionEstablished(1, now: now)
        let established2 = pool.connectionEstablished(2, now: now)
        #expect(established0 == .lease(0, to: 1))
        #expect(established1 == .lease(1, to: 2))
        #expect(established2 == .lease(2, to: 3))
        #expect(pool.waiterCount == 0 && pool.leasedCount == 3)
    }

    @Test func growingOpensNoMoreThanTheWaitersNeed() {
        var pool = PoolStateMachine(maximumConnections: 1)
        _ = pool.leaseRequested(by: 1)
        _ = pool.leaseRequested(by: 2)
        let actions = pool.resized(to: 10, now: now)
        #expect(actions == [.createConnection(1)])
        #expect(pool.connectingCount == 2)
    }

    @Test func growingOpensNoMoreThanTheNewLimit() {
        var pool = PoolStateMachine(maximumConnections: 1)
        for waiter in 0..<10 { _ = pool.leaseRequested(by: waiter) }
        let actions = pool.resized(to: 4, now: now)
        #expect(actions == [.createConnection(1), .createConnection(2), .createConnection(3)])
        #expect(pool.connectingCount == 4 && pool.waiterCount == 10)
    }

    @Test func growingWithoutWaitersDoesNothing() {
        var pool = pool(maximum: 2, leased: 1, idle: 1)
        let actions = pool.resized(to: 5, now: now)
        #expect(actions == [])
        #expect(pool.maximumConnections == 5)
        #expect(pool.idleCount == 1 && pool.leasedCount == 1 && pool.connectingCount == 0)
    }

    @Test func newLimitAppliesToLaterLeases() {
        var pool = pool(maximum: 1, leased: 1)
        _ = pool.resized(to: 2, now: now)
        let second = pool.leaseRequested(by: 10)
        #expect(second == .createConnection(1))
        let third = pool.leaseRequested(by: 11)
        #expect(third == .none, "two connections is the new limit")
    }

    @Test func resizingToTheSameSizeChangesNothing() {
        var pool = pool(maximum: 3, leased: 1, idle: 2)
        let actions = pool.resized(to: 3, now: now)
        #expect(actions == [])
        #expect(pool.idleCount == 2 && pool.leasedCount == 1)
    }

    // MARK: Shrinking

    @Test func shrinkingClosesIdleConnectionsAtOnceOldestFirst() {
        var pool = pool(maximum: 4, leased: 0, idle: 4)
        let actions = pool.resized(to: 1, now: now)
        #expect(actions == [.closeConnection(0), .closeConnection(1), .closeConnection(2)])
        #expect(pool.maximumConnections == 1)
        #expect(pool.idleCount == 1)
        // The most recently used connection is the one kept.
        let lease = pool.leaseRequested(by: 99)
        #expect(lease == .lease(3, to: 99))
    }

    @Test func shrinkingClosesLeasedConnectionsAsTheyAreReleased() {
        var pool = pool(maximum: 3, leased: 3)
        let actions = pool.resized(to: 1, now: now)
        #expect(actions == [], "leased connections are not taken from their clients")
        #expect(pool.leasedCount == 3)

        let first = pool.connectionReleased(0, now: now)
        #expect(first == .closeConnection(0))
        let second = pool.connectionReleased(1, now: now)
        #expect(second == .closeConnection(1))
        #expect(pool.leasedCount == 1 && pool.idleCount == 0)
        // Back at the limit: the last one returns to the pool.
        let third = pool.connectionReleased(2, now: now)
        #expect(third == .none)
        #expect(pool.idleCount == 1 && pool.leasedCount == 0)
    }

    @Test func shrinkingClosesIdleFirstThenLeasedOnRelease() {
        var pool = pool(maximum: 4, leased: 2, idle: 2)
        let actions = pool.resized(to: 1, now: now)
        #expect(actions == [.closeConnection(2), .closeConnection(3)])
        #expect(pool.idleCount == 0 && pool.leasedCount == 2)
        let first = pool.connectionReleased(1, now: now)
        #expect(first == .closeConnection(1))
        let second = pool.connectionReleased(0, now: now)
        #expect(second == .none)
        #expect(pool.idleCount == 1)
    }

    @Test func shrinkingKeepsIdleConnectionsWithinTheNewLimit() {
        var pool = pool(maximum: 4, leased: 1, idle: 3)
        let actions = pool.resized(to: 3, now: now)
        #expect(actions == [.closeConnection(1)], "only the oldest idle connection goes")
        #expect(pool.idleCount == 2 && pool.leasedCount == 1)
    }

    @Test func releaseOverTheLimitClosesEvenWithWaiters() {
        var pool = pool(maximum: 2, leased: 2)
        let waiting = pool.leaseRequested(by: 50)
        #expect(waiting == .none)
        _ = pool.resized(to: 1, now: now)
        let first = pool.connectionReleased(0, now: now)
        #expect(first == .closeConnection(0))
        #expect(pool.waiterCount == 1)
        let closed = pool.connectionClosed(0)
        #expect(closed == .none, "still at the limit with connection 1 leased")
        // Within the limit again: the waiter gets the next released connection.
        let second = pool.connectionReleased(1, now: now)
        #expect(second == .lease(1, to: 50))
        #expect(pool.waiterCount == 0 && pool.leasedCount == 1)
    }

    @Test func releaseOfAnUnknownConnectionIsIgnoredAfterShrinking() {
        var pool = pool(maximum: 2, leased: 2)
        _ = pool.resized(to: 1, now: now)
        let unknown = pool.connectionReleased(42, now: now)
        #expect(unknown == .none)
        #expect(pool.leasedCount == 2)
    }

    @Test func shrinkThenGrowReopensForWaiters() {
        var pool = pool(maximum: 2, leased: 2)
        _ = pool.resized(to: 1, now: now)
        _ = pool.leaseRequested(by: 60)
        let released = pool.connectionReleased(0, now: now)
        #expect(released == .closeConnection(0))
        _ = pool.connectionClosed(0)
        let actions = pool.resized(to: 2, now: now)
        #expect(actions == [.createConnection(2)])
        let established = pool.connectionEstablished(2, now: now)
        #expect(established == .lease(2, to: 60))
    }

    /// A connection still being opened when the limit drops, whose waiter left meanwhile, is closed
    /// when it arrives instead of idling above the limit; one that a waiter still wants is handed over.
    @Test func connectionOpenedAcrossAShrinkClosesUnlessSomeoneWaits() {
        var pool = PoolStateMachine(maximumConnections: 2)
        let first = pool.leaseRequested(by: 1)
        let second = pool.leaseRequested(by: 2)
        #expect(first == .createConnection(0) && second == .createConnection(1))
        let established = pool.connectionEstablished(0, now: now)
        #expect(established == .lease(0, to: 1))
        _ = pool.resized(to: 1, now: now)
        let kept = pool.connectionEstablished(1, now: now)
        #expect(kept == .lease(1, to: 2), "waiter 2 still wants it")

        var lonely = PoolStateMachine(maximumConnections: 2)
        _ = lonely.leaseRequested(by: 1)
        _ = lonely.leaseRequested(by: 2)
        _ = lonely.connectionEstablished(0, now: now)
        lonely.waiterCancelled(2)
        _ = lonely.resized(to: 1, now: now)
        let closed = lonely.connectionEstablished(1, now: now)
        #expect(closed == .closeConnection(1))
        #expect(lonely.idleCount == 0 && lonely.connectingCount == 0)
    }
}
