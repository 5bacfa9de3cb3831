import NIOCore
import Testing
@testable import PostgresWire

/// The relay's client framing: small messages whole, large ones as the relay admits them.
@Suite struct ClientMessageStreamTests {
    static func message(_ id: Character, bodyLength: Int) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeMessage(id: UInt8(ascii: id.unicodeScalars.first!)) { $0.writeRepeatingByte(0x61, count: bodyLength) }
        return buffer
    }

    enum Seen: Equatable { case message(UInt8, Int), start(UInt8, Int), body(Int, last: Bool), refused(UInt8, Int) }

    static func feed(_ stream: inout ClientMessageStream, _ buffer: ByteBuffer, mayStream: Bool) throws -> [Seen] {
        try feed(&stream, buffer, admission: mayStream ? .stream : .whole)
    }

    static func feed(_ stream: inout ClientMessageStream, _ buffer: ByteBuffer, admission: ClientMessageStream.Admission,
                     asked: inout [Int]) throws -> [Seen] {
        var seen: [Seen] = []
        try stream.process(buffer, admit: { _, length in asked.append(length); return admission }) { event in
            switch event {
            case .message(let message): seen.append(.message(message.id, message.bytes.readableBytes))
            case .streamStart(let id, let bytes): seen.append(.start(id, bytes.readableBytes))
            case .streamBody(let bytes, let isLast): seen.append(.body(bytes.readableBytes, last: isLast))
            case .refused(let id, let length): seen.append(.refused(id, length))
            }
        }
        return seen
    }

    static func feed(_ stream: inout ClientMessageStream, _ buffer: ByteBuffer, admission: ClientMessageStream.Admission) throws -> [Seen] {
        var asked: [Int] = []
        return try feed(&stream, buffer, admission: admission, asked: &asked)
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

    @Test func aRefusedMessageIsSkippedWhateverTheReadsAndTheNextOneComesWhole() throws {
        let refused = Self.message("P", bodyLength: 300)  // 305 bytes
        let after = Self.message("S", bodyLength: 0)
        var all = refused
        all.writeImmutableBuffer(after)
        // Read whole: refused although complete, so the outcome does not depend on how reads were cut.
        var whole = ClientMessageStream(maximumLength: 1 << 20, streamingThreshold: 100)
        #expect(try Self.feed(&whole, all, admission: .refuse) == [.refused(UInt8(ascii: "P"), 305), .message(UInt8(ascii: "S"), 5)])
        // Cut into 7-byte reads: the same events, and nothing of the refused message is held.
        var split = ClientMessageStream(maximumLength: 1 << 20, streamingThreshold: 100)
        var seen: [Seen] = []
        var rest = all
        while let read = rest.readSlice(length: min(7, rest.readableBytes)), read.readableBytes > 0 {
            seen += try Self.feed(&split, read, admission: .refuse)
            #expect(split.bufferedBytes < 7)
        }
        #expect(seen == [.refused(UInt8(ascii: "P"), 305), .message(UInt8(ascii: "S"), 5)])
        #expect(!split.isSkipping && split.bufferedBytes == 0)
    }

    @Test func aMessageNotYetAdmittedIsHeldAndAskedAboutAgain() throws {
        var stream = ClientMessageStream(maximumLength: 1 << 20, streamingThreshold: 100)
        var whole = Self.message("P", bodyLength: 300)
        let first = whole.readSlice(length: 50)!
        var asked: [Int] = []
        #expect(try Self.feed(&stream, first, admission: .notYet, asked: &asked).isEmpty)
        #expect(asked == [305] && stream.bufferedBytes == 50)
        // Retried with no new bytes (room came): admitted now, and asked no more for this message.
        #expect(try Self.feed(&stream, ByteBuffer(), admission: .whole, asked: &asked).isEmpty)
        #expect(try Self.feed(&stream, whole, admission: .refuse, asked: &asked) == [.message(UInt8(ascii: "P"), 305)])
        #expect(asked == [305, 305])
    }

    @Test func smallMessagesAreNeverAskedAbout() throws {
        var stream = ClientMessageStream(maximumLength: 1 << 20, streamingThreshold: 100)
        var asked: [Int] = []
        #expect(try Self.feed(&stream, Self.message("Q", bodyLength: 95), admission: .refuse, asked: &asked) == [.message(UInt8(ascii: "Q"), 100)])
        #expect(asked.isEmpty)
    }
}
