import Dispatch
import Synchronization

/// Runs blocking work (sockets, pipes) on a Dispatch thread, so it never occupies one of the
/// few threads of Swift's cooperative pool that the tests and postgres-nio need.
func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

struct TimeoutError: Error, CustomStringConvertible {
    var what: String
    var limit: Duration
    var description: String { "\(what) did not finish within \(limit)" }
}

/// Runs `operation` but gives up after `limit`, even if the operation ignores cancellation
/// (it is cancelled and left behind): no test can hang on a stuck client.
func withTimeout<T: Sendable>(
    _ limit: Duration, _ what: String = "operation", _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let gate = Gate<T>()
    return try await withCheckedThrowingContinuation { continuation in
        gate.install(continuation)
        let work = Task {
            do { gate.finish(.success(try await operation())) } catch { gate.finish(.failure(error)) }
        }
        let timer = Task {
            try? await Task.sleep(for: limit)
            if !Task.isCancelled, gate.finish(.failure(TimeoutError(what: what, limit: limit))) { work.cancel() }
        }
        gate.onFinish { timer.cancel() }
    }
}

/// Resumes a continuation exactly once, whoever comes first.
private final class Gate<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, Error>?
        var result: Result<T, Error>?
        var cleanup: (@Sendable () -> Void)?
    }
    private let state = Mutex(State())

    func install(_ continuation: CheckedContinuation<T, Error>) {
        state.withLock { $0.continuation = continuation }
    }

    func onFinish(_ cleanup: @escaping @Sendable () -> Void) {
        let finished = state.withLock { state -> Bool in
            if state.result != nil { return true }
            state.cleanup = cleanup
            return false
        }
        if finished { cleanup() }
    }

    @discardableResult
    func finish(_ result: Result<T, Error>) -> Bool {
        let (continuation, cleanup) = state.withLock { state -> (CheckedContinuation<T, Error>?, (@Sendable () -> Void)?) in
            guard state.result == nil else { return (nil, nil) }
            state.result = result
            defer { state.continuation = nil; state.cleanup = nil }
            return (state.continuation, state.cleanup)
        }
        guard let continuation else { return false }
        continuation.resume(with: result)
        cleanup?()
        return true
    }
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held.
func eventually(
    within limit: Duration, every interval: Duration = .milliseconds(100), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + limit
    while true {
        if try await condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        try? await Task.sleep(for: interval)
    }
}

/// Measures how long `body` takes.
func timed<T>(_ body: () async throws -> T) async rethrows -> (T, Duration) {
    let start = ContinuousClock.now
    let result = try await body()
    return (result, ContinuousClock.now - start)
}
