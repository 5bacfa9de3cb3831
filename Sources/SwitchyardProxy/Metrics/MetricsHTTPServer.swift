import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The metrics port: a small HTTP/1.1 listener of its own, away from the client port, so a
/// scrape never competes with (or is mistaken for) Postgres traffic. What each path answers is
/// up to `respond`; this type only speaks HTTP.
final class MetricsHTTPServer: Sendable {
    struct Reply: Sendable {
        var status: HTTPResponseStatus
        var contentType = "text/plain; charset=utf-8"
        var body: [UInt8]
    }

    private let channel: Channel

    private init(channel: Channel) { self.channel = channel }

    static func start(host: String, port: Int, group: EventLoopGroup, logger: Logger,
                      respond: @escaping @Sendable (String) async -> Reply) async throws -> MetricsHTTPServer {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(respond: respond, logger: logger))
                }
            }
            .bind(host: host, port: port)
            .get()
        return MetricsHTTPServer(channel: channel)
    }

    var localAddress: SocketAddress? { channel.localAddress }

    func close() async {
        try? await channel.close()
    }
}

/// Answers one request at a time per connection: GET or HEAD of a path, anything else 405.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let respond: @Sendable (String) async -> MetricsHTTPServer.Reply
    private let logger: Logger
    private var request: HTTPRequestHead?

    init(respond: @escaping @Sendable (String) async -> MetricsHTTPServer.Reply, logger: Logger) {
        self.respond = respond
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            answer(head, context: context)
        }
    }

    private func answer(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard head.method == .GET || head.method == .HEAD else {
            return write(.init(status: .methodNotAllowed, body: Array("only GET and HEAD\n".utf8)), for: head, context: context)
        }
        let path = String(head.uri.prefix { $0 != "?" })
        let respond = self.respond
        let promise = context.eventLoop.makePromise(of: MetricsHTTPServer.Reply.self)
        promise.completeWithTask { await respond(path) }
        promise.futureResult.assumeIsolated().whenSuccess { [self] reply in
            write(reply, for: head, context: context)
        }
    }

    private func write(_ reply: MetricsHTTPServer.Reply, for request: HTTPRequestHead, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: reply.contentType)
        headers.add(name: "Content-Length", value: "\(reply.body.count)")
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: reply.status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: reply.body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { done.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) } }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("metrics connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
