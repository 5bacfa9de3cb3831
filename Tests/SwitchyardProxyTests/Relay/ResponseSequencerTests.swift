import PostgresWire
import Testing
@testable import SwitchyardProxy

@Suite struct ResponseSequencerTests {
    typealias R = ResponseSequencer.Request
    let parseComplete = BackendMessageID.parseComplete
    let bindComplete = BackendMessageID.bindComplete

    @Test func forwardsEverythingForPlainRequests() {
        var sequencer = ResponseSequencer()
        for request in [R.parse, .bind, .execute, .sync] { #expect(sequencer.sent(request) == []) }
        for id in [parseComplete, bindComplete, BackendMessageID.dataRow, BackendMessageID.commandComplete, BackendMessageID.readyForQuery] {
            #expect(sequencer.received(id).forward)
        }
        #expect(sequencer.isEmpty)
    }

    @Test func dropsTheAnswerToAnInjectedParse() {
        var sequencer = ResponseSequencer()
        _ = sequencer.sent(.parse, disposition: .swallow, tag: 7)
        _ = sequencer.sent(.bind)
        let injected = sequencer.received(parseComplete)
        #expect(!injected.forward)
        #expect(injected.failedTags == [])
        #expect(sequencer.received(bindComplete).forward)
    }

    @Test func synthesizesParseCompleteInOrder() {
        var sequencer = ResponseSequencer()
        _ = sequencer.sent(.execute)                                  // earlier request still running
        #expect(sequencer.sent(.parse, disposition: .synthesize(parseComplete)) == [], "must wait for Execute's answer")
        _ = sequencer.sent(.bind)
        #expect(sequencer.received(BackendMessageID.dataRow).synthesizedAfter == [])
        #expect(sequencer.received(BackendMessageID.commandComplete).synthesizedAfter == [parseComplete])
        #expect(sequencer.received(bindComplete).forward)
    }

    @Test func synthesizesAtOnceWhenNothingIsPending() {
        var sequencer = ResponseSequencer()
        #expect(sequencer.sent(.parse, disposition: .synthesize(parseComplete)) == [parseComplete])
        #expect(sequencer.isEmpty)
    }

    @Test func anErrorReportsTheTaggedRequestsTheServerDidNotRun() {
        var sequencer = ResponseSequencer()
        _ = sequencer.sent(.parse, tag: 1)
        _ = sequencer.sent(.parse, disposition: .swallow, tag: 2)
        _ = sequencer.sent(.bind)
        _ = sequencer.sent(.sync)
        #expect(sequencer.received(BackendMessageID.errorResponse).failedTags == [1, 2])
        #expect(!sequencer.hasSwallowPending)
    }

    @Test func anErrorSkipsEverythingUpToSyncIncludingAbsorbedRequests() {
        var sequencer = ResponseSequencer()
        _ = sequencer.sent(.bind)
        _ = sequencer.sent(.parse, disposition: .synthesize(parseComplete))
        _ = sequencer.sent(.execute)
        _ = sequencer.sent(.sync)
        let error = sequencer.received(BackendMessageID.errorResponse)
        #expect(error.forward && error.synthesizedAfter == [], "the server skipped the Parse, so no ParseComplete")
        #expect(sequencer.received(BackendMessageID.readyForQuery).forward)
        #expect(sequencer.isEmpty)
    }

    @Test func requestsSentAfterAnErrorButBeforeSyncExpectNoAnswer() {
        var sequencer = ResponseSequencer()
        _ = sequencer.sent(.parse)
        _ = sequencer.received(BackendMessageID.errorResponse)
        #expect(sequencer.sent(.bind) == [])
        #expect(sequencer.sent(.parse, disposition: .synthesize(parseComplete)) == [])
        _ = sequencer.sent(.sync)
        #expect(sequencer.received(BackendMessageID.readyForQuery).forward)
        #expect(sequencer.isEmpty)
    }

    @Test func simpleQueryErrorsDoNotEndTheQuery() {
        var sequencer = ResponseSequencer()
        _ = sequencer.sent(.query)
        _ = sequencer.received(BackendMessageID.errorResponse)
        #expect(!sequencer.isEmpty)
        _ = sequencer.received(BackendMessageID.readyForQuery)
        #expect(sequencer.isEmpty)
    }

    @Test func statementDescribeEndsAtRowDescriptionOrNoData() {
        var sequencer = ResponseSequencer()
        _ = sequencer.sent(.describe)
        _ = sequencer.sent(.close, disposition: .synthesize(BackendMessageID.closeComplete))
        #expect(sequencer.received(BackendMessageID.parameterDescription).synthesizedAfter == [])
        #expect(sequencer.received(BackendMessageID.noData).synthesizedAfter == [BackendMessageID.closeComplete])
    }
}

@Suite struct ResponseSequencerFailedBatchTests {
    @Test func syncAfterAnExtendedErrorReportsTheFailedBatch() {
        var sequencer = ResponseSequencer()
        for request in [ResponseSequencer.Request.parse, .bind, .execute] { _ = sequencer.sent(request) }
        #expect(sequencer.received(BackendMessageID.errorResponse).forward)
        _ = sequencer.sent(.sync, disposition: .swallow)   // a Sync of Switchyard's own, after the error
        let ready = sequencer.received(BackendMessageID.readyForQuery)
        #expect(!ready.forward)
        #expect(ready.endsFailedBatch)
        // The next batch starts clean.
        for request in [ResponseSequencer.Request.parse, .sync] { _ = sequencer.sent(request) }
        #expect(sequencer.received(BackendMessageID.parseComplete).forward)
        #expect(!sequencer.received(BackendMessageID.readyForQuery).endsFailedBatch)
    }

    @Test func simpleQueryErrorsDoNotFailABatch() {
        var sequencer = ResponseSequencer()
        _ = sequencer.sent(.query)
        #expect(sequencer.received(BackendMessageID.errorResponse).forward)
        #expect(!sequencer.received(BackendMessageID.readyForQuery).endsFailedBatch)
    }
}
