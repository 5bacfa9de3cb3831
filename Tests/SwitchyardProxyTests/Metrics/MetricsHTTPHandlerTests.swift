import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import SwitchyardProxy

/// The paths the handler asked its `respond` closure about.
actor MetricsPathLog {
    private(set) var paths: [String] = []
    func record(_ path: String) { paths.append(path) }
}

/// `MetricsHTTPHandler` on a `NIOAsyncTestingChannel`: HTTP parts in, HTTP parts out. The reply is
/// produced by an async closure, so the tests wait for the outbound writes rather than poll.
@Suite(.timeLimit(.minutes(1)))
struct MetricsHTTPHandlerTests {
    struct Response {
        var head: HTTPResponseHead
        var body: [UInt8]
        var bodyParts: Int
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    static let metricsBody = "# TYPE switchyard_up gauge\nswitchyard_up 1\n"

    static func reply(to path: String) -> MetricsHTTPServer.Reply {
        switch path {
        case "/metrics":
            MetricsHTTPServer.Reply(status: .ok, contentType: "text/plain; version=0.0.4", body: Array(metricsBody.utf8))
        case "/health":
            MetricsHTTPServer.Reply(status: .serviceUnavailable, body: Array("paused\n".utf8))
        default:
            MetricsHTTPServer.Reply(status: .notFound, body: Array("not found\n".utf8))
        }
    }

