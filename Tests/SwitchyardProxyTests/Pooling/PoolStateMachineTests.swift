import Testing
@testable import SwitchyardProxy

@Suite struct PoolStateMachineTests {
    let now = ContinuousClock.now

    @Test func firstLeaseOpensAConnectionAndHandsItToTheWaiter() {
        var pool = PoolStateMachine(maximumConnections: 2)
        #expect(pool.leaseRequested(by: 1) == .createConnection(0))
        #expect(pool.connectionEstablished(0, now: now) == .lease(0, to: 1))
        #expect(pool.leasedCount == 1)
    }

    @Test func releasedConnectionIsReusedWithoutConnecting() {
        var pool = PoolStateMachine(maximumConnections: 2)
        _ = pool.leaseRequested(by: 1)
        _ = pool.connectionEstablished(0, now: now)
        #expect(pool.connectionReleased(0, now: now) == .none)
        #expect(pool.idleCount == 1)
        #expect(pool.leaseRequested(by: 2) == .lease(0, to: 2))
    }

    @Test func waitersBeyondTheLimitQueueInFIFOOrder() {
        var pool = PoolStateMachine(maximumConnections: 1)
        #expect(pool.leaseRequested(by: 1) == .createConnection(0))
        #expect(pool.leaseRequested(by: 2) == .none)
        #expect(pool.leaseRequested(by: 3) == .none)
        #expect(pool.connectionEstablished(0, now: now) == .lease(0, to: 1))
        #expect(pool.connectionReleased(0, now: now) == .lease(0, to: 2))
        #expect(pool.connectionReleased(0, now: now) == .lease(0, to: 3))
        #expect(pool.connectionReleased(0, now: now) == .none)
        #expect(pool.waiterCount == 0)
    }

    @Test func timedOutWaiterIsFailedOnceAndForgotten() {
        var pool = PoolStateMachine(maximumConnections: 1)
        _ = pool.leaseRequested(by: 1)
        _ = pool.connectionEstablished(0, now: now)
        _ = pool.leaseRequested(by: 2)
        #expect(pool.waiterTimedOut(2) == .failWaiter(2))
        #expect(pool.waiterTimedOut(2) == .none)
        #expect(pool.connectionReleased(0, now: now) == .none, "nobody is waiting any more")
    }

    @Test func connectFailureTellsTheOldestWaiter() {
        var pool = PoolStateMachine(maximumConnections: 1)
        _ = pool.leaseRequested(by: 1)
        #expect(pool.connectionFailed(0) == [.failWaiter(1)])
        #expect(pool.connectingCount == 0)
        #expect(pool.leaseRequested(by: 2) == .createConnection(1), "the pool retries for the next client")
    }

    /// More clients than connections: each failed attempt fails one waiter and starts another attempt for
    /// the rest, so none of them waits out its query_wait_timeout for an attempt nobody starts.
    @Test func connectFailureStartsAnAttemptForTheWaitersLeft() {
        var pool = PoolStateMachine(maximumConnections: 1)
        #expect(pool.leaseRequested(by: 1) == .createConnection(0))
        #expect(pool.leaseRequested(by: 2) == .none, "at the limit: one attempt in flight")
        #expect(pool.leaseRequested(by: 3) == .none)
        #expect(pool.connectionFailed(0) == [.failWaiter(1), .createConnection(1)])
        #expect(pool.connectionFailed(1) == [.failWaiter(2), .createConnection(2)])
        #expect(pool.connectionEstablished(2, now: .now) == .lease(2, to: 3))
        #expect(pool.waiterCount == 0)
    }

    @Test func closedConnectionIsReplacedForWaiters() {
        var pool = PoolStateMachine(maximumConnections: 1)
        _ = pool.leaseRequested(by: 1)
        _ = pool.connectionEstablished(0, now: now)
        _ = pool.leaseRequested(by: 2)
        #expect(pool.connectionClosed(0) == .createConnection(1))
        #expect(pool.connectionEstablished(1, now: now) == .lease(1, to: 2))
    }

    @Test func cancelledWaiterDoesNotGetAConnection() {
        var pool = PoolStateMachine(maximumConnections: 1)
        _ = pool.leaseRequested(by: 1)
        pool.waiterCancelled(1)
        #expect(pool.connectionEstablished(0, now: now) == .none)
        #expect(pool.idleCount == 1)
    }

    @Test func idleConnectionsExpireAfterTheirTimeout() {
        var pool = PoolStateMachine(maximumConnections: 2)
        _ = pool.leaseRequested(by: 1)
        _ = pool.leaseRequested(by: 2)
        _ = pool.connectionEstablished(0, now: now)
        _ = pool.connectionEstablished(1, now: now)
        _ = pool.connectionReleased(0, now: now)
        _ = pool.connectionReleased(1, now: now + .seconds(10))
        #expect(pool.expireIdleConnections(idleSince: now + .seconds(5)) == [0])
        #expect(pool.idleCount == 1)
    }

    @Test func neverOpensMoreThanTheLimit() {
        var pool = PoolStateMachine(maximumConnections: 3)
        var created = 0
        for waiter in 0..<50 {
            if case .createConnection = pool.leaseRequested(by: waiter) { created += 1 }
        }
        #expect(created == 3)
        #expect(pool.waiterCount == 50)
    }
}
