import PostgresWire

/// When a client session that is ending may close, as Postgres ends one: at Terminate or end of input it
/// still runs and answers what it had read, and after a message it refuses with a FATAL it first answers
/// what came before. A pure value: the session tells it what happened and asks it, with the facts of the
/// moment, whether to close now.
struct SessionEnding: Equatable {
    enum State: Equatable {
        case open
        /// No client message is taken any more. `fatal` goes out last, just before the close; `inputClosed`
        /// is set once the client closed its side (nothing more will be read).
        case finishing(fatal: ErrorFields?, inputClosed: Bool)
    }

    /// What the relay is doing for the client when asked.
    struct Facts: Equatable {
        /// The server waits for the client's bytes (COPY FROM STDIN, the rest of a streamed message):
        /// work that can never end.
        var serverWaitsForClient = false
        /// Answers still owed to what the client sent before: messages queued, a server being waited for,
        /// a commit's answer held back for its write position, a server still answering.
        var answersOwed = false
        /// The bytes of a refused message are still being skipped.
        var skippingRefusedBytes = false
    }

    enum Decision: Equatable {
        case stayOpen
        /// Close now, after writing `fatal` if there is one. `abandoningWork`: the server was waiting for
        /// the client (a COPY), which closing ends.
        case close(fatal: ErrorFields?, abandoningWork: Bool)
    }

    private(set) var state = State.open

    var isOpen: Bool { state == .open }

    /// Terminate: Postgres reads nothing after it.
    mutating func terminateReceived() {
        if case .open = state { state = .finishing(fatal: nil, inputClosed: false) }
    }

    /// The client closed its side, with or without Terminate.
    mutating func inputClosed() {
        switch state {
        case .open: state = .finishing(fatal: nil, inputClosed: true)
        case .finishing(let fatal, _): state = .finishing(fatal: fatal, inputClosed: true)
        }
    }

    /// A message the relay cannot answer as a failed statement: the session ends with `error` once the
    /// answers owed before it are out.
    mutating func endedWith(_ error: ErrorFields) {
        switch state {
        case .open: state = .finishing(fatal: error, inputClosed: false)
        case .finishing(nil, let inputClosed): state = .finishing(fatal: error, inputClosed: inputClosed)
        case .finishing: break  // the first reason stands
        }
    }

    func decide(_ facts: Facts) -> Decision {
        guard case .finishing(let fatal, let inputClosed) = state else { return .stayOpen }
        if facts.serverWaitsForClient { return .close(fatal: fatal, abandoningWork: true) }
        if facts.answersOwed { return .stayOpen }
        // A refused message's bytes are read to the end, so the FATAL is not lost to a reset connection.
        if facts.skippingRefusedBytes, !inputClosed { return .stayOpen }
        return .close(fatal: fatal, abandoningWork: false)
    }
}
