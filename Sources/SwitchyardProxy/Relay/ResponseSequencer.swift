import DequeModule
import PostgresWire

/// Pairs every request sent to a server with the answer it will produce, so Switchyard can drop
/// the answers to requests it injected (a re-Parse on a server that lacked a statement) and add
/// answers for requests it absorbed (a Parse the server already had), without disturbing the
/// order a pipelining client relies on. A pure value; the session feeds it message type bytes.
public struct ResponseSequencer: Sendable {
    public enum Request: Sendable, Equatable {
        case parse, bind, describe, execute, close, sync, query, functionCall

        init?(frontendID: UInt8) {
            switch frontendID {
            case FrontendMessageID.parse: self = .parse
            case FrontendMessageID.bind: self = .bind
            case FrontendMessageID.describe: self = .describe
            case FrontendMessageID.execute: self = .execute
            case FrontendMessageID.close: self = .close
            case FrontendMessageID.sync: self = .sync
            case FrontendMessageID.query: self = .query
            case FrontendMessageID.functionCall: self = .functionCall
            default: return nil // Flush, CopyData/Done/Fail and Terminate get no answer of their own
            }
        }

        /// Whether a backend message of type `id` is the last one answering this request.
        func isAnsweredBy(_ id: UInt8) -> Bool {
            switch self {
            case .parse: return id == BackendMessageID.parseComplete
            case .bind: return id == BackendMessageID.bindComplete
            case .close: return id == BackendMessageID.closeComplete
            case .describe: return id == BackendMessageID.rowDescription || id == BackendMessageID.noData
            case .execute:
                return id == BackendMessageID.commandComplete || id == BackendMessageID.emptyQueryResponse
                    || id == BackendMessageID.portalSuspended
            case .sync, .query, .functionCall: return id == BackendMessageID.readyForQuery
            }
        }
    }

    public enum Disposition: Sendable, Equatable {
        /// The client's own request: its answer goes to the client.
        case forward
        /// Injected by Switchyard: its success message is dropped (an error still reaches the client).
        case swallow
        /// Absorbed by Switchyard: the server never sees it, so this message is made up in its place.
        case synthesize(UInt8)
    }

    /// What to do with one message from the server.
    public struct Verdict: Sendable, Equatable {
        public var forward: Bool
        /// Made-up answers to send to the client right after this message (or instead of it).
        public var synthesizedAfter: [UInt8] = []
        /// Tags of requests this message showed the server did not carry out (an error, and what it skipped).
        public var failedTags: [Int] = []
        /// This ReadyForQuery ends an extended-protocol batch in which an error made the server skip to Sync.
        public var endsFailedBatch = false
    }

    struct Entry: Sendable {
        var request: Request
        var disposition: Disposition
        var tag: Int
    }

    private var entries: Deque<Entry> = []
    /// After an error in the extended protocol the server ignores everything up to the next Sync.
    private var skippingToSync = false
    /// An extended-protocol request failed since the last Sync was answered.
    private var batchFailed = false

    public init() {}

    public var isEmpty: Bool { entries.isEmpty }

    /// True after an extended-protocol error until the next Sync: the server is ignoring requests.
    public var isSkippingToSync: Bool { skippingToSync }

    /// Records a request sent (or absorbed). Returns messages to synthesize at once: those whose
    /// turn has come because nothing before them is still unanswered.
    public mutating func sent(_ request: Request, disposition: Disposition = .forward, tag: Int = 0) -> [UInt8] {
        if skippingToSync {
            // The server is discarding requests after an error; it will answer only the Sync.
            guard request == .sync else { return [] }
            skippingToSync = false
        }
        entries.append(Entry(request: request, disposition: disposition, tag: tag))
        return popSynthesized()
    }

    /// Consumes one message from the server.
    public mutating func received(_ id: UInt8) -> Verdict {
        guard let head = entries.first else { return Verdict(forward: true) }
        if id == BackendMessageID.errorResponse, head.request != .query, head.request != .functionCall, head.request != .sync {
            entries.removeFirst()
            var failed = head.tag == 0 ? [] : [head.tag]
            // The server skips every request up to the next Sync, absorbed ones included.
            while let next = entries.first, next.request != .sync {
                entries.removeFirst()
                if next.tag != 0 { failed.append(next.tag) }
            }
            skippingToSync = entries.isEmpty
            batchFailed = true
            return Verdict(forward: true, failedTags: failed)
        }
        guard head.request.isAnsweredBy(id) else { return Verdict(forward: true) }
        entries.removeFirst()
        var verdict = Verdict(forward: head.disposition != .swallow, synthesizedAfter: popSynthesized())
        if head.request == .sync {
            verdict.endsFailedBatch = batchFailed
            batchFailed = false
        }
        return verdict
    }

    /// Whether an injected request's answer is still to come (it will have to be cut out).
    public var hasSwallowPending: Bool { entries.contains { $0.disposition == .swallow } }

    private mutating func popSynthesized() -> [UInt8] {
        var made: [UInt8] = []
        while let head = entries.first, case .synthesize(let id) = head.disposition {
            entries.removeFirst()
            made.append(id)
        }
        return made
    }
}
