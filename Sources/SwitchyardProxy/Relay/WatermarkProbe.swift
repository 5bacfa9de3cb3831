import NIOCore
import PostgresWire

/// The query Switchyard sends behind a unit of work on the primary that may have written, and its
/// answer, cut out of the stream before the server connection goes back to its pool.
///
/// `pg_current_wal_insert_lsn()` is at or past the end of every WAL record already inserted, the
/// unit's commit record among them (with `synchronous_commit = off` too, where the write position may
/// still trail the commit). Schema-qualified, so no function on the client's search_path can stand in.
/// A pure value; the session feeds it server bytes while the answer is owed.
struct WatermarkProbe {
    static let query = "select pg_catalog.pg_current_wal_insert_lsn()"
    /// The Query message, built once: writing it allocates nothing.
    static let message: ByteBuffer = {
        var buffer = ByteBuffer()
        FrontendMessage.query(query, into: &buffer)
        return buffer
    }()

    struct Awaiting {
        /// Bytes of an answer split across reads.
        var partial: ByteBuffer
        var position: LSN?
        var error: ErrorFields?
        /// `read_consistency = database`: the client's ReadyForQuery is held (unflushed) until the answer.
        var holdsClientOutput: Bool
        /// The database watermark's failure count before the probe went out.
        var failuresBefore: UInt64
    }

    enum Outcome: Equatable {
        /// Every byte read belonged to the answer, and more is owed.
        case consumed
        /// The answer is in: the position, or why there is none. `rest` would be bytes after it.
        case finished(LSN?, problem: String?, rest: ByteBuffer)
    }

    private(set) var awaiting: Awaiting?

    var isAwaiting: Bool { awaiting != nil }
    var holdsClientOutput: Bool { awaiting?.holdsClientOutput ?? false }

    mutating func querySent(holdingClientOutput: Bool, failuresBefore: UInt64) {
        awaiting = Awaiting(partial: ByteBuffer(), holdsClientOutput: holdingClientOutput, failuresBefore: failuresBefore)
    }

    /// The server connection closed before the answer came.
    mutating func abandoned() -> Awaiting? {
        defer { awaiting = nil }
        return awaiting
    }

    /// Server bytes read while the answer is owed; `parameterStatus` gets each ParameterStatus body.
    ///
    /// - Throws: ``FrameDecodingError`` for a malformed length.
    mutating func bytesRead(_ buffer: ByteBuffer, parameterStatus: (ByteBuffer) -> Void) throws -> Outcome {
        guard var state = awaiting else { return .finished(nil, problem: "no probe was sent", rest: buffer) }
        var bytes = buffer
        if state.partial.readableBytes > 0 {
            state.partial.writeImmutableBuffer(buffer)
            bytes = state.partial
            state.partial = ByteBuffer()
        }
        while let message = try bytes.readWireMessage() {
            switch message.id {
            case BackendMessageID.dataRow:
                state.position = Self.decodePosition(message.body)
            case BackendMessageID.errorResponse:
                state.error = ErrorFields(decoding: message.body)
            case BackendMessageID.parameterStatus:
                parameterStatus(message.body)
            case BackendMessageID.readyForQuery:
                awaiting = nil
                if let error = state.error { return .finished(nil, problem: "\(error.code): \(error.message)", rest: bytes) }
                return .finished(state.position, problem: state.position == nil ? "the answer held no position" : nil, rest: bytes)
            default:
                // RowDescription, CommandComplete, a NoticeResponse: nothing the client asked for.
                break
            }
        }
        // Own the leftover: a slice would pin the whole receive buffer.
        if bytes.readableBytes > 0 { state.partial = ByteBuffer(bytes: bytes.readableBytesView) }
        awaiting = state
        return .consumed
    }

    /// The one text column of the answer's DataRow.
    static func decodePosition(_ body: ByteBuffer) -> LSN? {
        var body = body
        guard body.readInteger(as: Int16.self) == 1, let length = body.readInteger(as: Int32.self), length > 0,
              let text = body.readString(length: Int(length)) else { return nil }
        return LSN(text)
    }
}
