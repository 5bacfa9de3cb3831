import NIOCore

/// Splits a client's byte stream into messages for the relay: small messages whole (as
/// zero-copy slices when a read holds them entirely), large ones as the relay admits them: whole,
/// streamed through in chunks as they arrive (so a 100 MB Query or COPY row never has to sit in
/// memory), not yet (the relay stops reading until it has room), or refused and skipped unread.
public struct ClientMessageStream: Sendable {
    public enum Event: Sendable {
        /// A complete message.
        case message(WireMessage)
        /// The start of a streamed message: its type and its first bytes (header included).
        case streamStart(id: UInt8, bytes: ByteBuffer)
        /// More bytes of the streamed message; `isLast` when it is complete.
        case streamBody(ByteBuffer, isLast: Bool)
        /// A message the relay refused, whose bytes (`length` with its type byte) are being skipped.
        case refused(id: UInt8, length: Int)
    }

    /// What to do with a message longer than `streamingThreshold`.
    public enum Admission: Sendable {
        /// Buffer it until complete, in storage sized for it once.
        case whole
        /// Pass its bytes on as they arrive (a message already complete comes whole).
        case stream
        /// Stop here: `process` holds the bytes and asks again on its next call (an empty input will do).
        case notYet
        /// Skip its bytes; the relay answers for it.
        case refuse
    }

    public let maximumLength: Int
    /// Messages at most this long are always delivered whole.
    public let streamingThreshold: Int
    private var partial: ByteBuffer?
    private var streamRemaining = 0
    private var skipRemaining = 0
    /// The length of the large message at the front of `partial` once admitted whole.
    private var admittedLength: Int?

    public init(maximumLength: Int, streamingThreshold: Int = 64 * 1024) {
        self.maximumLength = maximumLength
        self.streamingThreshold = streamingThreshold
    }

    /// A streamed message is partway through: the server waits for the rest of it.
    public var isStreaming: Bool { streamRemaining > 0 }

    /// Bytes held for an incomplete message that is not being streamed.
    public var bufferedBytes: Int { partial?.readableBytes ?? 0 }

    /// Bytes of a refused message still to be skipped.
    public var isSkipping: Bool { skipRemaining > 0 }

    /// Feeds one read. `admit(id, length)` is asked once per message longer than `streamingThreshold`, when
    /// its header arrives (and again after `.notYet`), whether or not this read completes it, so what
    /// becomes of a message never depends on how the bytes were cut; `length` counts the type byte.
    public mutating func process(_ input: ByteBuffer, admit: (UInt8, Int) -> Admission, _ emit: (Event) throws -> Void) throws {
        var buffer: ByteBuffer
        let owned: Bool
        if var held = partial {
            partial = nil  // drop our reference first so the append below does not copy on write
            held.writeImmutableBuffer(input)
            buffer = held
            owned = true
        } else {
            buffer = input
            owned = false
        }
        reading: while buffer.readableBytes > 0 {
            if skipRemaining > 0 {
                let length = min(skipRemaining, buffer.readableBytes)
                skipRemaining -= length
                buffer.moveReaderIndex(forwardBy: length)
                continue
            }
            if streamRemaining > 0 {
                let length = min(streamRemaining, buffer.readableBytes)
                streamRemaining -= length
                try emit(.streamBody(buffer.readSlice(length: length)!, isLast: streamRemaining == 0))
                continue
            }
            guard let (id, length) = buffer.peekFrameHeader() else { break }
            guard length >= 4 else { throw FrameDecodingError.invalidLength(length) }
            guard Int(length) <= maximumLength else {
                throw FrameDecodingError.messageTooLarge(length: Int(length), limit: maximumLength)
            }
            let total = Int(length) + 1
            if total > streamingThreshold, admittedLength == nil {
                switch admit(id, total) {
                case .whole:
                    admittedLength = total
                case .stream where buffer.readableBytes < total:
                    streamRemaining = total - buffer.readableBytes
                    try emit(.streamStart(id: id, bytes: buffer.readSlice(length: buffer.readableBytes)!))
                    continue
                case .stream:
                    admittedLength = total  // all here already: as cheap whole
                case .notYet:
                    break reading
                case .refuse:
                    skipRemaining = total
                    try emit(.refused(id: id, length: total))
                    continue
                }
            }
            guard buffer.readableBytes >= total else { break }
            admittedLength = nil
            try emit(.message(WireMessage(id: id, bytes: buffer.readSlice(length: total)!)))
        }
        if buffer.readableBytes > 0 {
            // Sized once for an admitted message: growing by doubling would briefly hold up to twice it.
            // A few bytes left in the storage of a large message just emitted move out, not to pin it.
            let capacity = max(buffer.readableBytes, admittedLength ?? 4096)
            if owned, buffer.capacity - buffer.readerIndex >= capacity, buffer.capacity <= max(2 * capacity, 1 << 20) {
                buffer.discardReadBytes()
                partial = buffer
            } else {
                // Own the leftover: keeping a slice would pin the whole receive buffer.
                var held = ByteBufferAllocator().buffer(capacity: capacity)
                held.writeImmutableBuffer(buffer)
                partial = held
            }
        }
    }
}
