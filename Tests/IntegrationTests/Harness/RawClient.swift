import Foundation
import Synchronization
import SwitchyardProxy

/// A plain blocking TCP socket (POSIX), so tests can send exactly the bytes they want.
final class RawSocket: @unchecked Sendable {
    // @unchecked: used by one task at a time; `fd` is immutable.
    let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    static func connect(host: String = "127.0.0.1", port: Int, timeout: Duration = .seconds(5)) throws -> RawSocket {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket() failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        // Non-blocking connect bounded by poll, then back to blocking mode.
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Foundation.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if result != 0 {
            guard errno == EINPROGRESS else {
                let error = errno
                Foundation.close(fd)
                throw SocketError.connectFailed(errno: error)
            }
            var pollfd = Foundation.pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&pollfd, 1, Int32(timeout.milliseconds))
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
            guard ready == 1, soError == 0 else {
                Foundation.close(fd)
                throw ready == 1 ? SocketError.connectFailed(errno: soError) : SocketError.timedOut("connect")
            }
        }
        _ = fcntl(fd, F_SETFL, flags)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        // A send the proxy never drains fails after 30 s instead of blocking a thread forever.
        var sendTimeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, socklen_t(MemoryLayout<timeval>.size))
        return RawSocket(fd: fd)
    }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw SocketError.sendFailed(errno: errno) }
            sent += n
        }
    }

    /// Reads whatever arrives (up to `limit` bytes). Empty means the peer closed the connection.
    func receive(limit: Int = 65536, timeout: Duration) throws -> [UInt8] {
        var pollfd = Foundation.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pollfd, 1, Int32(timeout.milliseconds)) == 1 else { throw SocketError.timedOut("receive") }
        var buffer = [UInt8](repeating: 0, count: limit)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, limit, 0) }
        if n < 0 {
            if errno == ECONNRESET { return [] }
            throw SocketError.receiveFailed(errno: errno)
        }
        return Array(buffer[..<n])
    }

    /// Shuts both directions down, waking a thread blocked in `send` on this socket.
    func shutdownBoth() {
        _ = Foundation.shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Closes with RST instead of FIN (SO_LINGER 0): the client process "crashed".
    func abort() {
        var linger = Foundation.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Foundation.linger>.size))
        close()
    }

    private let closed = Mutex(false)

    func close() {
        let wasOpen = closed.withLock { closed in defer { closed = true }; return !closed }
        if wasOpen { Foundation.close(fd) }
    }

    deinit { close() }
}

enum SocketError: Error, CustomStringConvertible {
    case connectFailed(errno: Int32), sendFailed(errno: Int32), receiveFailed(errno: Int32), timedOut(String)

    var description: String {
        switch self {
        case .connectFailed(let e): "connect failed: \(String(cString: strerror(e)))"
        case .sendFailed(let e): "send failed: \(String(cString: strerror(e)))"
        case .receiveFailed(let e): "recv failed: \(String(cString: strerror(e)))"
        case .timedOut(let what): "\(what) timed out"
        }
    }

    var isConnectionRefused: Bool {
        if case .connectFailed(let e) = self { return e == ECONNREFUSED }
        return false
    }
}

extension Duration {
    var milliseconds: Int {
        let (seconds, attoseconds) = components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}

/// Builders for the frontend bytes the raw tests send.
enum Wire {
    static func startup(_ parameters: [(String, String)], version: Int32 = 196_608) -> [UInt8] {
        var body = int32(version)
        for (name, value) in parameters { body += cString(name) + cString(value) }
        body.append(0)
        return int32(Int32(body.count + 4)) + body
    }

    static func startup(user: String, database: String) -> [UInt8] {
        startup([("user", user), ("database", database)])
    }

    static let sslRequest = int32(8) + int32(80_877_103)
    static let gssEncryptionRequest = int32(8) + int32(80_877_104)

