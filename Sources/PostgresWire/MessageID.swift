/// One-byte message type codes of protocol 3.0.
///
/// Kept as plain `UInt8` constants rather than an enum so the relay can compare the
/// header byte it just peeked without any decoding step.
public enum FrontendMessageID {
    public static let bind: UInt8 = UInt8(ascii: "B")
    public static let close: UInt8 = UInt8(ascii: "C")
    public static let copyData: UInt8 = UInt8(ascii: "d")
    public static let copyDone: UInt8 = UInt8(ascii: "c")
    public static let copyFail: UInt8 = UInt8(ascii: "f")
    public static let describe: UInt8 = UInt8(ascii: "D")
    public static let execute: UInt8 = UInt8(ascii: "E")
    public static let flush: UInt8 = UInt8(ascii: "H")
    public static let functionCall: UInt8 = UInt8(ascii: "F")
    public static let parse: UInt8 = UInt8(ascii: "P")
    /// PasswordMessage, SASLInitialResponse and SASLResponse all share `p`.
    public static let password: UInt8 = UInt8(ascii: "p")
    public static let query: UInt8 = UInt8(ascii: "Q")
    public static let sync: UInt8 = UInt8(ascii: "S")
    public static let terminate: UInt8 = UInt8(ascii: "X")
}

public enum BackendMessageID {
    public static let authentication: UInt8 = UInt8(ascii: "R")
    public static let backendKeyData: UInt8 = UInt8(ascii: "K")
    public static let bindComplete: UInt8 = UInt8(ascii: "2")
    public static let closeComplete: UInt8 = UInt8(ascii: "3")
    public static let commandComplete: UInt8 = UInt8(ascii: "C")
    public static let copyData: UInt8 = UInt8(ascii: "d")
    public static let copyDone: UInt8 = UInt8(ascii: "c")
    public static let copyInResponse: UInt8 = UInt8(ascii: "G")
    public static let copyOutResponse: UInt8 = UInt8(ascii: "H")
    public static let copyBothResponse: UInt8 = UInt8(ascii: "W")
    public static let dataRow: UInt8 = UInt8(ascii: "D")
    public static let emptyQueryResponse: UInt8 = UInt8(ascii: "I")
    public static let errorResponse: UInt8 = UInt8(ascii: "E")
    public static let negotiateProtocolVersion: UInt8 = UInt8(ascii: "v")
    public static let noData: UInt8 = UInt8(ascii: "n")
    public static let noticeResponse: UInt8 = UInt8(ascii: "N")
    public static let notificationResponse: UInt8 = UInt8(ascii: "A")
    public static let parameterDescription: UInt8 = UInt8(ascii: "t")
    public static let parameterStatus: UInt8 = UInt8(ascii: "S")
    public static let parseComplete: UInt8 = UInt8(ascii: "1")
    public static let portalSuspended: UInt8 = UInt8(ascii: "s")
    public static let readyForQuery: UInt8 = UInt8(ascii: "Z")
    public static let rowDescription: UInt8 = UInt8(ascii: "T")
}

/// The transaction status carried by ReadyForQuery.
public enum TransactionStatus: UInt8, Sendable {
    case idle = 73          // 'I'
    case inTransaction = 84 // 'T'
    case failed = 69        // 'E'
}
