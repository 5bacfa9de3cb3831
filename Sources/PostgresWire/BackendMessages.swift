import NIOCore

/// Authentication request codes carried by an `R` message.
public enum AuthenticationRequest: Sendable, Equatable {
    case ok
    case cleartextPassword
    case md5Password(salt: [UInt8])
    case sasl(mechanisms: [String])
    case saslContinue(data: [UInt8])
    case saslFinal(data: [UInt8])
    case unsupported(code: Int32)

    public init?(decoding body: ByteBuffer) {
        var body = body
        guard let code = body.readInteger(as: Int32.self) else { return nil }
        switch code {
        case 0: self = .ok
        case 3: self = .cleartextPassword
        case 5:
            guard let salt = body.readBytes(length: 4) else { return nil }
            self = .md5Password(salt: salt)
        case 10:
            var mechanisms: [String] = []
            while let name = body.readNullTerminatedString(), !name.isEmpty { mechanisms.append(name) }
            self = .sasl(mechanisms: mechanisms)
        case 11: self = .saslContinue(data: body.readBytes(length: body.readableBytes) ?? [])
        case 12: self = .saslFinal(data: body.readBytes(length: body.readableBytes) ?? [])
        default: self = .unsupported(code: code)
        }
    }

    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: BackendMessageID.authentication) { body in
            switch self {
            case .ok: body.writeInteger(Int32(0))
            case .cleartextPassword: body.writeInteger(Int32(3))
            case .md5Password(let salt): body.writeInteger(Int32(5)); body.writeBytes(salt)
            case .sasl(let mechanisms):
                body.writeInteger(Int32(10))
                for mechanism in mechanisms { body.writeNullTerminatedString(mechanism) }
                body.writeInteger(UInt8(0))
            case .saslContinue(let data): body.writeInteger(Int32(11)); body.writeBytes(data)
            case .saslFinal(let data): body.writeInteger(Int32(12)); body.writeBytes(data)
            case .unsupported(let code): body.writeInteger(code)
            }
        }
    }
}

/// Encoders for the small backend messages Switchyard writes itself.
public enum BackendMessage {
    public static func parameterStatus(name: String, value: String, into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: BackendMessageID.parameterStatus) { body in
            body.writeNullTerminatedString(name)
            body.writeNullTerminatedString(value)
        }
    }

    public static func backendKeyData(_ key: CancelRequest, into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: BackendMessageID.backendKeyData) { body in
            body.writeInteger(key.processID)
            body.writeInteger(key.secretKey)
        }
    }

    public static func readyForQuery(_ status: TransactionStatus, into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: BackendMessageID.readyForQuery) { body in
            body.writeInteger(status.rawValue)
        }
    }

    /// RowDescription for text columns.
    public static func rowDescription(columns: [String], into buffer: inout ByteBuffer) {
        rowDescription(columns: columns.map { ($0, ColumnType.text) }, formats: [], into: &buffer)
    }

    /// RowDescription for columns Switchyard answers itself (admin console, route commands).
    /// `formats` are the result format codes a Bind asked for: none (all text), one (for all), or one per column.
    public static func rowDescription(columns: [(name: String, type: ColumnType)], formats: [Int16], into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: BackendMessageID.rowDescription) { body in
            body.writeInteger(Int16(columns.count))
            for (index, column) in columns.enumerated() {
                body.writeNullTerminatedString(column.name)
                body.writeInteger(Int32(0)) // table OID
                body.writeInteger(Int16(0)) // column number
                body.writeInteger(column.type.oid)
                body.writeInteger(column.type.size)
                body.writeInteger(Int32(-1))
                body.writeInteger(ColumnValue.format(at: index, in: formats))
            }
        }
    }

    public static func dataRow(_ values: [String?], into buffer: inout ByteBuffer) {
        dataRow(values.map { $0.map(ColumnValue.text) ?? .null }, formats: [], into: &buffer)
    }

    /// DataRow in the formats a Bind asked for (see ``rowDescription(columns:formats:into:)``).
    public static func dataRow(_ values: [ColumnValue], formats: [Int16], into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: BackendMessageID.dataRow) { body in
            body.writeInteger(Int16(values.count))
            for (index, value) in values.enumerated() {
                let binary = ColumnValue.format(at: index, in: formats) == 1
                switch value {
                case .null:
                    body.writeInteger(Int32(-1))
                case .integer(let number) where binary:
                    body.writeInteger(Int32(8))
                    body.writeInteger(number)
                case .double(let number) where binary:
                    body.writeInteger(Int32(8))
                    body.writeInteger(number.bitPattern)
                case .text(let text):
                    // A text value's binary form is its bytes, too.
                    body.writeInteger(Int32(text.utf8.count))
                    body.writeString(text)
                case .integer, .double:
                    let text = value.textValue!
                    body.writeInteger(Int32(text.utf8.count))
                    body.writeString(text)
                }
            }
        }
    }

    public static func commandComplete(_ tag: String, into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: BackendMessageID.commandComplete) { body in
            body.writeNullTerminatedString(tag)
        }
    }

    /// Decodes a ParameterStatus body into its name and value.
    public static func decodeParameterStatus(_ body: ByteBuffer) -> (String, String)? {
        var body = body
        guard let name = body.readNullTerminatedString(), let value = body.readNullTerminatedString() else { return nil }
        return (name, value)
    }

    public static func decodeBackendKeyData(_ body: ByteBuffer) -> CancelRequest? {
        var body = body
        guard let pid = body.readInteger(as: Int32.self), let key = body.readInteger(as: Int32.self) else { return nil }
        return CancelRequest(processID: pid, secretKey: key)
    }
}

