import NIOCore

/// The fields of an ErrorResponse or NoticeResponse that Switchyard produces or inspects.
public struct ErrorFields: Sendable, Equatable, Error, CustomStringConvertible {
    public enum Severity: String, Sendable {
        case error = "ERROR", fatal = "FATAL", panic = "PANIC", warning = "WARNING", notice = "NOTICE", log = "LOG"
    }

    public var severity: String
    /// The five-character SQLSTATE.
    public var code: String
    public var message: String
    public var detail: String?
    public var hint: String?

    public init(severity: Severity, code: String, message: String, detail: String? = nil, hint: String? = nil) {
        self.severity = severity.rawValue
        self.code = code
        self.message = message
        self.detail = detail
        self.hint = hint
    }

    public var isFatal: Bool { severity == "FATAL" || severity == "PANIC" }

    public var description: String { "\(severity) \(code): \(message)" }

    /// Encodes as an ErrorResponse (`E`) or, with `id: BackendMessageID.noticeResponse`, a notice.
    public func encode(into buffer: inout ByteBuffer, id: UInt8 = BackendMessageID.errorResponse) {
        buffer.writeMessage(id: id) { body in
            body.writeInteger(UInt8(ascii: "S")); body.writeNullTerminatedString(severity)
            body.writeInteger(UInt8(ascii: "V")); body.writeNullTerminatedString(severity)
            body.writeInteger(UInt8(ascii: "C")); body.writeNullTerminatedString(code)
            body.writeInteger(UInt8(ascii: "M")); body.writeNullTerminatedString(message)
            if let detail { body.writeInteger(UInt8(ascii: "D")); body.writeNullTerminatedString(detail) }
            if let hint { body.writeInteger(UInt8(ascii: "H")); body.writeNullTerminatedString(hint) }
            body.writeInteger(UInt8(0))
        }
    }

    /// Decodes the body of an ErrorResponse or NoticeResponse.
    public init?(decoding body: ByteBuffer) {
        var body = body
        var fields: [UInt8: String] = [:]
        while let type = body.readInteger(as: UInt8.self), type != 0 {
            guard let value = body.readNullTerminatedString() else { return nil }
            fields[type] = value
        }
        self.severity = fields[UInt8(ascii: "V")] ?? fields[UInt8(ascii: "S")] ?? "ERROR"
        self.code = fields[UInt8(ascii: "C")] ?? "XX000"
        self.message = fields[UInt8(ascii: "M")] ?? ""
        self.detail = fields[UInt8(ascii: "D")]
        self.hint = fields[UInt8(ascii: "H")]
    }
}

/// SQLSTATEs Switchyard itself raises.
public enum SQLState {
    public static let protocolViolation = "08P01"
    public static let connectionFailure = "08006"
    public static let connectionException = "08000"
    public static let sqlclientUnableToEstablishConnection = "08001"
    public static let invalidPassword = "28P01"
    public static let invalidAuthorizationSpecification = "28000"
    public static let tooManyConnections = "53300"
    public static let queryCanceled = "57014"
    public static let adminShutdown = "57P01"
    public static let cannotConnectNow = "57P03"
    public static let featureNotSupported = "0A000"
    public static let insufficientPrivilege = "42501"
    public static let syntaxError = "42601"
    public static let idleInTransactionTimeout = "25P03"
    public static let inFailedSQLTransaction = "25P02"
    public static let readOnlySQLTransaction = "25006"
    public static let internalError = "XX000"
    public static let undefinedObject = "42704"
    public static let objectNotInPrerequisiteState = "55000"
    public static let programLimitExceeded = "54000"
    public static let configFileError = "F0000"
    public static let invalidParameterValue = "22023"
}
