import NIOCore
import PostgresWire
import SwitchyardProxy

/// The admin console's framing, command parser and protocol responder, fed a client's byte stream in
/// pieces. Commands "run" at once, alternately succeeding and failing, so both answers are exercised.
enum AdminTargets {
    static func console(_ input: [UInt8]) -> String? {
        var splitter = ReadSplitter(input)
        let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maximumLength: 1 << 16))
        var responder = AdminResponder()
        var out = ByteBuffer()
        var executed = 0
        var closed = false
        var broken: String?
        func perform(_ actions: [AdminResponder.Action]) {
            var actions = actions[...]
            while let action = actions.popFirst() {
                if closed { broken = "an action after close: \(action)"; return }
                switch action {
                case .reply(let reply):
                    reply.encode(into: &out)
                case .execute:
                    executed += 1
                    let result: Result<AdminResult, ErrorFields> = executed % 2 == 0
                        ? .success(AdminResult(messages: ["done"]))
                        : .failure(ErrorFields(severity: .error, code: "55000", message: "refused"))
                    actions = responder.commandFinished(result)[...] + actions
                case .close:
                    closed = true
                }
            }
        }
        do {
            for read in splitter.reads() where !closed {
                try processor.process(buffer: ByteBuffer(bytes: read)) { frame in
                    if !closed { perform(responder.messageReceived(frame)) }
                }
            }
        } catch {
            // The console answers a framing error with a FATAL and closes: nothing to check here.
        }
        if let broken { return "admin console: \(broken)" }
        // Everything the console wrote must frame as server messages.
        while out.readableBytes > 0 {
            guard let message = try? out.readWireMessage() else { return "admin console wrote a malformed message" }
            _ = message
        }
        return nil
    }
}
