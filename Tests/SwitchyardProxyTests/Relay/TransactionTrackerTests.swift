import PostgresWire
import Testing
@testable import SwitchyardProxy

@Suite struct TransactionTrackerTests {
    let idle = TransactionStatus.idle.rawValue
    let inTransaction = TransactionStatus.inTransaction.rawValue

    @Test func simpleQueryInAutocommitFreesTheBackendAtReadyForQuery() {
        var tracker = TransactionTracker()
        tracker.clientSent(FrontendMessageID.query)
        #expect(!tracker.isIdle)
        tracker.backendSentReadyForQuery(idle)
        #expect(tracker.isIdle)
    }

    @Test func explicitTransactionHoldsTheBackendUntilCommit() {
        var tracker = TransactionTracker()
        tracker.clientSent(FrontendMessageID.query) // BEGIN
        tracker.backendSentReadyForQuery(inTransaction)
        #expect(!tracker.isIdle)
        #expect(tracker.isIdleInTransaction)
        tracker.clientSent(FrontendMessageID.query) // COMMIT
        tracker.backendSentReadyForQuery(idle)
        #expect(tracker.isIdle)
    }

    @Test func pipelinedSyncsNeedOneReadyForQueryEach() {
        var tracker = TransactionTracker()
        for _ in 0..<3 {
            tracker.clientSent(FrontendMessageID.parse)
            tracker.clientSent(FrontendMessageID.bind)
            tracker.clientSent(FrontendMessageID.execute)
            tracker.clientSent(FrontendMessageID.sync)
        }
        tracker.backendSentReadyForQuery(idle)
        tracker.backendSentReadyForQuery(idle)
        #expect(!tracker.isIdle, "a third Sync is still outstanding")
        tracker.backendSentReadyForQuery(idle)
        #expect(tracker.isIdle)
    }

    @Test func extendedMessagesWithoutSyncKeepTheBackend() {
        var tracker = TransactionTracker()
        tracker.clientSent(FrontendMessageID.parse)
        tracker.clientSent(FrontendMessageID.describe)
        tracker.clientSent(FrontendMessageID.flush)
        #expect(!tracker.isIdle)
        #expect(!tracker.isIdleInTransaction)
        tracker.clientSent(FrontendMessageID.sync)
        tracker.backendSentReadyForQuery(idle)
        #expect(tracker.isIdle)
    }

    @Test func copyDataDoesNotCountAsARequest() {
        var tracker = TransactionTracker()
        tracker.clientSent(FrontendMessageID.query) // COPY ... FROM STDIN
        tracker.clientSent(FrontendMessageID.copyData)
        tracker.clientSent(FrontendMessageID.copyDone)
        tracker.backendSentReadyForQuery(idle)
        #expect(tracker.isIdle)
    }

    @Test func failedTransactionIsNotIdle() {
        var tracker = TransactionTracker()
        tracker.clientSent(FrontendMessageID.query)
        tracker.backendSentReadyForQuery(TransactionStatus.failed.rawValue)
        #expect(!tracker.isIdle)
        #expect(tracker.isIdleInTransaction)
    }
}
