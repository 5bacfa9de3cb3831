import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One complete typed protocol message: its type byte and its body (without the length word).
///
/// Used on the cold paths (authentication, backend start-up, admin console), where whole
/// messages are small. The relay's hot path never builds frames: see ``MessageBoundaryScanner``.
public struct Frame: Sendable, Equatable {
    public var id: UInt8
    public var body: ByteBuffer

    public init(id: UInt8, body: ByteBuffer) {
        self.id = id
        self.body = body
    }
}

public enum FrameDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidLength(Int32)
    case messageTooLarge(length: Int, limit: Int)

    public var description: String {
        switch self {
        case .invalidLength(let length): return "invalid message length \(length)"
        case .messageTooLarge(let length, let limit): return "message of \(length) bytes exceeds the limit of \(limit) bytes"
        }
    }
}

/// Decodes typed messages (`id`, `Int32 length`, body) and enforces a maximum length before
/// buffering, so a hostile peer cannot make us allocate what it merely announces.
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = Frame
    public let maximumLength: Int

    public init(maximumLength: Int) {
        self.maximumLength = maximumLength
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> Frame? {
        guard let (id, length) = buffer.peekFrameHeader() else { return nil }
        guard length >= 4 else { throw FrameDecodingError.invalidLength(length) }
        guard Int(length) <= maximumLength else {
            throw FrameDecodingError.messageTooLarge(length: Int(length), limit: maximumLength)
        }
        guard buffer.readableBytes >= Int(length) + 1 else { return nil }
        buffer.moveReaderIndex(forwardBy: 5)
        let body = buffer.readSlice(length: Int(length) - 4)!
        return Frame(id: id, body: body)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> Frame? {
        try decode(buffer: &buffer)
    }
}

extension ByteBuffer {
    /// The type byte and length word of the message at the reader index, if five bytes are there.
    @inlinable
    public func peekFrameHeader() -> (UInt8, Int32)? {
        guard let id = getInteger(at: readerIndex, as: UInt8.self),
              let length = getInteger(at: readerIndex + 1, as: Int32.self) else { return nil }
        return (id, length)
    }

    /// Writes a typed message: the type byte, a length placeholder, the body, then patches the length.
    @inlinable
    public mutating func writeMessage(id: UInt8, _ body: (inout ByteBuffer) -> Void) {
        writeInteger(id)
        let lengthIndex = writerIndex
        writeInteger(Int32(0))
        body(&self)
        setInteger(Int32(writerIndex - lengthIndex), at: lengthIndex)
    }
}

/// One complete message as it appeared on the wire, header included, so the relay can forward
/// it as a zero-copy slice and still read its body when it needs to (SQL text, statement names).
public struct WireMessage: Sendable, Equatable {
    public var id: UInt8
    /// The whole message: type byte, length word and body.
    public var bytes: ByteBuffer

    public init(id: UInt8, bytes: ByteBuffer) {
        self.id = id
        self.bytes = bytes
    }

    /// The body, without type byte and length word.
    public var body: ByteBuffer { bytes.getSlice(at: bytes.readerIndex + 5, length: bytes.readableBytes - 5)! }

    /// Builds a message from a body writer (for messages Switchyard composes itself).
    public static func make(id: UInt8, allocator: ByteBufferAllocator = ByteBufferAllocator(), _ body: (inout ByteBuffer) -> Void) -> WireMessage {
        var buffer = allocator.buffer(capacity: 64)
        buffer.writeMessage(id: id, body)
        return WireMessage(id: id, bytes: buffer)
    }
}

extension ByteBuffer {
    /// Where the first `byte` at or after `offset` is, counted from the reader index. With memchr: the
    /// relay looks for the end of a 300 MB statement in milliseconds, not the second a byte loop takes
    /// while every other client on its event loop waits.
    public func readableOffset(of byte: UInt8, from offset: Int = 0) -> Int? {
        withUnsafeReadableBytes { raw -> Int? in
            guard offset >= 0, offset < raw.count, let base = raw.baseAddress else { return nil }
            guard let hit = memchr(base + offset, Int32(byte), raw.count - offset) else { return nil }
            return UnsafeRawPointer(hit) - base
        }
    }
}
