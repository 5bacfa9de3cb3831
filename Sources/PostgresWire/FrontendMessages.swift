import NIOCore

/// Decoded views of the client messages that the relay and the admin console look into.
///
/// Each decodes from a ``WireMessage`` (or a body) and keeps SQL text and parameter bytes as
/// slices of it, so looking costs no copy. Names are `String`s: the short names drivers use
/// (`""`, `_pg3_0`, `s12`) fit Swift's inline small-string storage and allocate nothing.

/// Where the SQL text of a Query or Parse sits, without reading anything else.
extension WireMessage {
    /// The SQL text of a Query or Parse (a slice, without its terminating NUL); nil for other types
    /// and for a malformed body.
    public var statementText: ByteBuffer? {
        let body = self.body
        var start = 0
        switch id {
        case FrontendMessageID.parse:
            guard let nameEnd = body.readableOffset(of: 0) else { return nil }
            start = nameEnd + 1
        case FrontendMessageID.query:
            break
        default:
            return nil
        }
        guard let end = body.readableOffset(of: 0, from: start) else { return nil }
        return body.getSlice(at: body.readerIndex + start, length: end - start)
    }

    /// The first body byte: ReadyForQuery's transaction status, for example.
    public var firstBodyByte: UInt8? {
        bytes.readableBytes > 5 ? bytes.getInteger(at: bytes.readerIndex + 5, as: UInt8.self) : nil
    }
}

/// Parse (`P`): a statement name, its SQL text, and its parameter types.
public struct ParseMessage: Sendable, Equatable {
    public var statement: String
    /// The body after the statement name: SQL text, NUL, parameter count and type OIDs; what
    /// a Parse of the same statement under another name carries.
    public var definition: ByteBuffer

    public init?(_ message: WireMessage) {
        guard message.id == FrontendMessageID.parse else { return nil }
        self.init(body: message.body)
    }

    public init?(body: ByteBuffer) {
        var body = body
        guard let statement = body.readName() else { return nil }
        self.statement = statement
        self.definition = body
    }

    /// Whether a Parse names its statement, read from one byte without decoding the name.
    public static func namesStatement(_ message: WireMessage) -> Bool {
        message.id == FrontendMessageID.parse && message.firstBodyByte.map { $0 != 0 } == true
    }

    /// Writes a Parse of `definition` under `statement`.
    public static func encode(statement: String, definition: ByteBuffer, into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: FrontendMessageID.parse) { body in
            body.writeName(statement)
            body.writeImmutableBuffer(definition)
        }
    }
}

/// Bind (`B`): a portal, the statement it binds, and the parameters and result formats.
public struct BindMessage: Sendable, Equatable {
    public var portal: String
    public var statement: String
    /// The body after the two names: parameter formats, values and result formats, undecoded.
    public var rest: ByteBuffer

    public init?(_ message: WireMessage) {
        guard message.id == FrontendMessageID.bind else { return nil }
        self.init(body: message.body)
    }

    public init?(body: ByteBuffer) {
        var body = body
        guard let portal = body.readName(), let statement = body.readName() else { return nil }
        self.portal = portal
        self.statement = statement
        self.rest = body
    }

    /// The parameters and result formats, fully decoded and checked (the rest of the body must
    /// hold exactly what its counts announce).
    public struct Parameters: Sendable, Equatable {
        public var formats: [Int16]
        /// Each value's bytes as a slice; nil is SQL NULL (length -1).
        public var values: [ByteBuffer?]
        public var resultFormats: [Int16]
    }

    public func decodeParameters() -> Parameters? {
        var body = rest
        guard let formats = Self.readFormats(&body), let count = body.readInteger(as: Int16.self), count >= 0 else { return nil }
        var values: [ByteBuffer?] = []
        values.reserveCapacity(Int(count))
        for _ in 0..<count {
            guard let length = body.readInteger(as: Int32.self) else { return nil }
            if length == -1 {
                values.append(nil)
            } else {
                guard length >= 0, let value = body.readSlice(length: Int(length)) else { return nil }
                values.append(value)
            }
        }
        guard let resultFormats = Self.readFormats(&body), body.readableBytes == 0 else { return nil }
        return Parameters(formats: formats, values: values, resultFormats: resultFormats)
    }

