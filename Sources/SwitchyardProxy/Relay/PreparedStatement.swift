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

    init(definition: ByteBuffer) {
        // Our own copy: a slice would pin the client's receive buffer for the session's lifetime.
        self.definition = ByteBuffer(bytes: definition.readableBytesView)
        let digest = SHA256.hash(data: Array(definition.readableBytesView))
        self.serverName = "sy_" + digest.prefix(12).map { String($0, radix: 16).leftPadded(to: 2) }.joined()
    }

    /// The Parse message that creates this statement on a server.
    func parseMessage(allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: serverName.utf8.count + definition.readableBytes + 7)
        buffer.writeMessage(id: FrontendMessageID.parse) { body in
            body.writeNullTerminatedString(serverName)
            body.writeImmutableBuffer(definition)
        }
        return buffer
    }
}

/// The statement names inside extended-protocol messages, read and rewritten.
enum StatementNames {
    /// Parse: the statement name and the rest of the body.
    static func parse(_ message: WireMessage) -> (name: String, definition: ByteBuffer)? {
        var body = message.body
        guard let name = body.readNullTerminatedString() else { return nil }
        return (name, body)
    }

    /// Bind: the portal name, the statement name and the rest (parameters, formats).
    static func bind(_ message: WireMessage) -> (portal: String, statement: String, rest: ByteBuffer)? {
        var body = message.body
        guard let portal = body.readNullTerminatedString(), let statement = body.readNullTerminatedString() else { return nil }
        return (portal, statement, body)
    }

    /// Describe and Close: the target kind (`S` statement or `P` portal) and its name.
    static func target(_ message: WireMessage) -> (kind: UInt8, name: String)? {
        var body = message.body
        guard let kind = body.readInteger(as: UInt8.self), let name = body.readNullTerminatedString() else { return nil }
        return (kind, name)
    }

    static func rewriteBind(_ bind: (portal: String, statement: String, rest: ByteBuffer), to serverName: String,
                            allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: bind.rest.readableBytes + serverName.utf8.count + bind.portal.utf8.count + 7)
        buffer.writeMessage(id: FrontendMessageID.bind) { body in
            body.writeNullTerminatedString(bind.portal)
            body.writeNullTerminatedString(serverName)
            body.writeImmutableBuffer(bind.rest)
        }
        return buffer
    }

    static func rewriteTarget(id: UInt8, kind: UInt8, to name: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: name.utf8.count + 7)
        buffer.writeMessage(id: id) { body in
            body.writeInteger(kind)
            body.writeNullTerminatedString(name)
        }
        return buffer
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
