import Crypto
import NIOCore
import PostgresWire

/// A client's named prepared statement, as transaction pooling keeps it: the client's name maps
/// to a server-side name derived from the statement itself, so any pooled server can be given
/// the statement on demand, and clients preparing the same statement share it on each server.
struct PreparedStatement {
    let serverName: String
    /// The Parse body after the statement name: query text, parameter count and type OIDs.
    let definition: ByteBuffer
    /// A large copy is charged to the memory budget for as long as the client keeps the statement.
    private let claim: BudgetClaim?

    init(definition: ByteBuffer, budget: MemoryBudget? = nil) {
        // Our own copy: a slice would pin the client's receive buffer for the session's lifetime.
        self.definition = ByteBuffer(bytes: definition.readableBytesView)
        self.claim = definition.readableBytes > Self.chargedSize ? budget?.claimRetained(definition.readableBytes) : nil
        let digest = SHA256.hash(data: Array(definition.readableBytesView))
        self.serverName = "sy_" + digest.prefix(12).map { String($0, radix: 16).leftPadded(to: 2) }.joined()
    }

    /// Copies up to this size are too small to charge (the budget is for what can be large).
    static let chargedSize = 64 << 10

    /// The Parse message's size, for sizing the buffer it is written into.
    var parseMessageLength: Int { serverName.utf8.count + definition.readableBytes + 7 }

    /// Writes the Parse message that creates this statement on a server.
    func encodeParse(into buffer: inout ByteBuffer) {
        ParseMessage.encode(statement: serverName, definition: definition, into: &buffer)
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
