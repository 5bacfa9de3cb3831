import NIOCore
import PostgresWire

/// A replica's answer to an autocommit read, held back until it shows rows or success.
///
/// The classifier may let a write through, or a replica may refuse a statement the primary would run
/// (25006, temporary or unlogged tables: ``ReplicaRefusal``). Until the answer shows success, nothing
/// of it reaches the client, so the unit can be re-run on the primary as if the replica had never
/// been asked. Rows may be huge, so holding stops at the first DataRow (or COPY, CommandComplete,
/// EmptyQueryResponse, PortalSuspended: a client that sent Flush waits for those without a Sync).
///
/// A pure value: the session feeds it the server's bytes and answers Switchyard made up, and it
/// decides. Each held message is judged by the session (the response sequencer may cut out the
/// answer to an injected request, or add made-up ones after it).
struct HeldAnswer {
    /// What the client will get of what was scanned so far.
    enum Output {
        /// Exactly the bytes held, so nothing is copied.
        case verbatim
        /// Something was cut out or made up: the copy the client gets.
        case copied(ByteBuffer)
    }

    struct Holding {
        /// Everything the server sent since holding began.
        var bytes: ByteBuffer
        /// How much of `bytes` was judged.
        var scanned = 0
        var output = Output.verbatim
        /// The replica refused the statement: at ReadyForQuery the unit is re-run elsewhere.
        var refused = false
    }

    enum State {
        case notHolding
        case holding(Holding)
    }

    /// The session's judgement of one held message.
    struct Verdict {
        var forward: Bool
        /// Answers Switchyard made up, to follow this message (ParseComplete of an absorbed Parse).
        var madeUp: [UInt8] = []
    }

    enum Decision: Equatable {
        /// Keep holding: the answer has not shown success or ended yet.
        case wait
        /// Stop holding: write `toClient` (if any), then relay `rest` as usual.
        case release(toClient: ByteBuffer?, rest: ByteBuffer)
        /// The replica refused the statement and has answered in full: re-run the unit on the primary.
        /// The client has seen none of it.
        case rerun
    }

    /// Shared empty storage: a unit that never holds anything allocates nothing.
    static let noBytes = ByteBuffer()

    private(set) var state: State

    init(holding: Bool) {
        state = holding ? .holding(Holding(bytes: Self.noBytes)) : .notHolding
    }

    var isHolding: Bool {
        if case .holding = state { return true }
        return false
    }

    /// Bytes arrived that were never judged (the server is mid-answer): its connection cannot be reused.
    var hasUnjudgedBytes: Bool {
        guard case .holding(let holding) = state else { return false }
        return holding.bytes.readableBytes > holding.scanned
    }

    /// Server bytes read. `judge` is asked once per complete held message, in order.
    ///
    /// - Throws: ``FrameDecodingError`` for a malformed length.
    mutating func bytesRead(_ buffer: ByteBuffer, judge: (WireMessage) -> Verdict) throws -> Decision {
        guard case .holding(var holding) = state else { return .release(toClient: nil, rest: buffer) }
        state = .notHolding  // no second reference while appending: the append must not copy on write
        if holding.bytes.readableBytes == 0 { holding.bytes = buffer } else { holding.bytes.writeImmutableBuffer(buffer) }
        var view = holding.bytes
        view.moveReaderIndex(forwardBy: holding.scanned)
        while let (id, _) = view.peekFrameHeader() {
            if !holding.refused, Self.showsSuccess(id) { return release(holding) }
            guard let message = try view.readWireMessage() else { break }
            if id == BackendMessageID.errorResponse, let error = ErrorFields(decoding: message.body), ReplicaRefusal(error) != nil {
                holding.refused = true
            }
            let verdict = judge(message)
            if !verdict.forward || !verdict.madeUp.isEmpty { Self.copyOutput(&holding) }
            holding.scanned += message.bytes.readableBytes
            if verdict.forward, case .copied(var copy) = holding.output {
                holding.output = .verbatim
                copy.writeImmutableBuffer(message.bytes)
                holding.output = .copied(copy)
            }
            Self.append(verdict.madeUp, to: &holding)
            if id == BackendMessageID.readyForQuery {
                return holding.refused ? .rerun : release(holding)
            }
        }
        state = .holding(holding)
        return .wait
    }

    /// Answers Switchyard made up while holding (an absorbed Parse's ParseComplete): they join the
    /// client's copy, after what was judged so far.
    mutating func madeUpAnswersAdded(_ ids: [UInt8]) {
        guard case .holding(var holding) = state, !ids.isEmpty else { return }
        state = .notHolding
        Self.copyOutput(&holding)
        Self.append(ids, to: &holding)
        state = .holding(holding)
    }

    static func showsSuccess(_ id: UInt8) -> Bool {
        switch id {
        case BackendMessageID.dataRow, BackendMessageID.copyOutResponse, BackendMessageID.copyInResponse,
             BackendMessageID.copyBothResponse, BackendMessageID.commandComplete, BackendMessageID.emptyQueryResponse,
             BackendMessageID.portalSuspended:
            return true
        default:
            return false
        }
    }

    private mutating func release(_ holding: Holding) -> Decision {
        state = .notHolding
        let rest = holding.bytes.getSlice(at: holding.bytes.readerIndex + holding.scanned,
                                          length: holding.bytes.readableBytes - holding.scanned)!
        switch holding.output {
        case .verbatim:
            let judged = holding.scanned > 0 ? holding.bytes.getSlice(at: holding.bytes.readerIndex, length: holding.scanned) : nil
            return .release(toClient: judged, rest: rest)
        case .copied(let copy):
            return .release(toClient: copy.readableBytes > 0 ? copy : nil, rest: rest)
        }
    }

    /// From here on the client gets something other than the bytes held: start the copy.
    private static func copyOutput(_ holding: inout Holding) {
        guard case .verbatim = holding.output else { return }
        var copy = ByteBuffer()
        if holding.scanned > 0 { copy.writeImmutableBuffer(holding.bytes.getSlice(at: holding.bytes.readerIndex, length: holding.scanned)!) }
        holding.output = .copied(copy)
    }

    private static func append(_ ids: [UInt8], to holding: inout Holding) {
        guard !ids.isEmpty, case .copied(var copy) = holding.output else { return }
        holding.output = .verbatim
        for id in ids { copy.writeMessage(id: id) { _ in } }
        holding.output = .copied(copy)
    }
}
