import NIOCore
import PostgresWire
import Testing
@testable import SwitchyardProxy

/// The held replica answer, driven event by event: server bytes in, decisions out, no sockets.
@Suite struct HeldAnswerTests {
    func bytes(_ write: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var buffer = ByteBuffer()
        write(&buffer)
        return buffer
    }

    func empty(_ id: UInt8) -> ByteBuffer { bytes { $0.writeMessage(id: id) { _ in } } }

    func error(_ code: String, _ message: String) -> ByteBuffer {
        bytes { ErrorFields(severity: .error, code: code, message: message).encode(into: &$0) }
    }

    func ids(_ buffer: ByteBuffer?) throws -> [Character] {
        guard var buffer else { return [] }
        var seen: [Character] = []
        while let message = try buffer.readWireMessage() { seen.append(Character(Unicode.Scalar(message.id))) }
        return seen
    }

    /// Everything forwarded as is; records what the judge saw.
    final class Judge {
        var seen: [UInt8] = []
        var cut: Set<UInt8> = []
        var madeUpAfter: [UInt8: [UInt8]] = [:]
        func verdict(_ message: WireMessage) -> HeldAnswer.Verdict {
            seen.append(message.id)
            return HeldAnswer.Verdict(forward: !cut.contains(message.id), madeUp: madeUpAfter[message.id] ?? [])
        }
    }

    @Test func rowsReleaseTheAnswerAtTheirFirstByte() throws {
        var hold = HeldAnswer(holding: true)
        let judge = Judge()
        let head = bytes { buffer in
            buffer.writeMessage(id: BackendMessageID.bindComplete) { _ in }
            BackendMessage.rowDescription(columns: ["a"], into: &buffer)
        }
        #expect(try hold.bytesRead(head, judge: judge.verdict) == .wait)
        // Only the DataRow's header has arrived: that is success enough, the row streams.
        let row = bytes { BackendMessage.dataRow([String(repeating: "x", count: 100)], into: &$0) }
        let decision = try hold.bytesRead(row.getSlice(at: 0, length: 7)!, judge: judge.verdict)
        guard case .release(let toClient, let rest) = decision else { Issue.record("\(decision)"); return }
        #expect(try ids(toClient) == ["2", "T"])
        #expect(rest.readableBytes == 7)
        #expect(!hold.isHolding)
        #expect(judge.seen == [BackendMessageID.bindComplete, BackendMessageID.rowDescription])
    }

    @Test func aReplicaRefusalIsRerunWithoutTheClientSeeingIt() throws {
        var hold = HeldAnswer(holding: true)
        let judge = Judge()
        let refusal = error(SQLState.readOnlySQLTransaction, "cannot execute INSERT in a read-only transaction")
        // Split inside the error: nothing decided until the whole answer is in.
        #expect(try hold.bytesRead(refusal.getSlice(at: 0, length: 9)!, judge: judge.verdict) == .wait)
        #expect(hold.hasUnjudgedBytes)
        var tail = refusal.getSlice(at: 9, length: refusal.readableBytes - 9)!
        BackendMessage.readyForQuery(.idle, into: &tail)
        #expect(try hold.bytesRead(tail, judge: judge.verdict) == .rerun)
        #expect(!hold.isHolding)
    }

    @Test func aRefusedAnswerIsNotReleasedByWhatFollowsTheError() throws {
        // After a refusal in a pipeline, later messages may show "success" (an EmptyQueryResponse of a
        // later statement): the refused unit still reruns as a whole.
        var hold = HeldAnswer(holding: true)
        let judge = Judge()
        var answer = error(SQLState.readOnlySQLTransaction, "cannot execute UPDATE in a read-only transaction")
        answer.writeImmutableBuffer(empty(BackendMessageID.emptyQueryResponse))
        BackendMessage.readyForQuery(.idle, into: &answer)
        #expect(try hold.bytesRead(answer, judge: judge.verdict) == .rerun)
    }

    @Test func otherErrorsReachTheClientAtReadyForQuery() throws {
        var hold = HeldAnswer(holding: true)
        var answer = error("42P01", "relation \"nope\" does not exist")
        BackendMessage.readyForQuery(.idle, into: &answer)
        let decision = try hold.bytesRead(answer, judge: Judge().verdict)
        guard case .release(let toClient, let rest) = decision else { Issue.record("\(decision)"); return }
        #expect(try ids(toClient) == ["E", "Z"])
        #expect(rest.readableBytes == 0)
    }

    @Test func anAbsorbedParseAnswerJoinsTheHeldCopy() throws {
        // The client's Parse was absorbed (the server had the statement): its made-up ParseComplete must
        // come first, then the server's own answers.
        var hold = HeldAnswer(holding: true)
        hold.madeUpAnswersAdded([BackendMessageID.parseComplete])
        var answer = empty(BackendMessageID.bindComplete)
        BackendMessage.dataRow(["1"], into: &answer)
        let decision = try hold.bytesRead(answer, judge: Judge().verdict)
        guard case .release(let toClient, let rest) = decision else { Issue.record("\(decision)"); return }
        #expect(try ids(toClient) == ["1", "2"])
        #expect(try ids(rest) == ["D"])
    }

    @Test func injectedAnswersAreCutAndMadeUpOnesAdded() throws {
        var hold = HeldAnswer(holding: true)
        let judge = Judge()
        judge.cut = [BackendMessageID.parseComplete]                                // a re-Parse Switchyard injected
        judge.madeUpAfter = [BackendMessageID.bindComplete: [BackendMessageID.closeComplete]]
        var answer = empty(BackendMessageID.parseComplete)
        answer.writeImmutableBuffer(empty(BackendMessageID.bindComplete))
        BackendMessage.commandComplete("SELECT 0", into: &answer)                     // success (a Flush, no Sync)
        let decision = try hold.bytesRead(answer, judge: judge.verdict)
        guard case .release(let toClient, let rest) = decision else { Issue.record("\(decision)"); return }
        #expect(try ids(toClient) == ["2", "3"])
        #expect(try ids(rest) == ["C"])
    }

    @Test func notHoldingPassesEverythingThrough() throws {
        var hold = HeldAnswer(holding: false)
        let answer = empty(BackendMessageID.noData)
        #expect(try hold.bytesRead(answer, judge: Judge().verdict) == .release(toClient: nil, rest: answer))
    }

    @Test func aBadLengthIsAnError() throws {
        var hold = HeldAnswer(holding: true)
        let bad = ByteBuffer(bytes: [UInt8(ascii: "Z"), 0, 0, 0, 2, 0])
        #expect(throws: FrameDecodingError.invalidLength(2)) { try hold.bytesRead(bad, judge: Judge().verdict) }
    }
}
