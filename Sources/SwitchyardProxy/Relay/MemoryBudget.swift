import NIOCore
import Synchronization

/// The process-wide cap on bytes Switchyard holds on behalf of clients (`max_buffered_bytes`).
///
/// One process serves thousands of clients, so an unbounded hold has every client as its blast radius.
/// Only what can be large is charged: a client message kept whole beyond the streaming threshold, and
/// the copies of large statements kept for re-preparing. Small messages, held replica answers (which
/// stop at the first row) and output to slow clients (bounded per connection by the channel's write
/// watermarks) are not, so the hot path never touches the counter.
///
/// A message is charged in full when its header arrives, before its body is buffered: charging as bytes
/// arrive would let several half-received messages fill the budget and wait on each other for ever.
final class MemoryBudget: Sendable {
    private struct Waiter {
        let eventLoop: any EventLoop
        let retry: @Sendable () -> Void
    }

    private let limitBytes: Atomic<Int>
    private let usedBytes = Atomic<Int>(0)
    /// The part of `usedBytes` kept for as long as a client wants (statement copies), not given back
    /// when a message has gone through: a message larger than the limit less this could wait for ever.
    private let retainedBytes = Atomic<Int>(0)
    /// Sessions waiting for room, woken when a claim is released. Touched only when the budget is short.
    private let waiters = Mutex<[Waiter]>([])
    private let peakBytes = Atomic<Int>(0)
    /// Since they were last taken for the metrics.
    private let waits = Atomic<Int>(0)
    private let refusals = Atomic<Int>(0)

    init(limit: Int) {
        self.limitBytes = Atomic(limit)
    }

    var limit: Int { limitBytes.load(ordering: .relaxed) }
    var used: Int { usedBytes.load(ordering: .relaxed) }
    var retained: Int { retainedBytes.load(ordering: .relaxed) }
    /// The most ever charged at once, since start.
    var peak: Int { peakBytes.load(ordering: .relaxed) }
    /// Times a session had to wait for room, and messages refused as larger than the budget could ever
    /// hold, since the last call (for counters published at scrape time).
    func takeCounts() -> (waits: Int, refusals: Int) {
        (waits.exchange(0, ordering: .relaxed), refusals.exchange(0, ordering: .relaxed))
    }

    /// RELOAD: a larger limit lets waiting sessions go on; a smaller one applies to new claims.
    func setLimit(_ limit: Int) {
        limitBytes.store(limit, ordering: .relaxed)
        wakeWaiters()
    }

    /// Whether `bytes` could be held once every passing hold is given back. If not, waiting would be for ever.
    func couldEverHold(_ bytes: Int) -> Bool { bytes <= limit - retained }

    /// Whether a copy of `bytes` may be kept as retained: retained copies stay within half the limit, so
    /// they never crowd out the messages passing through (which may then be up to half the limit long).
    func mayRetain(_ bytes: Int) -> Bool { retained + bytes <= limit / 2 }

    /// Charges `bytes` if they fit now; nil when they don't (then `waitForRoom`).
    func claim(_ bytes: Int) -> BudgetClaim? {
        var current = usedBytes.load(ordering: .relaxed)
        while true {
            guard current + bytes <= limit else { return nil }
            let (exchanged, original) = usedBytes.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged {
                peakBytes.max(current + bytes, ordering: .relaxed)
                return BudgetClaim(bytes: bytes, retained: false, budget: self)
            }
            current = original
        }
    }

    /// Charges `bytes` even past the limit, as retained: for what must be kept to stay correct (a statement
    /// copy the client will use again). It delays other claims; it is never refused.
    func claimRetained(_ bytes: Int) -> BudgetClaim {
        retainedBytes.add(bytes, ordering: .relaxed)
        peakBytes.max(usedBytes.add(bytes, ordering: .relaxed).newValue, ordering: .relaxed)
        return BudgetClaim(bytes: bytes, retained: true, budget: self)
    }

    /// Calls `retry` on `eventLoop` once some claim is released (or at once, if one was released since
    /// the failed claim). `retry` claims again and, if still short, waits again.
    /// `counted` is false when the same message waits again after a wake-up that found too little room.
    func waitForRoom(_ bytes: Int, on eventLoop: any EventLoop, counted: Bool = true, retry: @escaping @Sendable () -> Void) {
        if counted { waits.add(1, ordering: .relaxed) }
        waiters.withLock { $0.append(Waiter(eventLoop: eventLoop, retry: retry)) }
        // A release between the failed claim and the append above found no waiter to wake.
        if used + bytes <= limit { wakeWaiters() }
    }

    func noteRefused() { refusals.add(1, ordering: .relaxed) }

    fileprivate func release(_ bytes: Int, retained: Bool) {
        if retained { retainedBytes.subtract(bytes, ordering: .relaxed) }
        usedBytes.subtract(bytes, ordering: .relaxed)
        wakeWaiters()
    }

    private func wakeWaiters() {
        let woken = waiters.withLock { waiters -> [Waiter] in
            defer { waiters.removeAll() }
            return waiters
        }
        for waiter in woken { waiter.eventLoop.execute(waiter.retry) }
    }
}

/// Bytes charged to the ``MemoryBudget``, given back when the last holder lets go: the claim travels with
/// what it pays for (a request, a statement copy, a write in flight), so no path can forget to release it.
final class BudgetClaim: Sendable {
    let bytes: Int
    private let retained: Bool
    private let budget: MemoryBudget

    fileprivate init(bytes: Int, retained: Bool, budget: MemoryBudget) {
        self.bytes = bytes
        self.retained = retained
        self.budget = budget
    }

    deinit { budget.release(bytes, retained: retained) }
}
