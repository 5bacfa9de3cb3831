import NIOCore
import Testing
@testable import PostgresWire

/// The relay's client framing: small messages whole, large ones streamed when the relay allows it.
@Suite struct ClientMessageStreamTests {
    static func message(_ id: Character, bodyLength: Int) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeMessage(id: UInt8(ascii: id.unicodeScalars.first!)) { $0.writeRepeatingByte(0x61, count: bodyLength) }
        return buffer
    }

    enum Seen: Equatable { case message(UInt8, Int), start(UInt8, Int), body(Int, last: Bool) }

    static func feed(_ stream: inout ClientMessageStream, _ buffer: ByteBuffer, mayStream: Bool) throws -> [Seen] {
        var seen: [Seen] = []
        try stream.process(buffer, mayStream: { _ in mayStream }) { event in
            switch event {
            case .message(let message): seen.append(.message(message.id, message.bytes.readableBytes))
            case .streamStart(let id, let bytes): seen.append(.start(id, bytes.readableBytes))
            case .streamBody(let bytes, let isLast): seen.append(.body(bytes.readableBytes, last: isLast))
            }
        }
        return seen
    }

    @Test func aLargeMessageIsStreamedAndTheStreamSaysSoUntilItEnds() throws {
        var stream = ClientMessageStream(maximumLength: 1 << 20, streamingThreshold: 100)
        var whole = Self.message("Q", bodyLength: 300)  // 305 bytes
        let first = whole.readSlice(length: 50)!, second = whole.readSlice(length: 200)!, rest = whole
        #expect(try Self.feed(&stream, first, mayStream: true) == [.start(UInt8(ascii: "Q"), 50)])
        #expect(stream.isStreaming && stream.bufferedBytes == 0)
        #expect(try Self.feed(&stream, second, mayStream: true) == [.body(200, last: false)])
        #expect(stream.isStreaming)
        var tail = rest
        tail.writeImmutableBuffer(Self.message("S", bodyLength: 0))
        #expect(try Self.feed(&stream, tail, mayStream: true)
                == [.body(55, last: true), .message(UInt8(ascii: "S"), 5)])
        #expect(!stream.isStreaming)
    }

    @Test func aLargeMessageTheRelayMustReadIsHeldWhole() throws {
        var stream = ClientMessageStream(maximumLength: 1 << 20, streamingThreshold: 100)
        var whole = Self.message("P", bodyLength: 300)
        let first = whole.readSlice(length: 50)!
        #expect(try Self.feed(&stream, first, mayStream: false).isEmpty)
        #expect(!stream.isStreaming && stream.bufferedBytes == 50)
        #expect(try Self.feed(&stream, whole, mayStream: false) == [.message(UInt8(ascii: "P"), 305)])
        #expect(stream.bufferedBytes == 0)
    }

    @Test func lengthsOutOfBoundsAreErrors() {
        var stream = ClientMessageStream(maximumLength: 1024)
        #expect(throws: FrameDecodingError.messageTooLarge(length: 2004, limit: 1024)) {
            _ = try Self.feed(&stream, Self.message("Q", bodyLength: 2000), mayStream: true)
        }
        var bad = ByteBuffer(bytes: [UInt8(ascii: "Q"), 0, 0, 0, 3])
        var other = ClientMessageStream(maximumLength: 1024)
        #expect(throws: FrameDecodingError.invalidLength(3)) { _ = try Self.feed(&other, bad.readSlice(length: 5)!, mayStream: true) }
    }
}
