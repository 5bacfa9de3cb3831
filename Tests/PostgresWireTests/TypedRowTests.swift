import NIOCore
import Testing
@testable import PostgresWire

/// RowDescription and DataRow for Switchyard's own result sets, in the result formats a Bind asked for.
@Suite struct TypedRowTests {
    struct Truncated: Error {}

    /// The one message in `buffer`, checked for its type byte and length word; returns its body.
    func messageBody(of buffer: ByteBuffer, id: UInt8, sourceLocation: SourceLocation = #_sourceLocation) throws -> ByteBuffer {
        var buffer = buffer
        var decoder = FrameDecoder(maximumLength: 1 << 20)
        guard let frame = try decoder.decode(buffer: &buffer) else { throw Truncated() }
        #expect(frame.id == id, sourceLocation: sourceLocation)
        #expect(buffer.readableBytes == 0, "exactly one message", sourceLocation: sourceLocation)
        return frame.body
    }

    /// A DataRow's column values: nil for NULL, else the raw bytes.
    func columns(ofDataRow values: [ColumnValue], formats: [Int16]) throws -> [[UInt8]?] {
        var buffer = ByteBuffer()
        BackendMessage.dataRow(values, formats: formats, into: &buffer)
        var body = try messageBody(of: buffer, id: BackendMessageID.dataRow)
        guard let count = body.readInteger(as: Int16.self) else { throw Truncated() }
        var result: [[UInt8]?] = []
        for _ in 0..<count {
            guard let length = body.readInteger(as: Int32.self) else { throw Truncated() }
            if length == -1 {
                result.append(nil)
            } else {
                guard let bytes = body.readBytes(length: Int(length)) else { throw Truncated() }
                result.append(bytes)
            }
        }
        #expect(body.readableBytes == 0)
        return result
    }

    struct Field: Equatable {
        var name: String
        var tableOID: Int32
        var columnNumber: Int16
        var typeOID: Int32
        var typeSize: Int16
        var typeModifier: Int32
        var format: Int16
    }

    func fields(ofRowDescription columns: [(name: String, type: ColumnType)], formats: [Int16]) throws -> [Field] {
        var buffer = ByteBuffer()
        BackendMessage.rowDescription(columns: columns, formats: formats, into: &buffer)
        var body = try messageBody(of: buffer, id: BackendMessageID.rowDescription)
        guard let count = body.readInteger(as: Int16.self) else { throw Truncated() }
        var fields: [Field] = []
        for _ in 0..<count {
            guard let name = body.readNullTerminatedString(),
                  let tableOID = body.readInteger(as: Int32.self), let columnNumber = body.readInteger(as: Int16.self),
                  let typeOID = body.readInteger(as: Int32.self), let typeSize = body.readInteger(as: Int16.self),
                  let typeModifier = body.readInteger(as: Int32.self), let format = body.readInteger(as: Int16.self)
            else { throw Truncated() }
            fields.append(Field(name: name, tableOID: tableOID, columnNumber: columnNumber, typeOID: typeOID,
                                typeSize: typeSize, typeModifier: typeModifier, format: format))
        }
        #expect(body.readableBytes == 0)
        return fields
    }

    // MARK: DataRow