    /// A typed message: type byte, length (including itself), body.
    static func message(_ id: Character, _ body: [UInt8] = []) -> [UInt8] {
        [id.asciiValue!] + int32(Int32(body.count + 4)) + body
    }

    static func query(_ sql: String) -> [UInt8] { message("Q", cString(sql)) }

    /// Parse, Bind, Execute and Sync for `sql` (unnamed statement and portal, no parameters,
    /// text results): one extended-protocol round trip, answered 1, 2, DataRow…, C, Z.
    static func extendedQuery(_ sql: String) -> [UInt8] {
        message("P", cString("") + cString(sql) + [0, 0])
            + message("B", cString("") + cString("") + [0, 0, 0, 0, 0, 0])
            + message("E", cString("") + int32(0))
            + message("S")
    }
    static let terminate = message("X")

    static func int32(_ value: Int32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }
    static func cString(_ string: String) -> [UInt8] { Array(string.utf8) + [0] }
}

/// One backend message as the raw client saw it. Bodies of huge messages are skipped, not kept.
struct BackendFrame: Sendable, CustomStringConvertible {
    var id: Character
    var bodyLength: Int
    var body: [UInt8]

    /// The fields of an ErrorResponse or NoticeResponse, keyed by field type (S, V, C, M, …).
    var fields: [Character: String] {
        var result: [Character: String] = [:]
        var index = 0
        while index < body.count, body[index] != 0 {
            let type = Character(Unicode.Scalar(body[index]))
            index += 1
            let end = body[index...].firstIndex(of: 0) ?? body.count
            result[type] = String(decoding: body[index..<end], as: UTF8.self)
            index = end + 1
        }
        return result
    }

    var isError: Bool { id == "E" }
    var sqlState: String? { isError ? fields["C"] : nil }
    var severity: String? { fields["V"] ?? fields["S"] }
    var message: String? { fields["M"] }

    var description: String {
        switch id {
        case "E", "N": "\(id)(\(severity ?? "?") \(fields["C"] ?? "?"): \(message ?? ""))"
        case "C": "C(\(String(decoding: body.prefix { $0 != 0 }, as: UTF8.self)))"
        case "Z": "Z(\(body.first.map { Character(Unicode.Scalar($0)) } ?? "?"))"
        default: "\(id)[\(bodyLength)]"
        }
    }
}

/// The proxy refused the login with this ErrorResponse.
struct LoginFailed: Error, CustomStringConvertible {
    var error: BackendFrame
    var description: String { "login failed: \(error)" }
}

/// A tiny frontend over ``RawSocket``: it speaks just enough of the protocol (start-up, trust or
/// SCRAM login, simple Query) for tests that need to misbehave on purpose. Every read has a deadline.
final class RawClient: @unchecked Sendable {
    // @unchecked: one task at a time drives a client; every call runs on a Dispatch thread.
    let socket: RawSocket
    private var buffer: [UInt8] = []
    private var bufferStart = 0
    private(set) var peerClosed = false
    /// BackendKeyData and ParameterStatus seen at login.
    private(set) var processID: Int32?
    private(set) var parameters: [String: String] = [:]

    init(socket: RawSocket) { self.socket = socket }

    static func connect(port: Int) async throws -> RawClient {
        try await offload { RawClient(socket: try RawSocket.connect(port: port)) }
    }

    /// Connects and logs in (trust, cleartext or SCRAM-SHA-256), returning once ReadyForQuery arrived.
    static func login(
        port: Int, user: String = "app_trust", database: String = "app", password: String? = nil
    ) async throws -> RawClient {
        let client = try await connect(port: port)
        try await client.login(user: user, database: database, password: password ?? TestEnvironment.passwords[user])
        return client
    }

    func send(_ bytes: [UInt8]) async throws {
        try await offload { try self.socket.send(bytes) }
    }

    /// The next single byte (the answer to SSLRequest / GSSENCRequest); nil if the connection closed.
    func readByte(timeout: Duration = .seconds(5)) async throws -> UInt8? {
        try await offload { try self.fill(1, deadline: .now + timeout) ? self.take(1)[0] : nil }
    }

