import NIOCore

/// Splits a client's byte stream into messages for the relay: small messages whole (as
/// zero-copy slices when a read holds them entirely), large ones either whole or, when the
/// relay says it need not look inside them, streamed through in chunks as they arrive, so a
/// 100 MB Query or COPY row never has to sit in memory.
public struct ClientMessageStream: Sendable {
    public enum Event: Sendable {
        /// A complete message.
        case message(WireMessage)
        /// The start of a streamed message: its type and its first bytes (header included).
        case streamStart(id: UInt8, bytes: ByteBuffer)
        /// More bytes of the streamed message; `isLast` when it is complete.
        case streamBody(ByteBuffer, isLast: Bool)
    }

    public let maximumLength: Int
    /// Messages at most this long are always delivered whole.
    public let streamingThreshold: Int
    private var partial: ByteBuffer?
    private var streamRemaining = 0

    public init(maximumLength: Int, streamingThreshold: Int = 64 * 1024) {
        self.maximumLength = maximumLength
        self.streamingThreshold = streamingThreshold
    }

    /// A streamed message is partway through: the server waits for the rest of it.
    public var isStreaming: Bool { streamRemaining > 0 }

    /// Bytes held for an incomplete message that is not being streamed.
    public var bufferedBytes: Int { partial?.readableBytes ?? 0 }

    /// Feeds one read. `mayStream(id)` is asked once per large message, when its header arrives.
    public mutating func process(_ input: ByteBuffer, mayStream: (UInt8) -> Bool, _ emit: (Event) throws -> Void) throws {
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
        while buffer.readableBytes > 0 {
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
            if buffer.readableBytes >= total {
                try emit(.message(WireMessage(id: id, bytes: buffer.readSlice(length: total)!)))
            } else if total > streamingThreshold, mayStream(id) {
                streamRemaining = total - buffer.readableBytes
                try emit(.streamStart(id: id, bytes: buffer.readSlice(length: buffer.readableBytes)!))
            } else {
                break
            }
        }
        if buffer.readableBytes > 0 {
            if owned {
                buffer.discardReadBytes()
                partial = buffer
            } else {
                // Own the leftover: keeping a slice would pin the whole receive buffer.
                var held = ByteBufferAllocator().buffer(capacity: max(buffer.readableBytes, 4096))
                held.writeImmutableBuffer(buffer)
                partial = held
            }
        }
    }
}
