import PostgresWire

/// Follows one client's conversation with its backend closely enough to know when the backend
/// may be handed back to the pool: every Query, FunctionCall and Sync gets exactly one
/// ReadyForQuery, and extended-protocol messages sent since the last Sync keep the backend busy.
///
/// A pure value: it sees only message type bytes, never bodies, so it costs nothing per row.
public struct TransactionTracker: Sendable, Equatable {
    /// ReadyForQuery messages the backend still owes the client.
    public private(set) var awaitedReadyForQuery = 0
    /// Extended-protocol messages went out with no Sync after them yet.
    public private(set) var extendedBatchOpen = false
    /// The status from the latest ReadyForQuery.
    public private(set) var status: TransactionStatus = .idle

    public init() {}

    public mutating func clientSent(_ id: UInt8) {
        switch id {
        case FrontendMessageID.query, FrontendMessageID.functionCall:
            awaitedReadyForQuery += 1
        case FrontendMessageID.sync:
            awaitedReadyForQuery += 1
            extendedBatchOpen = false
        case FrontendMessageID.parse, FrontendMessageID.bind, FrontendMessageID.describe,
             FrontendMessageID.execute, FrontendMessageID.close, FrontendMessageID.flush:
            extendedBatchOpen = true
        default:
            // CopyData/CopyDone/CopyFail belong to a statement already counted; Terminate ends the session.
            break
        }
    }

    public mutating func backendSentReadyForQuery(_ statusByte: UInt8?) {
        if awaitedReadyForQuery > 0 { awaitedReadyForQuery -= 1 }
        status = statusByte.flatMap(TransactionStatus.init(rawValue:)) ?? .idle
    }

    /// Nothing is in flight and no transaction is open: the backend can serve someone else.
    public var isIdle: Bool {
        awaitedReadyForQuery == 0 && !extendedBatchOpen && status == .idle
    }

    /// The client sits inside an open transaction and owes the next move.
    public var isIdleInTransaction: Bool {
        awaitedReadyForQuery == 0 && !extendedBatchOpen && status != .idle
    }
}
