import Foundation
import NIOCore
import NIOEmbedded
import PostgresWire
import Testing
@testable import SwitchyardProxy

/// The relay's answer invariant under random scripts (``RelayHarness``): a client gets the answers to its
/// own statements, whole and in the order it sent them, whatever the servers do in between — answers split
/// at random points, replicas refusing with 25006 (re-run on the primary, unseen) or dying before their
/// first row (retried elsewhere), several statements in one read. The only other outcome allowed is the one
/// a direct connection has: a server dies after part of its unit's answers reached the client (a write's
/// server, or a replica serving a pipeline of reads), and the client gets FATAL 08006 after the answers it
/// already had, and is closed. Each seed is printed when it fails (`RELAY_SEED=<seed>` replays it).
@Suite struct RelayPropertyTests {
    static let eventual = RelayHarness.config("read_consistency = eventual")

    enum Statement {
        case read(Int), write(Int)
        var sql: String {
            switch self {
            case .read(let n): return "SELECT \(n)"
            case .write(let n): return "INSERT INTO t VALUES (\(n))"
            }
        }
        /// The answer the client must see, as message type letters and the row or tag in it.
        var expected: String {
            switch self {
            case .read(let n): return "TD[\(n)]CZ"
            case .write: return "C[INSERT 0 1]Z"
            }
        }
    }

    @Test(arguments: 0..<40)
    func everyClientGetsItsOwnAnswersInOrder(run: Int) throws {
        let seed = ProcessInfo.processInfo.environment["RELAY_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
        var random = SplitMix64(state: seed)
        let relay = try RelayHarness(configuration: Self.eventual)
        try relay.logIn()
        var started: Set<ObjectIdentifier> = [ObjectIdentifier(try relay.server("main"))]
        var next = 1
        var delivered = ""
        var expected = ""
        var serverDied = false
        units: for _ in 0..<30 {
            // One to three statements in one client read, split into up to three reads.
            var batch: [Statement] = []
            for _ in 0...(random.next() % 3) {
                batch.append(random.next() % 3 == 0 ? .write(next) : .read(next))
                next += 1
            }
            var bytes = ByteBuffer()
            for statement in batch { FrontendMessage.query(statement.sql, into: &bytes) }
            expected += batch.map(\.expected).joined()
            let clientChunks = Self.split(bytes, &random)
            for chunk in clientChunks { try relay.clientSends { $0.writeImmutableBuffer(chunk) } }
            // The servers answer until nothing is owed. One server at most dies per batch: a read survives
            // two replica failures (retried elsewhere), not three, which is the documented limit.
            var mayDie = true
            var progress = true
            while progress {
                progress = false
                for server in relay.servers where server.channel.isActive {
                    if !started.contains(ObjectIdentifier(server)) {
                        started.insert(ObjectIdentifier(server))
                        try server.acceptStartup()
                        progress = true
                    }
                    let frames = try server.received()
                    for frame in frames {
                        progress = true
                        guard server.channel.isActive else { break }
                        guard let sql = frame.queryText else { Issue.record("seed \(seed): unexpected message \(frame.id) to \(server.name)"); continue }
                        if try answer(sql, on: server, mayRefuse: frames.count == 1, mayDie: &mayDie, &random) == .died { serverDied = true }
                    }
                }
                delivered += try Self.render(relay.clientReceived())
            }
            if !relay.client.isActive { break units }
        }
        if delivered.hasSuffix("E[08006]") {
            // Only after a server died: the answers before, in order, then the FATAL, then the close.
            #expect(serverDied, "seed \(seed): 08006 with every server alive")
            #expect(expected.hasPrefix(String(delivered.dropLast("E[08006]".count))), "seed \(seed): \(delivered) vs \(expected)")
            #expect(!relay.client.isActive, "seed \(seed)")
        } else {
            #expect(delivered == expected, "seed \(seed)")
            #expect(relay.client.isActive, "seed \(seed)")
        }
        #expect(relay.runtime.memoryBudget.used == relay.runtime.memoryBudget.retained, "seed \(seed)")
    }

    enum Outcome { case answered, died }

    /// Answers one Query as a server would, or dies: a replica may refuse a read with 25006 (any
    /// statement it gets, as a standby refuses a write) or die before its first row; the primary may die
    /// under a write. Answers are split at random points.
    /// `mayRefuse`: only a statement alone in its server's read is refused. Behind a read whose rows already
    /// went out, a refusal cannot be hidden (see the note in the README's differences).
    func answer(_ sql: String, on server: ScriptedServer, mayRefuse: Bool, mayDie: inout Bool, _ random: inout SplitMix64) throws -> Outcome {
        let onReplica = server.name != "main"
        let roll = random.next() % 100
        if mayDie, onReplica && roll < 8 || !onReplica && sql.hasPrefix("INSERT") && roll < 2 {
            mayDie = false
            try server.channel.close().wait()
            return .died
        }
        var answer = ByteBuffer()
        if onReplica && mayRefuse && roll < 20 {
            ErrorFields(severity: .error, code: "25006", message: "cannot execute INSERT in a read-only transaction").encode(into: &answer)
        } else if sql.hasPrefix("SELECT ") {
            ScriptedServer.writeRows([String(sql.dropFirst("SELECT ".count))], into: &answer)
        } else {
            BackendMessage.commandComplete("INSERT 0 1", into: &answer)
        }
        BackendMessage.readyForQuery(.idle, into: &answer)
        let chunks = Self.split(answer, &random)
        for chunk in chunks { try server.send { $0.writeImmutableBuffer(chunk) } }
        return .answered
    }

    /// `buffer` cut at up to two random points.
    static func split(_ buffer: ByteBuffer, _ random: inout SplitMix64) -> [ByteBuffer] {
        let count = buffer.readableBytes
        guard count > 2 else { return [buffer] }
        let cuts = (0..<Int(random.next() % 3)).map { _ in 1 + Int(random.next() % UInt64(count - 1)) }
        var chunks: [ByteBuffer] = []
        var start = 0
        for cut in Set(cuts).sorted() + [count] {
            chunks.append(buffer.getSlice(at: buffer.readerIndex + start, length: cut - start)!)
            start = cut
        }
        return chunks
    }

    /// Message letters, with a DataRow's value, a CommandComplete's tag and an error's SQLSTATE in brackets.
    static func render(_ frames: [Frame]) -> String {
        frames.map { frame in
            var body = frame.body
            let letter = String(Character(UnicodeScalar(frame.id)))
            switch frame.id {
            case BackendMessageID.dataRow:
                _ = body.readInteger(as: Int16.self)
                let length = Int(body.readInteger(as: Int32.self) ?? 0)
                return letter + "[\(body.readString(length: length) ?? "?")]"
            case BackendMessageID.commandComplete:
                let tag = body.readNullTerminatedString() ?? ""
                return tag.hasPrefix("INSERT") ? letter + "[\(tag)]" : letter
            case BackendMessageID.errorResponse:
                return letter + "[\(frame.errorFields?.code ?? "?")]"
            default:
                return letter
            }
        }.joined()
    }
}