    @Test func int8InBinaryIsEightBytesBigEndian() throws {
        let row = try columns(ofDataRow: [.integer(42), .integer(-2), .integer(0x0102_0304_0506_0708)], formats: [1])
        #expect(row == [
            [0, 0, 0, 0, 0, 0, 0, 42],
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE],
            [1, 2, 3, 4, 5, 6, 7, 8],
        ])
    }

    @Test func float8InBinaryIsTheIEEEBitPatternBigEndian() throws {
        let row = try columns(ofDataRow: [.double(1.5), .double(-0.25)], formats: [1])
        #expect(row == [
            [0x3F, 0xF8, 0, 0, 0, 0, 0, 0],
            [0xBF, 0xD0, 0, 0, 0, 0, 0, 0],
        ])
    }

    @Test func textFormatWritesDecimalText() throws {
        let row = try columns(ofDataRow: [.integer(42), .integer(-7), .double(1.5), .double(2.0 / 3.0), .text("héllo")], formats: [])
        #expect(row == [Array("42".utf8), Array("-7".utf8), Array("1.5".utf8), Array("0.667".utf8), Array("héllo".utf8)])
        let explicitText = try columns(ofDataRow: [.integer(1234567890123)], formats: [0])
        #expect(explicitText == [Array("1234567890123".utf8)])
    }

    @Test func nullIsLengthMinusOneInEveryFormat() throws {
        for formats: [Int16] in [[], [0], [1]] {
            var buffer = ByteBuffer()
            BackendMessage.dataRow([.null, .integer(1), .null], formats: formats, into: &buffer)
            let body = try messageBody(of: buffer, id: BackendMessageID.dataRow)
            let start = body.readerIndex
            let integerLength = formats == [1] ? 8 : 1
            #expect(body.getInteger(at: start, as: Int16.self) == 3)
            #expect(body.getInteger(at: start + 2, as: Int32.self) == -1)
            #expect(body.getInteger(at: start + 6, as: Int32.self) == Int32(integerLength))
            #expect(body.getInteger(at: start + 10 + integerLength, as: Int32.self) == -1)
            #expect(body.readableBytes == 14 + integerLength)
        }
    }

    @Test func textValuesAreTheirBytesInBinaryToo() throws {
        let row = try columns(ofDataRow: [.text("primary"), .text("")], formats: [1])
        #expect(row == [Array("primary".utf8), []])
    }

    @Test func perColumnFormatsApplyColumnByColumn() throws {
        let row = try columns(ofDataRow: [.integer(5), .integer(5), .double(0.5), .integer(5)], formats: [0, 1, 1])
        #expect(row == [
            Array("5".utf8),
            [0, 0, 0, 0, 0, 0, 0, 5],
            [0x3F, 0xE0, 0, 0, 0, 0, 0, 0],
            Array("5".utf8), // no format given for this column: text
        ])
    }

    @Test func wholeMessageBytes() {
        var buffer = ByteBuffer()
        BackendMessage.dataRow([.integer(1), .null, .text("ab")], formats: [1], into: &buffer)
        #expect(Array(buffer.readableBytesView) == [
            UInt8(ascii: "D"), 0, 0, 0, 28,  // type, length (4 + 2 + 12 + 4 + 6)
            0, 3,                             // three columns
            0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1,
            0xFF, 0xFF, 0xFF, 0xFF,
            0, 0, 0, 2, UInt8(ascii: "a"), UInt8(ascii: "b"),
        ])
    }

    @Test func legacyTextDataRowMatchesTypedText() {
        var legacy = ByteBuffer(), typed = ByteBuffer()
        BackendMessage.dataRow(["x", nil, "42"], into: &legacy)
        BackendMessage.dataRow([.text("x"), .null, .text("42")], formats: [], into: &typed)
        #expect(legacy == typed)
    }

    // MARK: RowDescription

    @Test func rowDescriptionCarriesTypesAndFormats() throws {
        let columns: [(name: String, type: ColumnType)] = [("name", .text), ("port", .int8), ("lag_seconds", .float8)]
        let binary = try fields(ofRowDescription: columns, formats: [1])
        #expect(binary == [
            Field(name: "name", tableOID: 0, columnNumber: 0, typeOID: 25, typeSize: -1, typeModifier: -1, format: 1),
            Field(name: "port", tableOID: 0, columnNumber: 0, typeOID: 20, typeSize: 8, typeModifier: -1, format: 1),
            Field(name: "lag_seconds", tableOID: 0, columnNumber: 0, typeOID: 701, typeSize: 8, typeModifier: -1, format: 1),
        ])
        let text = try fields(ofRowDescription: columns, formats: [])
        #expect(text.map(\.format) == [0, 0, 0])
        #expect(text.map(\.typeOID) == [25, 20, 701])
        let mixed = try fields(ofRowDescription: columns, formats: [1, 0])
        #expect(mixed.map(\.format) == [1, 0, 0])
    }

    @Test func textOnlyRowDescriptionIsAllText() throws {
        var legacy = ByteBuffer(), typed = ByteBuffer()
        BackendMessage.rowDescription(columns: ["a", "b"], into: &legacy)
        BackendMessage.rowDescription(columns: [("a", .text), ("b", .text)], formats: [], into: &typed)
        #expect(legacy == typed)
    }

    // MARK: Values

    @Test func formatCodeSelection() {
        #expect(ColumnValue.format(at: 0, in: []) == 0)
        #expect(ColumnValue.format(at: 5, in: []) == 0)
        #expect(ColumnValue.format(at: 5, in: [1]) == 1)
        #expect(ColumnValue.format(at: 1, in: [0, 1]) == 1)
        #expect(ColumnValue.format(at: 2, in: [0, 1]) == 0)
    }

    @Test func textValues() {
        #expect(ColumnValue.null.textValue == nil)
        #expect(ColumnValue.text("x").textValue == "x")
        #expect(ColumnValue.integer(-12).textValue == "-12")
        #expect(ColumnValue.double(1.23456).textValue == "1.235")
        #expect(ColumnValue.double(3).textValue == "3.0")
        #expect(ColumnValue.double(.nan).textValue == "NaN")
    }

    /// Postgres prints float8 infinities as "Infinity" / "-Infinity"; the binary form below already carries them.
    @Test
    func infiniteDoublesPrintAsInfinity() throws {
        #expect(ColumnValue.double(.infinity).textValue == "Infinity")
        #expect(ColumnValue.double(-.infinity).textValue == "-Infinity")
    }

    @Test func infiniteDoublesInBinaryKeepTheirBitPattern() throws {
        let row = try columns(ofDataRow: [.double(.infinity), .double(-.infinity)], formats: [1])
        #expect(row == [[0x7F, 0xF0, 0, 0, 0, 0, 0, 0], [0xFF, 0xF0, 0, 0, 0, 0, 0, 0]])
    }

    @Test func columnTypeOIDs() {
        #expect(ColumnType.text.oid == 25)
        #expect(ColumnType.int8.oid == 20)
        #expect(ColumnType.float8.oid == 701)
        #expect(ColumnType.text.size == -1)
        #expect(ColumnType.int8.size == 8)
        #expect(ColumnType.float8.size == 8)
    }
}