    private static func readFormats(_ body: inout ByteBuffer) -> [Int16]? {
        guard let count = body.readInteger(as: Int16.self), count >= 0, body.readableBytes >= Int(count) * 2 else { return nil }
        return (0..<count).map { _ in body.readInteger(as: Int16.self)! }
    }

    /// Writes this Bind with its statement renamed to `statement`, the rest unchanged.
    public func encode(statement: String, into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: FrontendMessageID.bind) { body in
            body.writeName(portal)
            body.writeName(statement)
            body.writeImmutableBuffer(rest)
        }
    }
}

/// Describe (`D`) and Close (`C`): whether they name a prepared statement or a portal, and its name.
public struct TargetMessage: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case statement = 0x53  // 'S'
        case portal = 0x50     // 'P'
    }

    /// `FrontendMessageID.describe` or `.close`.
    public var id: UInt8
    public var kind: Kind
    public var name: String

    public init(id: UInt8, kind: Kind, name: String) {
        self.id = id
        self.kind = kind
        self.name = name
    }

    public init?(_ message: WireMessage) {
        self.init(id: message.id, body: message.body)
    }

    public init?(id: UInt8, body: ByteBuffer) {
        guard id == FrontendMessageID.describe || id == FrontendMessageID.close else { return nil }
        var body = body
        // Nothing may follow the name: Postgres answers such a message 08P01, so the relay must not
        // rewrite it into a valid one.
        guard let byte = body.readInteger(as: UInt8.self), let kind = Kind(rawValue: byte),
              let name = body.readName(), body.readableBytes == 0 else { return nil }
        self.init(id: id, kind: kind, name: name)
    }

    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: id) { body in
            body.writeInteger(kind.rawValue)
            body.writeName(name)
        }
    }
}

/// Execute (`E`): the portal to run and the most rows to return (0 for all).
public struct ExecuteMessage: Sendable, Equatable {
    public var portal: String
    public var maximumRows: Int32

    public init?(_ message: WireMessage) {
        guard message.id == FrontendMessageID.execute else { return nil }
        self.init(body: message.body)
    }

    public init?(body: ByteBuffer) {
        var body = body
        guard let portal = body.readName(), let maximumRows = body.readInteger(as: Int32.self), body.readableBytes == 0 else { return nil }
        self.portal = portal
        self.maximumRows = maximumRows
    }
}

extension ByteBuffer {
    /// Reads a NUL-terminated statement or portal name, exactly as sent. Postgres compares names as
    /// bytes; a name that is not UTF-8 (a client_encoding such as LATIN1) becomes NUL followed by one
    /// character per byte. No name read off the wire can start with NUL (it ends at the first), so
    /// distinct names stay distinct, where UTF-8 repair would make them one, and ``writeName(_:)``
    /// writes back the bytes the client sent.
    public mutating func readName() -> String? {
        let view = readableBytesView
        guard let end = view.firstIndex(of: 0) else { return nil }
        let bytes = view[..<end]
        var name = String(decoding: bytes, as: UTF8.self)
        if !name.utf8.elementsEqual(bytes) {
            name = "\0" + String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
        }
        moveReaderIndex(forwardBy: bytes.count + 1)
        return name
    }

    /// Writes a name read by ``readName()`` as the bytes it was read from, and its NUL.
    public mutating func writeName(_ name: String) {
        if name.utf8.first == 0 {
            for scalar in name.unicodeScalars.dropFirst() { writeInteger(UInt8(truncatingIfNeeded: scalar.value)) }
        } else {
            writeString(name)
        }
        writeInteger(UInt8(0))
    }

    /// Reads the next complete message as a slice of this buffer, or nil when it has not fully
    /// arrived (nothing is consumed then).
    ///
    /// - Throws: ``FrameDecodingError`` for a length word under 4.
    public mutating func readWireMessage() throws -> WireMessage? {
        guard let (id, length) = peekFrameHeader() else { return nil }
        guard length >= 4 else { throw FrameDecodingError.invalidLength(length) }
        guard let bytes = readSlice(length: Int(length) + 1) else { return nil }
        return WireMessage(id: id, bytes: bytes)
    }
}