    /// The next message, or nil when the connection closed. Bodies above `keepingBodiesUpTo` are skipped.
    func readMessage(timeout: Duration = .seconds(10), keepingBodiesUpTo limit: Int = 1 << 20) async throws -> BackendFrame? {
        try await offload { try self.nextFrame(deadline: .now + timeout, keep: limit) }
    }

    /// Messages until ReadyForQuery (included), or until the connection closes.
    func readUntilReady(timeout: Duration = .seconds(10), keepingBodiesUpTo limit: Int = 1 << 20) async throws -> [BackendFrame] {
        try await offload {
            let deadline = ContinuousClock.now + timeout
            var frames: [BackendFrame] = []
            while let frame = try self.nextFrame(deadline: deadline, keep: limit) {
                frames.append(frame)
                if frame.id == "Z" { break }
            }
            return frames
        }
    }

    /// Everything until the proxy closes the connection; throws if it stays open past `timeout`.
    func readUntilClosed(timeout: Duration = .seconds(10)) async throws -> [BackendFrame] {
        try await offload {
            let deadline = ContinuousClock.now + timeout
            var frames: [BackendFrame] = []
            while let frame = try self.nextFrame(deadline: deadline, keep: 1 << 20) { frames.append(frame) }
            return frames
        }
    }

    /// Sends a simple Query and returns the reply up to ReadyForQuery.
    func query(_ sql: String, timeout: Duration = .seconds(10)) async throws -> [BackendFrame] {
        try await send(Wire.query(sql))
        return try await readUntilReady(timeout: timeout)
    }

    func close() { socket.close() }
    func abort() { socket.abort() }

    // MARK: Login

    func login(user: String, database: String, password: String?) async throws {
        try await send(Wire.startup(user: user, database: database))
        var scram: SCRAMClientExchange?
        while true {
            guard let frame = try await readMessage() else { throw HarnessError("connection closed during login") }
            switch frame.id {
            case "R":
                let code = Wire.int32Value(frame.body, at: 0)
                let data = Array(frame.body.dropFirst(4))
                switch code {
                case 0: break
                case 3:
                    try await send(Wire.message("p", Wire.cString(password ?? "")))
                case 10:
                    let exchange = SCRAMClientExchange(password: password ?? "", clientNonce: SCRAMServerExchange.randomNonce())
                    scram = exchange
                    let first = exchange.clientFirstMessage()
                    try await send(Wire.message("p", Wire.cString("SCRAM-SHA-256") + Wire.int32(Int32(first.count)) + first))
                case 11:
                    guard var exchange = scram, case .success(let reply) = exchange.receiveServerFirst(data) else {
                        throw HarnessError("SCRAM exchange failed")
                    }
                    scram = exchange
                    try await send(Wire.message("p", reply))
                case 12:
                    guard let exchange = scram, case .success = exchange.verifyServerFinal(data) else {
                        throw HarnessError("proxy's SCRAM signature did not verify")
                    }
                default:
                    throw HarnessError("unsupported authentication request \(code)")
                }
            case "K":
                processID = Wire.int32Value(frame.body, at: 0)
            case "S":
                let parts = frame.body.split(separator: 0, omittingEmptySubsequences: false)
                if parts.count >= 2 { parameters[String(decoding: parts[0], as: UTF8.self)] = String(decoding: parts[1], as: UTF8.self) }
            case "E":
                throw LoginFailed(error: frame)
            case "Z":
                return
            default:
                continue
            }
        }
    }

    /// Sends `bytes` in `chunkSize` pieces with a pause after each, so they arrive in separate segments.
    func sendSlowly(_ bytes: [UInt8], chunkSize: Int, pause: Duration) async throws {
        try await offload {
            for start in stride(from: 0, to: bytes.count, by: chunkSize) {
                try self.socket.send(Array(bytes[start..<min(start + chunkSize, bytes.count)]))
                usleep(useconds_t(pause.milliseconds * 1000))
            }
        }
    }

