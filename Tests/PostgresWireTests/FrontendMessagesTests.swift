import NIOCore
import Testing
@testable import PostgresWire

@Suite struct FrontendMessagesTests {
    func message(_ id: UInt8, _ body: (inout ByteBuffer) -> Void) -> WireMessage {
        WireMessage.make(id: id, body)
    }

    func parse(_ name: String, _ sql: String, types: [Int32] = []) -> WireMessage {
        message(FrontendMessageID.parse) { body in
            body.writeNullTerminatedString(name)
            body.writeNullTerminatedString(sql)
            body.writeInteger(Int16(types.count))
            for type in types { body.writeInteger(type) }
        }
    }

    @Test func parseKeepsNameAndDefinition() throws {
        let wire = parse("s1", "SELECT $1", types: [23])
        let decoded = try #require(ParseMessage(wire))
        #expect(decoded.statement == "s1")
        #expect(ParseMessage.namesStatement(wire))
        #expect(!ParseMessage.namesStatement(parse("", "SELECT 1")))
        #expect(String(buffer: try #require(wire.statementText)) == "SELECT $1")
        // Re-encoding under another name keeps text and parameter types.
        var renamed = ByteBuffer()
        ParseMessage.encode(statement: "sy_x", definition: decoded.definition, into: &renamed)
        let again = try #require(ParseMessage(WireMessage(id: FrontendMessageID.parse, bytes: renamed)))
        #expect(again.statement == "sy_x")
        #expect(again.definition == decoded.definition)
    }

    @Test func statementTextOfQueryAndOthers() throws {
        let query = message(FrontendMessageID.query) { $0.writeNullTerminatedString("SELECT 2") }
        #expect(String(buffer: try #require(query.statementText)) == "SELECT 2")
        #expect(message(FrontendMessageID.sync) { _ in }.statementText == nil)
        // No terminating NUL: malformed, so no text.
        #expect(message(FrontendMessageID.query) { $0.writeString("SELECT") }.statementText == nil)
        #expect(ParseMessage(message(FrontendMessageID.parse) { $0.writeString("s") }) == nil)
    }

    func bind(portal: String = "", statement: String, formats: [Int16] = [], values: [String?], results: [Int16] = [],
              trailing: [UInt8] = []) -> WireMessage {
        message(FrontendMessageID.bind) { body in
            body.writeNullTerminatedString(portal)
            body.writeNullTerminatedString(statement)
            body.writeInteger(Int16(formats.count))
            for format in formats { body.writeInteger(format) }
            body.writeInteger(Int16(values.count))
            for value in values {
                if let value { body.writeInteger(Int32(value.utf8.count)); body.writeString(value) } else { body.writeInteger(Int32(-1)) }
            }
            body.writeInteger(Int16(results.count))
            for format in results { body.writeInteger(format) }
            body.writeBytes(trailing)
        }
    }

    @Test func bindDecodesParametersWithNulls() throws {
        let wire = bind(portal: "p", statement: "s", formats: [0], values: ["42", nil, ""], results: [1, 0])
        let decoded = try #require(BindMessage(wire))
        #expect(decoded.portal == "p" && decoded.statement == "s")
        let parameters = try #require(decoded.decodeParameters())
        #expect(parameters.formats == [0])
        #expect(parameters.values.map { $0.map { String(buffer: $0) } } == ["42", nil, ""])
        #expect(parameters.resultFormats == [1, 0])
    }

    @Test func bindRenameKeepsTheRest() throws {
        let decoded = try #require(BindMessage(bind(portal: "p", statement: "mine", values: ["1"], results: [1])))
        var renamed = ByteBuffer()
        decoded.encode(statement: "sy_abc", into: &renamed)
        let again = try #require(BindMessage(WireMessage(id: FrontendMessageID.bind, bytes: renamed)))
        #expect(again.portal == "p" && again.statement == "sy_abc" && again.rest == decoded.rest)
    }

    @Test func malformedBindsAreRefused() throws {
        // Trailing bytes after the result formats.
        #expect(try #require(BindMessage(bind(statement: "s", values: [], trailing: [1]))).decodeParameters() == nil)
        // A value longer than the body.
        let short = message(FrontendMessageID.bind) { body in
            body.writeNullTerminatedString("")
            body.writeNullTerminatedString("")
            body.writeInteger(Int16(0))
            body.writeInteger(Int16(1))
            body.writeInteger(Int32(100))
            body.writeString("abc")
        }
        #expect(try #require(BindMessage(short)).decodeParameters() == nil)
        // A negative count.
        let negative = message(FrontendMessageID.bind) { body in
            body.writeNullTerminatedString("")
            body.writeNullTerminatedString("")
            body.writeInteger(Int16(-1))
        }
        #expect(try #require(BindMessage(negative)).decodeParameters() == nil)
        #expect(BindMessage(message(FrontendMessageID.bind) { $0.writeNullTerminatedString("only a portal") }) == nil)
    }

    @Test func describeAndCloseTargets() throws {
        let describe = message(FrontendMessageID.describe) { $0.writeInteger(UInt8(ascii: "S")); $0.writeNullTerminatedString("s1") }
        #expect(TargetMessage(describe) == TargetMessage(id: FrontendMessageID.describe, kind: .statement, name: "s1"))
        let close = message(FrontendMessageID.close) { $0.writeInteger(UInt8(ascii: "P")); $0.writeNullTerminatedString("") }
        #expect(TargetMessage(close) == TargetMessage(id: FrontendMessageID.close, kind: .portal, name: ""))
        let badKind = message(FrontendMessageID.close) { $0.writeInteger(UInt8(ascii: "X")); $0.writeNullTerminatedString("") }
        #expect(TargetMessage(badKind) == nil)
        #expect(TargetMessage(parse("a", "b")) == nil)
        var encoded = ByteBuffer()
        TargetMessage(id: FrontendMessageID.close, kind: .statement, name: "sy_1").encode(into: &encoded)
        #expect(TargetMessage(WireMessage(id: FrontendMessageID.close, bytes: encoded))?.name == "sy_1")
    }