    func makeChannel(log: MetricsPathLog) async throws -> NIOAsyncTestingChannel {
        let logger = Logger(label: "metrics-test")
        let channel = try await NIOAsyncTestingChannel { channel in
            let handler = MetricsHTTPHandler(respond: { path in
                await log.record(path)
                return Self.reply(to: path)
            }, logger: logger)
            try channel.pipeline.syncOperations.addHandler(handler)
        }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 45678)).get()
        #expect(channel.isActive)
        return channel
    }

    func send(_ method: HTTPMethod, _ uri: String, version: HTTPVersion = .http1_1, headers: HTTPHeaders = [:],
              body: String? = nil, to channel: NIOAsyncTestingChannel) async throws {
        try await channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: version, method: method, uri: uri, headers: headers)))
        if let body { try await channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: body))) }
        try await channel.writeInbound(HTTPServerRequestPart.end(nil))
    }

    func receive(from channel: NIOAsyncTestingChannel, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Response {
        let first = try await channel.waitForOutboundWrite(as: HTTPServerResponsePart.self)
        guard case .head(let head) = first else {
            Issue.record("expected a response head, got \(first)", sourceLocation: sourceLocation)
            throw ChannelError.inappropriateOperationForState
        }
        var response = Response(head: head, body: [], bodyParts: 0)
        while true {
            switch try await channel.waitForOutboundWrite(as: HTTPServerResponsePart.self) {
            case .body(.byteBuffer(let buffer)):
                response.body += Array(buffer.readableBytesView)
                response.bodyParts += 1
            case .body(.fileRegion):
                Issue.record("unexpected file region", sourceLocation: sourceLocation)
            case .head(let extra):
                Issue.record("second response head \(extra)", sourceLocation: sourceLocation)
            case .end(let trailers):
                #expect(trailers == nil, sourceLocation: sourceLocation)
                return response
            }
        }
    }

    @Test func getOfAPathAnswersTheReplyWithContentLength() async throws {
        let log = MetricsPathLog()
        let channel = try await makeChannel(log: log)
        try await send(.GET, "/metrics", to: channel)
        let response = try await receive(from: channel)
        #expect(response.head.status == .ok)
        #expect(response.head.version == .http1_1)
        #expect(response.text == Self.metricsBody)
        #expect(response.head.headers["Content-Length"] == ["\(Self.metricsBody.utf8.count)"])
        #expect(response.head.headers["Content-Length"] == ["43"])
        #expect(response.head.headers["Content-Type"] == ["text/plain; version=0.0.4"])
        #expect(response.head.headers["Connection"] == [], "HTTP/1.1 keeps the connection open")
        #expect(await log.paths == ["/metrics"])
        #expect(channel.isActive)
        _ = try await channel.finish()
    }

    @Test func statusAndDefaultContentTypeComeFromTheReply() async throws {
        let log = MetricsPathLog()
        let channel = try await makeChannel(log: log)
        try await send(.GET, "/health", to: channel)
        let response = try await receive(from: channel)
        #expect(response.head.status == .serviceUnavailable)
        #expect(response.text == "paused\n")
        #expect(response.head.headers["Content-Length"] == ["7"])
        #expect(response.head.headers["Content-Type"] == ["text/plain; charset=utf-8"])
        _ = try await channel.finish()
    }

    @Test func queryStringIsNotPartOfThePath() async throws {
        let log = MetricsPathLog()
        let channel = try await makeChannel(log: log)
        try await send(.GET, "/metrics?name[]=switchyard_up", to: channel)
        let response = try await receive(from: channel)
        #expect(response.head.status == .ok)
        #expect(await log.paths == ["/metrics"])
        _ = try await channel.finish()
    }

    @Test func unknownPathIsWhateverRespondSays() async throws {
        let log = MetricsPathLog()
        let channel = try await makeChannel(log: log)
        try await send(.GET, "/nope", to: channel)
        let response = try await receive(from: channel)
        #expect(response.head.status == .notFound)
        #expect(response.text == "not found\n")
        #expect(response.head.headers["Content-Length"] == ["10"])
        #expect(await log.paths == ["/nope"])
        _ = try await channel.finish()
    }

    @Test(arguments: [HTTPMethod.POST, .PUT, .DELETE, .PATCH])
    func otherMethodsGet405WithoutAskingRespond(method: HTTPMethod) async throws {
        let log = MetricsPathLog()
        let channel = try await makeChannel(log: log)
        try await send(method, "/metrics", body: "x=1", to: channel)
        let response = try await receive(from: channel)
        #expect(response.head.status == .methodNotAllowed)
        #expect(response.head.status.code == 405)
        #expect(response.text == "only GET and HEAD\n")
        #expect(response.head.headers["Content-Length"] == ["18"])
        #expect(await log.paths == [])
        _ = try await channel.finish()
    }

    @Test func headAnswersHeadersWithoutABody() async throws {
        let log = MetricsPathLog()
        let channel = try await makeChannel(log: log)
        try await send(.HEAD, "/metrics", to: channel)
        let response = try await receive(from: channel)
        #expect(response.head.status == .ok)
        #expect(response.bodyParts == 0)
        #expect(response.body.isEmpty)
        #expect(response.head.headers["Content-Length"] == ["\(Self.metricsBody.utf8.count)"])
        #expect(await log.paths == ["/metrics"])
        _ = try await channel.finish()
    }

    @Test func keepAliveConnectionAnswersSeveralRequestsInTurn() async throws {
        let log = MetricsPathLog()
        let channel = try await makeChannel(log: log)
        try await send(.GET, "/metrics", to: channel)
        let first = try await receive(from: channel)
        try await send(.GET, "/health", to: channel)
        let second = try await receive(from: channel)
        #expect(first.head.status == .ok)
        #expect(second.head.status == .serviceUnavailable)
        #expect(await log.paths == ["/metrics", "/health"])
        #expect(channel.isActive)
        _ = try await channel.finish()
    }

    @Test func http10WithoutKeepAliveClosesAfterTheReply() async throws {
        let log = MetricsPathLog()
        let channel = try await makeChannel(log: log)
        try await send(.GET, "/metrics", version: .http1_0, to: channel)
        let response = try await receive(from: channel)
        #expect(response.head.version == .http1_0)
        #expect(response.head.headers["Connection"] == ["close"])
        #expect(response.text == Self.metricsBody)
        try await channel.closeFuture.get()
        #expect(!channel.isActive)
        _ = try await channel.finish(acceptAlreadyClosed: true)
    }

    @Test func connectionCloseRequestHeaderClosesAfterTheReply() async throws {
        let log = MetricsPathLog()
        let channel = try await makeChannel(log: log)
        try await send(.GET, "/metrics", headers: ["Connection": "close"], to: channel)
        let response = try await receive(from: channel)
        #expect(response.head.headers["Connection"] == ["close"])
        try await channel.closeFuture.get()
        _ = try await channel.finish(acceptAlreadyClosed: true)
    }
}
