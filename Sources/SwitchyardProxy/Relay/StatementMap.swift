import NIOCore
import PostgresWire

/// Transaction mode's prepared statements: the client's statement names map to server-side ones
/// (``PreparedStatement``), and any pooled server is given a statement the moment a unit uses it
/// there. The unnamed statement follows the client across servers too, since Postgres keeps it
/// past Sync. Nests the ``ResponseSequencer``, which cuts the answers to what Switchyard injected
/// out of the stream and makes up answers for what it absorbed.
///
/// A pure value: events are client messages on their way out and server message types on their way
/// back; each returns what to send. The server connection's own ``ServerStatements`` is passed in.
struct StatementMap {
    /// What to do with one client message bound for the attached server.
    struct Forwarding: Equatable {
        /// Messages Switchyard wrote, sent first (a re-Parse, Closes, a renamed Bind); nil when none.
        var composed: ByteBuffer?
        /// Whether the client's own message follows them, unchanged.
        var forwardsMessage = true
        /// Made-up answers whose turn has come: written to the client now.
        var madeUpAnswers: [UInt8] = []
    }

    /// What to do with one message from the server.
    struct Verdict: Equatable {
        var forward = true
        /// Made-up answers to write right after this message (or in its place).
        var madeUpAfter: [UInt8] = []
        /// This ReadyForQuery ends an extended-protocol batch that failed (see ``ResponseSequencer``).
        var endsFailedBatch = false
        /// Server-side statements whose plans this error showed stale: prepared anew on next use.
        var wentStale: [String] = []
    }

    /// Charged for large statement copies; nil in tests that don't count.
    var budget: MemoryBudget?
    /// The client's named statements, by the client's name.
    private var statements: [String: PreparedStatement] = [:]
    /// The client's last Parse of the unnamed statement, in storage of its own (not a slice pinning
    /// a receive buffer). Empty when there is none: a simple Query destroys it.
    private var unnamedParse = ByteBuffer()
    /// The charge for a large `unnamedParse`, kept as long as the copy is.
    private var unnamedClaim: BudgetClaim?
    /// The unnamed statement was parsed on the attached server since it was attached.
    private var unnamedParsedOnServer = false
    private var sequencer = ResponseSequencer()
    /// Server-side names recorded as prepared before the server confirmed them, by request tag.
    private var unconfirmedPrepares: [Int: String] = [:]
    /// Server-side names of statements bound and not yet answered, by request tag.
    private var boundStatements: [Int: String] = [:]
    private var nextTag = 1
    /// Where composed messages are written (see ``compose(into:allocator:capacity:_:)``).
    private var scratch = ByteBuffer()
    private var scratchWritten = false

    /// Whether every request sent has been answered (nothing is cut or made up now).
    var isSettled: Bool { sequencer.isEmpty }

    func hasStatement(named name: String) -> Bool { statements[name] != nil }

    // MARK: Events from the client side

    /// The client's `message` goes to the attached server, whose statements are `server`.
    mutating func clientSent(_ message: WireMessage, server: inout ServerStatements, allocator: ByteBufferAllocator) -> Forwarding {
        var out = Forwarding()
        scratchWritten = false
        route(message, server: &server, allocator: allocator, into: &out)
        if scratchWritten {
            out.composed = scratch
            // A large one (a re-Parse of a big statement) lives only as long as its write.
            if scratch.capacity > Self.scratchLimit { scratch = ByteBuffer() }
        }
        return out
    }