    /// Sends one Query message whose SQL is `prefix`, then `count` bytes of `filler`, then `suffix`,
    /// generated 1 MiB at a time, so even a huge message costs this process no memory.
    func sendLargeQuery(prefix: String, filler: UInt8, count: Int, suffix: String) async throws {
        try await offload {
            let bodyLength = prefix.utf8.count + count + suffix.utf8.count + 1
            try self.socket.send([UInt8(ascii: "Q")] + Wire.int32(Int32(bodyLength + 4)) + Array(prefix.utf8))
            let chunk = [UInt8](repeating: filler, count: 1 << 20)
            var remaining = count
            while remaining > 0 {
                let step = min(remaining, chunk.count)
                try self.socket.send(step == chunk.count ? chunk : Array(chunk[..<step]))
                remaining -= step
            }
            try self.socket.send(Wire.cString(suffix))
        }
    }

    // MARK: Buffered reading (on a Dispatch thread)

    private var available: Int { buffer.count - bufferStart }

    /// Makes `count` bytes available; false if the connection closed first.
    private func fill(_ count: Int, deadline: ContinuousClock.Instant) throws -> Bool {
        while available < count {
            if peerClosed { return false }
            let remaining = deadline - .now
            guard remaining > .zero else { throw SocketError.timedOut("waiting for data from the proxy") }
            let bytes = try socket.receive(limit: 256 * 1024, timeout: remaining)
            if bytes.isEmpty { peerClosed = true; return false }
            if bufferStart > 0 {
                buffer.removeFirst(bufferStart)
                bufferStart = 0
            }
            buffer += bytes
        }
        return true
    }

    private func take(_ count: Int) -> [UInt8] {
        defer { bufferStart += count }
        return Array(buffer[bufferStart..<bufferStart + count])
    }

    private func nextFrame(deadline: ContinuousClock.Instant, keep limit: Int) throws -> BackendFrame? {
        guard try fill(5, deadline: deadline) else {
            if available > 0 { throw HarnessError("connection closed inside a message header") }
            return nil
        }
        let header = take(5)
        let id = Character(Unicode.Scalar(header[0]))
        let bodyLength = Int(Wire.int32Value(header, at: 1)) - 4
        guard bodyLength >= 0 else { throw HarnessError("invalid length in message \(id)") }
        if bodyLength <= limit {
            guard try fill(bodyLength, deadline: deadline) else { throw HarnessError("connection closed inside message \(id)") }
            return BackendFrame(id: id, bodyLength: bodyLength, body: take(bodyLength))
        }
        // Skip a huge body chunk by chunk, so reading it costs no memory.
        var remaining = bodyLength
        while remaining > 0 {
            if available == 0 { guard try fill(1, deadline: deadline) else { throw HarnessError("connection closed inside message \(id)") } }
            let step = min(remaining, available)
            bufferStart += step
            remaining -= step
        }
        return BackendFrame(id: id, bodyLength: bodyLength, body: [])
    }
}

extension Wire {
    static func int32Value(_ bytes: some Collection<UInt8>, at offset: Int) -> Int32 {
        let start = bytes.index(bytes.startIndex, offsetBy: offset)
        return bytes[start...].prefix(4).reduce(Int32(0)) { $0 << 8 | Int32($1) }
    }
}

extension [BackendFrame] {
    var errors: [BackendFrame] { filter(\.isError) }
    var firstError: BackendFrame? { first(where: \.isError) }
    var commandTags: [String] { filter { $0.id == "C" }.map { String(decoding: $0.body.prefix { $0 != 0 }, as: UTF8.self) } }
    /// Text values of the first column of every DataRow.
    var firstColumn: [String?] {
        filter { $0.id == "D" }.map { frame in
            let length = Wire.int32Value(frame.body, at: 2)
            return length < 0 ? nil : String(decoding: frame.body.dropFirst(6).prefix(Int(length)), as: UTF8.self)
        }
    }
}
