import NIOCore
import PostgresWire
import Testing
@testable import SwitchyardProxy

/// The injected parameter-synchronisation answers, cut out of the server's stream event by event.
@Suite struct ParameterSyncAnswerTests {
    func answer(_ parameters: [(String, String)], error: ErrorFields? = nil) -> ByteBuffer {
        var buffer = ByteBuffer()
        if let error { error.encode(into: &buffer) } else { BackendMessage.commandComplete("SET", into: &buffer) }
        for (name, value) in parameters { BackendMessage.parameterStatus(name: name, value: value, into: &buffer) }
        BackendMessage.readyForQuery(.idle, into: &buffer)
        return buffer
    }

    @Test func anAnswerSplitAcrossReadsIsCutOutAndTheRestIsTheClients() throws {
        var sync = ParameterSyncAnswer()
        sync.querySent(completingLogin: false)
        var stream = answer([("TimeZone", "UTC"), ("DateStyle", "ISO, DMY")])
        BackendMessage.commandComplete("SELECT 1", into: &stream)   // the client's own answer follows
        var seen: [String] = []
        let note: (ByteBuffer) -> Void = { body in
            if let (name, value) = BackendMessage.decodeParameterStatus(body) { seen.append("\(name)=\(value)") }
        }
        for cut in stride(from: 0, to: 20, by: 7) {
            #expect(try sync.bytesRead(stream.getSlice(at: cut, length: 7)!, parameterStatus: note) == .consumed)
        }
        let outcome = try sync.bytesRead(stream.getSlice(at: 21, length: stream.readableBytes - 21)!, parameterStatus: note)
        guard case .finished(let error, let completesLogin, var rest) = outcome else { Issue.record("\(outcome)"); return }
        #expect(error == nil && !completesLogin)
        #expect(try rest.readWireMessage()?.id == BackendMessageID.commandComplete)
        #expect(rest.readableBytes == 0)
        #expect(seen == ["TimeZone=UTC", "DateStyle=ISO, DMY"])
        #expect(!sync.isAwaiting)
    }

    @Test func aRefusalIsKeptForTheLoginItHoldsUp() throws {
        var sync = ParameterSyncAnswer()
        sync.querySent(completingLogin: true)
        let refusal = ErrorFields(severity: .error, code: "22023", message: "invalid value for parameter \"DateStyle\"")
        let outcome = try sync.bytesRead(answer([], error: refusal)) { _ in }
        #expect(outcome == .finished(error: refusal, completesLogin: true, rest: ByteBuffer()))
    }

    @Test func everyOwedAnswerIsWaitedFor() throws {
        var sync = ParameterSyncAnswer()
        sync.querySent(completingLogin: true)
        sync.querySent(completingLogin: false)
        #expect(try sync.bytesRead(answer([])) { _ in } == .consumed)
        let outcome = try sync.bytesRead(answer([]), parameterStatus: { _ in })
        guard case .finished(_, let completesLogin, _) = outcome else {
            Issue.record("the second answer should finish it"); return
        }
        #expect(completesLogin)
    }

    @Test func aBadLengthIsAnError() throws {
        var sync = ParameterSyncAnswer()
        sync.querySent(completingLogin: false)
        #expect(throws: FrameDecodingError.invalidLength(0)) {
            try sync.bytesRead(ByteBuffer(bytes: [UInt8(ascii: "C"), 0, 0, 0, 0])) { _ in }
        }
    }
}
