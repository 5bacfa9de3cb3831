import NIOCore

/// A message whose last byte the scanner has just passed.
public struct ScannedMessage: Sendable, Equatable {
    /// The message type byte.
    public var id: UInt8
    /// The first body byte (the ReadyForQuery status, for example), if the body is not empty.
    public var firstBodyByte: UInt8?
    /// Offset, relative to the scanned buffer's reader index, just past the message's last byte.
    public var endOffset: Int
    /// True when the message started in this buffer (its header was not split from an earlier read).
    public var startedInThisBuffer: Bool
    /// The body, for the message types the scanner was asked to capture (small ones only).
    public var body: ByteBuffer?
    /// The whole message's length in bytes, type byte and length word included.
    public var length: Int = 0
}

/// Finds message boundaries in a byte stream without buffering or decoding message bodies.
///
/// This is the relay's hot path. The relay forwards each received `ByteBuffer` whole (zero
/// copies) and only needs to know *which* messages went by, so the scanner walks length words
/// and remembers, across reads, the few header bytes of a message that straddles two reads.
/// A 100 MB DataRow therefore costs one counter, never 100 MB of memory.
public struct MessageBoundaryScanner: Sendable {
    public let maximumLength: Int
    /// Message types whose bodies are handed over (ParameterStatus, say). Bodies over
    /// ``maximumCapturedLength`` are not: capturing is for small control messages only.
    public var capturedIDs: [UInt8] = []
    public static let maximumCapturedLength = 16 * 1024
    private var capture: [UInt8]?
    private var header: (UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0)
    private var headerCount = 0
    /// Body bytes of the current message still to come.
    private var remainingBody = 0
    private var firstBodyByte: UInt8?
    private var inBody = false
    private var messageStartedInThisBuffer = false

    public init(maximumLength: Int) {
        self.maximumLength = maximumLength
    }

    /// True when the stream is between two messages.
    public var isAtMessageBoundary: Bool { headerCount == 0 && !inBody }

    /// Scans `buffer`'s readable bytes, calling `onMessage` as each message ends.
    ///
    /// - Throws: ``FrameDecodingError`` when a length word is invalid or over the limit.
    public mutating func scan(_ buffer: ByteBuffer, _ onMessage: (ScannedMessage) throws -> Void) throws {
        try buffer.withUnsafeReadableBytes { bytes in
            try self.scan(bytes, onMessage)
        }
    }

    mutating func scan(_ bytes: UnsafeRawBufferPointer, _ onMessage: (ScannedMessage) throws -> Void) throws {
        var offset = 0
        let count = bytes.count
        messageStartedInThisBuffer = false
        while offset < count {
            if inBody {
                if firstBodyByte == nil { firstBodyByte = bytes[offset] }
                let step = min(remainingBody, count - offset)
                capture?.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + step)]))
                offset += step
                remainingBody -= step
                if remainingBody == 0 {
                    try finishMessage(endOffset: offset, onMessage)
                }
                continue
            }
            // Fast path: a whole header is available in this buffer.
            if headerCount == 0, count - offset >= 5 {
                messageStartedInThisBuffer = true
                let id = bytes[offset]
                let length = Int32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset + 1, as: Int32.self))
                offset += 5
                try beginBody(id: id, length: length)
            } else {
                if headerCount == 0 { messageStartedInThisBuffer = true }
                setHeaderByte(bytes[offset], at: headerCount)
                headerCount += 1
                offset += 1
                if headerCount == 5 {
                    let length = Int32(bitPattern: UInt32(header.1) << 24 | UInt32(header.2) << 16 | UInt32(header.3) << 8 | UInt32(header.4))
                    headerCount = 0
                    try beginBody(id: header.0, length: length)
                }
            }
            if inBody, remainingBody == 0 {
                try finishMessage(endOffset: offset, onMessage)
            }
        }
    }

    private var currentID: UInt8 = 0
    private var currentLength = 0

    mutating func beginBody(id: UInt8, length: Int32) throws {
        guard length >= 4 else { throw FrameDecodingError.invalidLength(length) }
        guard Int(length) <= maximumLength else {
            throw FrameDecodingError.messageTooLarge(length: Int(length), limit: maximumLength)
        }
        currentID = id
        currentLength = Int(length) + 1
        remainingBody = Int(length) - 4
        firstBodyByte = nil
        inBody = true
        capture = remainingBody <= Self.maximumCapturedLength && capturedIDs.contains(id) ? [] : nil
        capture?.reserveCapacity(remainingBody)
    }

    mutating func finishMessage(endOffset: Int, _ onMessage: (ScannedMessage) throws -> Void) throws {
        inBody = false
        let message = ScannedMessage(
            id: currentID, firstBodyByte: firstBodyByte, endOffset: endOffset,
            startedInThisBuffer: messageStartedInThisBuffer, body: capture.map { ByteBuffer(bytes: $0) }, length: currentLength)
        messageStartedInThisBuffer = false
        capture = nil
        try onMessage(message)
    }

    mutating func setHeaderByte(_ byte: UInt8, at index: Int) {
        switch index {
        case 0: header.0 = byte
        case 1: header.1 = byte
        case 2: header.2 = byte
        case 3: header.3 = byte
        default: header.4 = byte
        }
    }
}