    @Test func executeNamesPortalAndRowLimit() throws {
        let execute = message(FrontendMessageID.execute) { $0.writeNullTerminatedString("c1"); $0.writeInteger(Int32(50)) }
        let decoded = try #require(ExecuteMessage(execute))
        #expect(decoded.portal == "c1" && decoded.maximumRows == 50)
        #expect(ExecuteMessage(message(FrontendMessageID.execute) { $0.writeNullTerminatedString("c1") }) == nil)
    }

    /// Found by the frontend-messages fuzz target: names were UTF-8-repaired, so a Bind's portal went to
    /// the server as other bytes than the client sent, and two distinct non-UTF-8 names became one.
    @Test func namesAreKeptExactlyAsSent() throws {
        let latin1: [[UInt8]] = [[0xE9, 0x74, 0xE9], [0xFF], [0xFE], Array("plain".utf8), Array("é".utf8), [0xEF, 0xBF, 0xBD]]
        var names: Set<String> = []
        for bytes in latin1 {
            var body = ByteBuffer(bytes: bytes + [0] + Array("SELECT 1".utf8) + [0, 0, 0])
            let parse = try #require(ParseMessage(body: body))
            names.insert(parse.statement)
            var encoded = ByteBuffer()
            ParseMessage.encode(statement: parse.statement, definition: parse.definition, into: &encoded)
            #expect(Array(encoded.readableBytesView.dropFirst(5)) == Array(body.readableBytesView), "\(bytes)")
            #expect(body.readName() == parse.statement)
        }
        #expect(names.count == latin1.count, "distinct names stay distinct: \(names)")
        #expect(names.contains("plain") && names.contains("é") && names.contains("\u{FFFD}"))

        let bind = message(FrontendMessageID.bind) { body in
            body.writeBytes([0xFF, 0xFE, 0]); body.writeBytes([0x73, 0xE9, 0]); body.writeBytes([0, 0, 0, 0, 0, 0])
        }
        var renamed = ByteBuffer()
        try #require(BindMessage(bind)).encode(statement: "sy_1", into: &renamed)
        #expect(Array(renamed.readableBytesView.prefix(8).dropFirst(5)) == [0xFF, 0xFE, 0], "the portal goes to the server as sent")
    }

    /// Postgres answers a Describe, Close or Execute with bytes after its fields 08P01; decoding it
    /// would let the relay rewrite it into a valid message.
    @Test func targetAndExecuteWithTrailingBytesAreRefused() {
        let describe = message(FrontendMessageID.describe) { $0.writeInteger(UInt8(ascii: "S")); $0.writeNullTerminatedString("s1"); $0.writeInteger(UInt8(1)) }
        #expect(TargetMessage(describe) == nil)
        let execute = message(FrontendMessageID.execute) { $0.writeNullTerminatedString("c1"); $0.writeInteger(Int32(0)); $0.writeInteger(UInt8(1)) }
        #expect(ExecuteMessage(execute) == nil)
    }

    @Test func readWireMessageWaitsForWholeMessagesAndRejectsBadLengths() throws {
        var stream = ByteBuffer()
        BackendMessage.commandComplete("SELECT 1", into: &stream)
        BackendMessage.readyForQuery(.inTransaction, into: &stream)
        var partial = stream.getSlice(at: 0, length: stream.readableBytes - 1)!
        let first = try #require(try partial.readWireMessage())
        #expect(first.id == BackendMessageID.commandComplete)
        let before = partial.readerIndex
        #expect(try partial.readWireMessage() == nil)
        #expect(partial.readerIndex == before)
        let last = try #require(try stream.readWireMessage().flatMap { _ in try stream.readWireMessage() })
        #expect(last.firstBodyByte == TransactionStatus.inTransaction.rawValue)
        var bad = ByteBuffer(bytes: [UInt8(ascii: "Z"), 0, 0, 0, 3, 0])
        #expect(throws: FrameDecodingError.invalidLength(3)) { try bad.readWireMessage() }
    }

    @Test func readableOffsetCountsFromTheReaderIndex() {
        var buffer = ByteBuffer(bytes: Array("xxab\0cd;\0".utf8))
        buffer.moveReaderIndex(forwardBy: 2)
        #expect(buffer.readableOffset(of: 0) == 2)
        #expect(buffer.readableOffset(of: 0, from: 3) == 6)
        #expect(buffer.readableOffset(of: UInt8(ascii: ";")) == 5)
        #expect(buffer.readableOffset(of: UInt8(ascii: "x")) == nil, "bytes before the reader index are not looked at")
        #expect(buffer.readableOffset(of: 0, from: 7) == nil && buffer.readableOffset(of: 0, from: -1) == nil)
        let large = WireMessage.make(id: FrontendMessageID.parse) {
            $0.writeNullTerminatedString("s1")
            $0.writeNullTerminatedString("select 1 /* " + String(repeating: "x", count: 3 << 20) + " */")
            $0.writeInteger(Int16(0))
        }
        #expect(large.statementText?.readableBytes == (3 << 20) + 15)
    }
}
