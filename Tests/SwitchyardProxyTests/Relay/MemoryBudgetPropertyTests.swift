import NIOCore
import NIOEmbedded
import PostgresWire
import Synchronization
import Testing
@testable import SwitchyardProxy

/// The memory guarantee of `max_buffered_bytes`, checked over seeded random traffic: several clients'
/// streams (``ClientMessageStream``) fed random messages in random cuts, admitted against one
/// ``MemoryBudget`` the way the relay admits them (charged at the header, waiting without reading when
/// short, refused when it could never fit), with charges given back at random later steps and statement
/// copies retained and dropped in between.
///
/// After every step:
/// - the charges of messages passing through never exceed the limit, and retained copies stay within half;
/// - a client holds no more than its admitted message (or the streaming threshold) plus one read;
/// and at the end every client got exactly its messages back, in order and byte for byte (refused ones
/// skipped in place, streamed ones in pieces), nobody is left waiting, and every charge is given back.
@Suite struct MemoryBudgetPropertyTests {
    /// What a client's stream handed on: a whole message, a refusal, or a streamed one reassembled.
    enum Delivered: Equatable {
        case message([UInt8])
        case refused(id: UInt8, length: Int)
        case streamed([UInt8])
    }

    final class Client {
        let index: Int
        var stream: ClientMessageStream
        /// Bytes not yet sent, and what each message sent should come out as.
        var unsent: ByteBuffer
        var expected: [[UInt8]]
        var delivered: [Delivered] = []
        /// Waiting for room: its reads are held, as the relay holds a session's reads.
        var waiting = false
        /// The charge for the large message being assembled.
        var inboundClaim: BudgetClaim?
        var streaming: [UInt8]?
        init(index: Int, stream: ClientMessageStream, unsent: ByteBuffer, expected: [[UInt8]]) {
            (self.index, self.stream, self.unsent, self.expected) = (index, stream, unsent, expected)
        }
    }

