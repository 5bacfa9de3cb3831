import Logging
import NIOCore
import PostgresWire

/// The connection of an operator on the admin console, after ``ClientSession`` authenticated it:
/// frames messages, feeds them to ``AdminResponder`` and performs its actions,
/// running commands on ``AdminConsole``.
final class AdminSession: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let console: AdminConsole
    private let user: String
    private let logger: Logger
    private var processor: NIOSingleStepByteToMessageProcessor<FrameDecoder>
    private var machine = AdminResponder()
    private var context: ChannelHandlerContext!

    init(console: AdminConsole, user: String, maximumMessageSize: Int, logger: Logger) {
        self.console = console
        self.user = user
        var logger = logger
        logger[metadataKey: "admin_user"] = "\(user)"
        self.logger = logger
        // Admin commands are short; a megabyte is plenty and bounds what a client can make us buffer.
        self.processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maximumLength: min(maximumMessageSize, 1 << 20)))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        logger.info("admin console login")
        var buffer = context.channel.allocator.buffer(capacity: 256)
        for (name, value) in [("server_version", "15.0 (Switchyard \(SwitchyardVersion.current))"), ("server_encoding", "UTF8"),
                              ("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY"), ("integer_datetimes", "on"),
                              ("standard_conforming_strings", "on"), ("application_name", "")] {
            BackendMessage.parameterStatus(name: name, value: value, into: &buffer)
        }
        BackendMessage.backendKeyData(CancelRequest(processID: 0, secretKey: Int32.random(in: .min ... .max)), into: &buffer)
        BackendMessage.readyForQuery(.idle, into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try processor.process(buffer: unwrapInboundIn(data)) { frame in
                run(machine.messageReceived(frame))
            }
        } catch {
            run([.reply(.error(ErrorFields(severity: .fatal, code: SQLState.protocolViolation, message: "invalid message: \(error)"))), .close])
        }
    }

    /// The client closed its side (client channels allow half-closure): the console has nothing to finish.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case ChannelEvent.inputClosed = event else { return context.fireUserInboundEventTriggered(event) }
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("admin connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    private func run(_ actions: [AdminResponder.Action]) {
        guard context.channel.isActive else { return }
        var buffer = context.channel.allocator.buffer(capacity: 256)
        for action in actions {
            switch action {
            case .reply(let reply):
                reply.encode(into: &buffer)
            case .execute(let command):
                execute(command)
            case .close:
                context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
                context.close(promise: nil)
                return
            }
        }
        if buffer.readableBytes > 0 { context.writeAndFlush(wrapOutboundOut(buffer), promise: nil) }
    }

    private func execute(_ command: AdminCommand) {
        let (console, user, channel) = (self.console, self.user, context.channel)
        let promise = context.eventLoop.makePromise(of: AdminResult.self)
        // Progress arrives as NoticeResponses while the command runs, as Postgres' own NOTICEs do.
        let progress: @Sendable (String) -> Void = { line in
            var buffer = channel.allocator.buffer(capacity: 64 + line.utf8.count)
            ErrorFields(severity: .notice, code: "00000", message: line).encode(into: &buffer, id: BackendMessageID.noticeResponse)
            channel.writeAndFlush(buffer, promise: nil)
        }
        promise.completeWithTask { try await console.execute(command, user: user, progress: progress) }
        promise.futureResult.assumeIsolated().whenComplete { [self] result in
            let outcome = result.mapError { error in
                error as? ErrorFields ?? ErrorFields(severity: .error, code: SQLState.internalError, message: "\(error)")
            }
            run(machine.commandFinished(outcome))
        }
    }
}

/// The version SHOW VERSION and the CLI report.
public enum SwitchyardVersion {
    public static let current = "0.4.0"
}