    private mutating func route(_ message: WireMessage, server: inout ServerStatements, allocator: ByteBufferAllocator,
                                into out: inout Forwarding) {
        switch message.id {
        case FrontendMessageID.query:
            // Postgres drops the unnamed statement at a simple Query.
            forgetUnnamedStatement()
        case FrontendMessageID.parse:
            guard let parse = ParseMessage(message) else { break }
            if parse.statement.isEmpty {
                keepUnnamedParse(message.bytes)
                unnamedParsedOnServer = true
                break
            }
            let statement = PreparedStatement(definition: parse.definition, budget: budget)
            statements[parse.statement] = statement
            if server.contains(statement.serverName) {
                out.madeUpAnswers += sequencer.sent(.parse, disposition: .synthesize(BackendMessageID.parseComplete))
            } else {
                prepare(statement, on: &server, disposition: .forward, into: &out, allocator: allocator)
            }
            out.forwardsMessage = false
            return
        case FrontendMessageID.bind:
            guard let bind = BindMessage(message) else { break }
            if bind.statement.isEmpty {
                ensureUnnamedStatement(into: &out, allocator: allocator)
                break
            }
            guard let statement = statements[bind.statement] else { break }
            if !server.contains(statement.serverName) {
                prepare(statement, on: &server, disposition: .swallow, into: &out, allocator: allocator)
            }
            let tag = takeTag()
            boundStatements[tag] = statement.serverName
            out.madeUpAnswers += sequencer.sent(.bind, tag: tag)
            compose(into: &out, allocator: allocator,
                    capacity: bind.rest.readableBytes + statement.serverName.utf8.count + bind.portal.utf8.count + 7) {
                bind.encode(statement: statement.serverName, into: &$0)
            }
            out.forwardsMessage = false
            return
        case FrontendMessageID.describe, FrontendMessageID.close:
            guard let target = TargetMessage(message), target.kind == .statement else { break }
            if target.name.isEmpty {
                if message.id == FrontendMessageID.close {
                    forgetUnnamedStatement()
                } else {
                    ensureUnnamedStatement(into: &out, allocator: allocator)
                }
                break
            }
            guard let statement = statements[target.name] else { break }
            if message.id == FrontendMessageID.close {
                // Other clients may share the server-side statement: only the client's name goes.
                statements[target.name] = nil
                out.madeUpAnswers += sequencer.sent(.close, disposition: .synthesize(BackendMessageID.closeComplete))
            } else {
                if !server.contains(statement.serverName) {
                    prepare(statement, on: &server, disposition: .swallow, into: &out, allocator: allocator)
                }
                out.madeUpAnswers += sequencer.sent(.describe)
                compose(into: &out, allocator: allocator) {
                    TargetMessage(id: FrontendMessageID.describe, kind: .statement, name: statement.serverName).encode(into: &$0)
                }
            }
            out.forwardsMessage = false
            return
        default:
            break
        }
        if let request = ResponseSequencer.Request(frontendID: message.id) { out.madeUpAnswers += sequencer.sent(request) }
    }

    /// A message of type `id` too large to read goes to the server as it arrives.
    mutating func clientStartedStreaming(_ id: UInt8) -> [UInt8] {
        if id == FrontendMessageID.query { forgetUnnamedStatement() }
        guard let request = ResponseSequencer.Request(frontendID: id) else { return [] }
        return sequencer.sent(request)
    }

    /// Switchyard sent a Sync of its own (a replica's part of a pipeline ended early); the client never sees its answer.
    mutating func ownSyncSent() -> [UInt8] {
        sequencer.sent(.sync, disposition: .swallow)
    }

    /// DEALLOCATE of one of the client's statements (nil: all of them), answered by Switchyard.
    mutating func deallocated(_ name: String?) {
        if let name { statements[name] = nil } else { statements.removeAll() }
    }

    /// DISCARD ALL or DEALLOCATE ALL ran on the server: it dropped every prepared statement, other
    /// clients' shared ones too, and the client's are gone, as they would be on a direct connection.
    mutating func serverDroppedAllStatements(_ server: inout ServerStatements) {
        server.removeAll()
        statements.removeAll()
        forgetUnnamedStatement()
    }

    // MARK: Events from the server side

    /// A server connection was attached: it may hold another client's unnamed statement.
    mutating func serverAttached() {
        unnamedParsedOnServer = false
    }

    /// Switchyard sent a simple Query of its own (the write position query): Postgres dropped the
    /// unnamed statement there, though the client's copy stays.
    mutating func serverRanItsOwnQuery() {
        unnamedParsedOnServer = false
    }

    /// The attached server was let go with answers still owed (a unit re-run elsewhere): what was
    /// sent there no longer matters.
    mutating func serverAbandoned() {
        sequencer = ResponseSequencer()
        unconfirmedPrepares.removeAll()
        boundStatements.removeAll()
        unnamedParsedOnServer = false
    }

    /// The server sent a message of type `id`; `error` is its decoded ErrorResponse, if it is one.
    mutating func serverSent(_ id: UInt8, error: ErrorFields?, server: inout ServerStatements) -> Verdict {
        guard !sequencer.isEmpty else { return Verdict() }
        let answer = sequencer.received(id)
        var verdict = Verdict(forward: answer.forward, madeUpAfter: answer.synthesizedAfter, endsFailedBatch: answer.endsFailedBatch)
        // A shared server-side statement outlived DDL that changed its result: it must be prepared anew,
        // not fail for every client.
        let stale = error.map { $0.code == SQLState.featureNotSupported && $0.message == "cached plan must not change result type" } ?? false
        for tag in answer.failedTags {
            if let name = unconfirmedPrepares.removeValue(forKey: tag) { server.prepareFailed(name) }
            if let name = boundStatements.removeValue(forKey: tag), stale {
                server.planWentStale(name)
                verdict.wentStale.append(name)
            }
        }
        if sequencer.isEmpty {
            unconfirmedPrepares.removeAll(keepingCapacity: true)
            boundStatements.removeAll(keepingCapacity: true)
        }
        return verdict
    }

    // MARK: Composing

    private mutating func takeTag() -> Int {
        defer { nextTag += 1 }
        return nextTag
    }