    @Test(arguments: 0..<24)
    func chargesStayWithinTheLimitAndEveryMessageComesThroughOnce(seed: UInt64) throws {
        var rng = SplitMix64(state: 0x5EED_0000 + seed)
        let limit = Int.random(in: 64 << 10 ... 256 << 10, using: &rng)
        let threshold = 4 << 10
        let maxRead = 3 * threshold
        let budget = MemoryBudget(limit: limit)
        let loop = EmbeddedEventLoop()
        /// Clients a released charge woke: they ask again, as a woken session does.
        let woken = Mutex<[Int]>([])

        // Each client's messages: mostly small, some large, a few larger than the budget could ever hold.
        let clients: [Client] = (0..<Int.random(in: 2...5, using: &rng)).map { index in
            var unsent = ByteBuffer()
            var expected: [[UInt8]] = []
            for _ in 0..<Int.random(in: 4...12, using: &rng) {
                let roll = Int.random(in: 0..<10, using: &rng)
                let bodyLength = roll < 5 ? Int.random(in: 0...200, using: &rng)
                    : roll < 9 ? Int.random(in: threshold ... limit / 2, using: &rng)
                    : Int.random(in: limit ... limit + limit / 4, using: &rng)
                let id = [UInt8(ascii: "P"), UInt8(ascii: "B"), UInt8(ascii: "Q"), UInt8(ascii: "d")].randomElement(using: &rng)!
                let fill = UInt8.random(in: 0...255, using: &rng)
                var message = ByteBuffer()
                message.writeMessage(id: id) { $0.writeRepeatingByte(fill, count: bodyLength) }
                expected.append(Array(message.readableBytesView))
                unsent.writeImmutableBuffer(message)
            }
            return Client(index: index, stream: ClientMessageStream(maximumLength: Int(Int32.max), streamingThreshold: threshold),
                          unsent: unsent, expected: expected)
        }
        /// Charges of delivered messages, given back at a later step (a write completing, say).
        var held: [BudgetClaim] = []
        /// Statement copies kept as retained.
        var retained: [BudgetClaim] = []

        func feed(_ client: Client, _ bytes: ByteBuffer) throws {
            try client.stream.process(bytes, admit: { id, length in
                if client.waiting { return .notYet }
                // CopyData goes through as it arrives now and then, as to an attached server.
                if id == UInt8(ascii: "d"), Bool.random(using: &rng) { return .stream }
                guard budget.couldEverHold(length) else { return .refuse }
                if let claim = budget.claim(length) {
                    client.inboundClaim = claim
                    return .whole
                }
                client.waiting = true
                let index = client.index
                budget.waitForRoom(length, on: loop) { woken.withLock { $0.append(index) } }
                return .notYet
            }) { event in
                switch event {
                case .message(let message):
                    var claim: BudgetClaim?
                    if message.bytes.readableBytes > threshold, client.streaming == nil {
                        claim = client.inboundClaim
                        client.inboundClaim = nil
                        // Streamed when complete already: no charge needed.
                        #expect(claim == nil || claim?.bytes == message.bytes.readableBytes, "seed \(seed): a charge for another message")
                    }
                    client.delivered.append(.message(Array(message.bytes.readableBytesView)))
                    if let claim { held.append(claim) }
                case .refused(let id, let length):
                    client.delivered.append(.refused(id: id, length: length))
                case .streamStart(_, let bytes):
                    client.streaming = Array(bytes.readableBytesView)
                case .streamBody(let bytes, let isLast):
                    client.streaming!.append(contentsOf: bytes.readableBytesView)
                    if isLast {
                        client.delivered.append(.streamed(client.streaming!))
                        client.streaming = nil
                    }
                }
            }
        }

        func checkInvariants(step: Int) {
            #expect(budget.used - budget.retained <= limit, "seed \(seed) step \(step): \(budget.used - budget.retained) bytes charged to passing messages, limit \(limit)")
            #expect(budget.retained <= limit / 2, "seed \(seed) step \(step): retained \(budget.retained)")
            for client in clients {
                let bound = max(threshold, client.inboundClaim?.bytes ?? 0) + maxRead
                #expect(client.stream.bufferedBytes <= bound, "seed \(seed) step \(step): a client holds \(client.stream.bufferedBytes) bytes, bound \(bound)")
            }
        }

        func wakeUp() throws {
            loop.run()
            for index in woken.withLock({ list in defer { list.removeAll() }; return list }) {
                clients[index].waiting = false
                try feed(clients[index], ByteBuffer())
            }
        }

        var step = 0
        while clients.contains(where: { $0.unsent.readableBytes > 0 || $0.waiting || $0.stream.bufferedBytes > 0 }) || !held.isEmpty {
            step += 1
            try #require(step < 100_000, "seed \(seed): no progress")
            let roll = Int.random(in: 0..<10, using: &rng)
            let readable = clients.filter { !$0.waiting && $0.unsent.readableBytes > 0 }
            if roll < 6, let client = readable.randomElement(using: &rng) {
                // A read for a client whose reads are not held.
                let length = min(client.unsent.readableBytes, Int.random(in: 1...maxRead, using: &rng))
                try feed(client, client.unsent.readSlice(length: length)!)
            } else if roll < 9 {
                if !held.isEmpty { held.remove(at: Int.random(in: 0..<held.count, using: &rng)) }
            } else {
                // A statement copy kept, or one dropped (DEALLOCATE).
                let size = Int.random(in: threshold ... limit / 4, using: &rng)
                if Bool.random(using: &rng), budget.mayRetain(size) {
                    retained.append(budget.claimRetained(size))
                } else if !retained.isEmpty {
                    retained.remove(at: Int.random(in: 0..<retained.count, using: &rng))
                }
            }
            try wakeUp()
            checkInvariants(step: step)
        }
        try wakeUp()

        for (index, client) in clients.enumerated() {
            #expect(!client.waiting && client.inboundClaim == nil && client.stream.bufferedBytes == 0, "seed \(seed): client \(index) left waiting")
            #expect(client.delivered.count == client.expected.count, "seed \(seed): client \(index) got \(client.delivered.count) of \(client.expected.count)")
            for (delivered, expected) in zip(client.delivered, client.expected) {
                switch delivered {
                case .message(let bytes), .streamed(let bytes):
                    #expect(bytes == expected, "seed \(seed): client \(index) got other bytes")
                case .refused(let id, let length):
                    #expect(id == expected[0] && length == expected.count, "seed \(seed): client \(index) skipped another message")
                    #expect(length > limit / 2, "seed \(seed): a message of \(length) refused with limit \(limit)")
                }
            }
        }
        #expect(budget.used == retained.reduce(0) { $0 + $1.bytes }, "seed \(seed): charges not given back")
        retained.removeAll()
        #expect(budget.used == 0 && budget.retained == 0)
        #expect(budget.peak - limit <= limit / 2, "seed \(seed): peak \(budget.peak)")
    }
}
