import NIOCore

/// What PAUSE holds: every server, or the named ones.
struct PauseScope: Sendable, Equatable {
    var everything = false
    var servers: Set<String> = []

    func covers(_ server: String) -> Bool { everything || servers.contains(server) }
    var isEmpty: Bool { !everything && servers.isEmpty }
}

/// How a wait for quiet ended.
enum QuietWaitOutcome: Sendable, Equatable {
    /// No server connection runs (or is about to run) work for the scope.
    case quiet
    /// The deadline passed first; `busy` connections were still at work on this loop.
    case timedOut(busy: Int)
    /// The pause the wait was for was lifted (RESUME) before it was quiet.
    case withdrawn
}

/// One loop's waits for "no unit of work runs on these servers": PAUSE (and a switchover's drain)
/// wait on these instead of polling. A pure value: the shard tells it when work ended or the pause
/// changed, and it says which waits are over. Keyed by an ID so a deadline can end its own wait.
struct QuietWaits<Waiter> {
    private var waits: [Int: (scope: PauseScope, waiter: Waiter)] = [:]
    private var nextID = 0

    var isEmpty: Bool { waits.isEmpty }

    /// Starts a wait; the caller has checked that the scope is busy now.
    mutating func add(_ scope: PauseScope, _ waiter: Waiter) -> Int {
        let id = nextID
        nextID += 1
        waits[id] = (scope, waiter)
        return id
    }

    /// Work ended somewhere: the waits whose scope is now quiet, removed.
    mutating func workEnded(busy: (PauseScope) -> Int) -> [Waiter] {
        end { busy($0) == 0 }
    }

    /// The pause changed: waits whose servers it no longer fully covers are withdrawn, removed.
    mutating func pauseChanged(to pause: PauseScope) -> [Waiter] {
        end { scope in
            scope.everything ? !pause.everything : !scope.servers.allSatisfy(pause.covers)
        }
    }

    /// A wait's deadline passed: its waiter, if it was still waiting.
    mutating func deadlinePassed(_ id: Int) -> (scope: PauseScope, waiter: Waiter)? {
        waits.removeValue(forKey: id)
    }

    private mutating func end(where isOver: (PauseScope) -> Bool) -> [Waiter] {
        var ended: [Waiter] = []
        for (id, wait) in waits where isOver(wait.scope) {
            waits[id] = nil
            ended.append(wait.waiter)
        }
        return ended
    }
}
