import NIOCore
import PostgresWire

/// The answers to the queries Switchyard injects ahead of a client's own messages to give a server
/// connection the client's session parameters (``ParameterSync``): cut out of the stream, their
/// ParameterStatus messages recorded, their error (if any) kept for the log, or for the login they
/// hold up. A pure value; the session feeds it server bytes while answers are owed.
struct ParameterSyncAnswer {
    struct Awaiting {
        var readyForQueryOwed: Int
        /// Bytes of an answer split across reads.
        var partial: ByteBuffer
        var error: ErrorFields?
        /// The client's login completes when these answers are in.
        var completesLogin: Bool
    }

    enum State {
        case idle
        case awaiting(Awaiting)
    }

    enum Outcome: Equatable {
        /// Every byte read belonged to the answers, and more are owed.
        case consumed
        /// The last answer arrived: `rest` is the client's, and `error` what the server refused.
        case finished(error: ErrorFields?, completesLogin: Bool, rest: ByteBuffer)
    }

    private(set) var state = State.idle

    var isAwaiting: Bool {
        if case .awaiting = state { return true }
        return false
    }

    /// A synchronisation query went out (ahead of anything the client sends after it).
    mutating func querySent(completingLogin: Bool) {
        switch state {
        case .idle:
            state = .awaiting(Awaiting(readyForQueryOwed: 1, partial: ParameterSyncAnswer.noBytes, error: nil,
                                       completesLogin: completingLogin))
        case .awaiting(var awaiting):
            awaiting.readyForQueryOwed += 1
            awaiting.completesLogin = awaiting.completesLogin || completingLogin
            state = .awaiting(awaiting)
        }
    }

    static let noBytes = ByteBuffer()

    /// Server bytes read while answers are owed; `parameterStatus` gets each ParameterStatus body.
    ///
    /// - Throws: ``FrameDecodingError`` for a malformed length.
    mutating func bytesRead(_ buffer: ByteBuffer, parameterStatus: (ByteBuffer) -> Void) throws -> Outcome {
        guard case .awaiting(var awaiting) = state else { return .finished(error: nil, completesLogin: false, rest: buffer) }
        state = .idle
        var bytes = buffer
        if awaiting.partial.readableBytes > 0 {
            awaiting.partial.writeImmutableBuffer(buffer)
            bytes = awaiting.partial
            awaiting.partial = Self.noBytes
        }
        while let message = try bytes.readWireMessage() {
            switch message.id {
            case BackendMessageID.parameterStatus:
                parameterStatus(message.body)
            case BackendMessageID.errorResponse:
                awaiting.error = ErrorFields(decoding: message.body)
            case BackendMessageID.readyForQuery:
                awaiting.readyForQueryOwed -= 1
                if awaiting.readyForQueryOwed == 0 {
                    return .finished(error: awaiting.error, completesLogin: awaiting.completesLogin, rest: bytes)
                }
            default:
                break
            }
        }
        // Own the leftover: a slice would pin the whole receive buffer.
        if bytes.readableBytes > 0 { awaiting.partial = ByteBuffer(bytes: bytes.readableBytesView) }
        state = .awaiting(awaiting)
        return .consumed
    }
}
