import NIOCore
import Testing
@testable import PostgresWire

@Suite struct MessageBoundaryScannerTests {
    /// A realistic backend stream: RowDescription-ish, two DataRows, CommandComplete, ReadyForQuery.
    func sampleStream() -> ByteBuffer {
        var buffer = ByteBuffer()
        BackendMessage.rowDescription(columns: ["a"], into: &buffer)
        BackendMessage.dataRow(["1"], into: &buffer)
        BackendMessage.dataRow([String(repeating: "x", count: 3000)], into: &buffer)
        BackendMessage.commandComplete("SELECT 2", into: &buffer)
        BackendMessage.readyForQuery(.inTransaction, into: &buffer)
        return buffer
    }

    func scan(_ chunks: [ByteBuffer]) throws -> [(UInt8, UInt8?)] {
        var scanner = MessageBoundaryScanner(maximumLength: 1 << 20)
        var seen: [(UInt8, UInt8?)] = []
        for chunk in chunks {
            try scanner.scan(chunk) { seen.append(($0.id, $0.firstBodyByte)) }
        }
        #expect(scanner.isAtMessageBoundary)
        return seen
    }

    @Test func findsEveryMessageInOneBuffer() throws {
        let seen = try scan([sampleStream()])
        #expect(seen.map(\.0) == [BackendMessageID.rowDescription, BackendMessageID.dataRow, BackendMessageID.dataRow,
                                  BackendMessageID.commandComplete, BackendMessageID.readyForQuery])
        #expect(seen.last?.1 == TransactionStatus.inTransaction.rawValue)
    }

    @Test(arguments: [1, 2, 3, 4, 5, 7, 64, 1000])
    func findsTheSameMessagesWhateverTheSplit(chunkSize: Int) throws {
        var stream = sampleStream()
        var chunks: [ByteBuffer] = []
        while stream.readableBytes > 0 {
            chunks.append(stream.readSlice(length: min(chunkSize, stream.readableBytes))!)
        }
        let whole = try scan([sampleStream()])
        let split = try scan(chunks)
        #expect(split.map(\.0) == whole.map(\.0))
        #expect(split.map(\.1) == whole.map(\.1))
    }

    @Test func reportsEndOffsetsWithinTheBuffer() throws {
        var buffer = ByteBuffer()
        FrontendMessage.query("select 1", into: &buffer)
        let queryLength = buffer.readableBytes
        FrontendMessage.terminate(into: &buffer)
        var scanner = MessageBoundaryScanner(maximumLength: 1024)
        var ends: [Int] = []
        try scanner.scan(buffer) { ends.append($0.endOffset) }
        #expect(ends == [queryLength, queryLength + 5])
    }

    @Test func isNotAtBoundaryInsideAMessage() throws {
        var buffer = ByteBuffer()
        BackendMessage.dataRow(["hello"], into: &buffer)
        var scanner = MessageBoundaryScanner(maximumLength: 1024)
        try scanner.scan(buffer.getSlice(at: 0, length: 7)!) { _ in Issue.record("message cannot end yet") }
        #expect(!scanner.isAtMessageBoundary)
    }

    @Test func rejectsOversizedAndInvalidLengths() {
        var scanner = MessageBoundaryScanner(maximumLength: 100)
        var big = ByteBuffer()
        big.writeInteger(UInt8(ascii: "d")); big.writeInteger(Int32(101))
        #expect(throws: FrameDecodingError.messageTooLarge(length: 101, limit: 100)) { try scanner.scan(big) { _ in } }
        var negative = ByteBuffer()
        negative.writeInteger(UInt8(ascii: "d")); negative.writeInteger(Int32(2))
        var other = MessageBoundaryScanner(maximumLength: 100)
        #expect(throws: FrameDecodingError.invalidLength(2)) { try other.scan(negative) { _ in } }
    }
}