/// Encoders for the frontend messages Switchyard sends to a backend on its own behalf.
public enum FrontendMessage {
    public static func query(_ sql: String, into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: FrontendMessageID.query) { $0.writeNullTerminatedString(sql) }
    }

    public static func terminate(into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: FrontendMessageID.terminate) { _ in }
    }

    /// PasswordMessage carrying a cleartext password or an md5 hash.
    public static func password(_ password: String, into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: FrontendMessageID.password) { $0.writeNullTerminatedString(password) }
    }

    public static func saslInitialResponse(mechanism: String, data: [UInt8], into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: FrontendMessageID.password) { body in
            body.writeNullTerminatedString(mechanism)
            body.writeInteger(Int32(data.count))
            body.writeBytes(data)
        }
    }

    public static func saslResponse(data: [UInt8], into buffer: inout ByteBuffer) {
        buffer.writeMessage(id: FrontendMessageID.password) { $0.writeBytes(data) }
    }

    /// Decodes a client's SASLInitialResponse body: mechanism name and initial data.
    public static func decodeSASLInitialResponse(_ body: ByteBuffer) -> (mechanism: String, data: [UInt8])? {
        var body = body
        guard let mechanism = body.readNullTerminatedString(), let length = body.readInteger(as: Int32.self) else { return nil }
        if length == -1 { return (mechanism, []) }
        guard length >= 0, let data = body.readBytes(length: Int(length)) else { return nil }
        return (mechanism, data)
    }

    /// Decodes a PasswordMessage body (cleartext or md5 response).
    public static func decodePassword(_ body: ByteBuffer) -> String? {
        var body = body
        return body.readNullTerminatedString()
    }
}

/// The column types Switchyard's own result sets use.
public enum ColumnType: Sendable, Equatable {
    case text, int8, float8

    public var oid: Int32 {
        switch self {
        case .text: 25
        case .int8: 20
        case .float8: 701
        }
    }

    var size: Int16 { self == .text ? -1 : 8 }
}

/// One value of a result set Switchyard composes.
public enum ColumnValue: Sendable, Equatable {
    case null
    case text(String)
    case integer(Int64)
    case double(Double)

    /// The value as Postgres would print it; nil for NULL.
    public var textValue: String? {
        switch self {
        case .null: nil
        case .text(let text): text
        case .integer(let number): String(number)
        case .double(let number):
            if number.isNaN { "NaN" } else if number.isInfinite { number > 0 ? "Infinity" : "-Infinity" } else { String((number * 1000).rounded() / 1000) }
        }
    }

    /// The format code for column `index`: Bind sends none (text), one for all columns, or one each.
    static func format(at index: Int, in formats: [Int16]) -> Int16 {
        switch formats.count {
        case 0: 0
        case 1: formats[0]
        default: index < formats.count ? formats[index] : 0
        }
    }
}