    private mutating func forgetUnnamedStatement() {
        if unnamedParse.capacity > Self.keptCapacity { unnamedParse = ByteBuffer() } else if unnamedParse.readableBytes > 0 { unnamedParse.clear() }
        unnamedClaim = nil
        unnamedParsedOnServer = false
    }

    /// An unnamed Parse longer than this is not kept: Postgres drops the unnamed statement at the next
    /// Parse or Query anyway, and a copy of a bulk loader's 300 MB batch would live as long as the session.
    /// Bound on another server later without a new Parse, it gets Postgres' own 26000.
    static let unnamedCopyLimit = 1 << 20
    /// Storage beyond this is given back when the copy shrinks or goes.
    private static let keptCapacity = 64 << 10

    /// A copy over ``PreparedStatement/chargedSize`` is charged as retained, and not kept (as if over the
    /// limit) when the budget's retained copies have no room for it.
    private mutating func keepUnnamedParse(_ bytes: ByteBuffer) {
        unnamedClaim = nil
        let size = bytes.readableBytes
        let charged = size > PreparedStatement.chargedSize
        let kept = size <= Self.unnamedCopyLimit && (!charged || budget?.mayRetain(size) != false)
        if !kept || unnamedParse.capacity > max(2 * size, Self.keptCapacity) {
            unnamedParse = ByteBuffer()
        }
        guard kept else { return }
        if charged { unnamedClaim = budget?.claimRetained(size) }
        unnamedParse.clear()
        unnamedParse.writeImmutableBuffer(bytes)
    }

    /// Before a Bind or Describe of the unnamed statement on a server that has not parsed it since it
    /// was attached: it may be another than the one that did, so parse it again there; with none,
    /// close the server's own, which is some other client's, so the client gets Postgres' 26000
    /// rather than someone else's statement.
    private mutating func ensureUnnamedStatement(into out: inout Forwarding, allocator: ByteBufferAllocator) {
        guard !unnamedParsedOnServer else { return }
        unnamedParsedOnServer = true
        if unnamedParse.readableBytes > 0 {
            out.madeUpAnswers += sequencer.sent(.parse, disposition: .swallow)
            append(unnamedParse, into: &out)
        } else {
            closeServerStatement("", into: &out, allocator: allocator)
        }
    }

    /// A Parse for `statement`, keeping the server's statement cache bounded. After an error the
    /// server skips everything up to Sync: then nothing sent now runs there, and the record stays as it is.
    private mutating func prepare(_ statement: PreparedStatement, on server: inout ServerStatements,
                                  disposition: ResponseSequencer.Disposition, into out: inout Forwarding,
                                  allocator: ByteBufferAllocator) {
        let runs = !sequencer.isSkippingToSync
        if runs, let oldest = server.evictOldestIfFull() { closeServerStatement(oldest, into: &out, allocator: allocator) }
        if runs, server.takeStale(statement.serverName) {
            // Its plan went stale: drop the server's copy before preparing it again under the same name.
            closeServerStatement(statement.serverName, into: &out, allocator: allocator)
        }
        let tag = takeTag()
        if runs {
            server.prepared(statement.serverName)
            unconfirmedPrepares[tag] = statement.serverName
        }
        out.madeUpAnswers += sequencer.sent(.parse, disposition: disposition, tag: tag)
        compose(into: &out, allocator: allocator, capacity: statement.parseMessageLength) { statement.encodeParse(into: &$0) }
    }

    /// A Close of the server-side statement `name`, whose answer the client never sees.
    private mutating func closeServerStatement(_ name: String, into out: inout Forwarding, allocator: ByteBufferAllocator) {
        out.madeUpAnswers += sequencer.sent(.close, disposition: .swallow)
        compose(into: &out, allocator: allocator) {
            TargetMessage(id: FrontendMessageID.close, kind: .statement, name: name).encode(into: &$0)
        }
    }

    /// Writes into `scratch`, which is reused: by the next message its last write has usually reached
    /// the socket, so clearing it reuses its storage instead of allocating (a renamed Bind per
    /// transaction cost a heap allocation). One that grew large is let go, not kept while idle.
    private mutating func compose(into out: inout Forwarding, allocator: ByteBufferAllocator, capacity: Int = 64,
                                  _ write: (inout ByteBuffer) -> Void) {
        if !scratchWritten {
            scratchWritten = true
            if scratch.capacity > Self.scratchLimit || scratch.capacity < capacity {
                scratch = allocator.buffer(capacity: max(capacity, 256))
            } else {
                scratch.clear()
            }
            if let earlier = out.composed { scratch.writeImmutableBuffer(earlier) }
        }
        write(&scratch)
    }

    static let scratchLimit = 16 * 1024

    /// Adds stored bytes; the first ones are sent as they are, without a copy.
    private mutating func append(_ bytes: ByteBuffer, into out: inout Forwarding) {
        if scratchWritten { scratch.writeImmutableBuffer(bytes) } else { out.composed = bytes }
    }
}
