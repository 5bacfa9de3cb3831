import PostgresWire
import Testing
@testable import SwitchyardProxy

/// When an ending session may close, event by event, without sockets.
@Suite struct SessionEndingTests {
    let owed = SessionEnding.Facts(answersOwed: true)
    let quiet = SessionEnding.Facts()
    let fatal = ErrorFields(severity: .fatal, code: SQLState.programLimitExceeded, message: "too large")

    @Test func anOpenSessionNeverCloses() {
        let ending = SessionEnding()
        #expect(ending.isOpen)
        #expect(ending.decide(quiet) == .stayOpen)
        #expect(ending.decide(SessionEnding.Facts(serverWaitsForClient: true)) == .stayOpen)
    }

    @Test func terminateWaitsForTheAnswersOwedThenCloses() {
        var ending = SessionEnding()
        ending.terminateReceived()
        #expect(!ending.isOpen)
        #expect(ending.decide(owed) == .stayOpen, "a write sent before Terminate still runs and is answered")
        #expect(ending.decide(quiet) == .close(fatal: nil, abandoningWork: false))
    }

    @Test func aServerWaitingForTheClientsDataIsAbandonedAtOnce() {
        var ending = SessionEnding()
        ending.inputClosed()
        let copy = SessionEnding.Facts(serverWaitsForClient: true, answersOwed: true)
        #expect(ending.decide(copy) == .close(fatal: nil, abandoningWork: true), "the COPY could never end")
    }

    @Test func aRefusalsFatalGoesLastAfterTheAnswersAndTheSkippedBytes() {
        var ending = SessionEnding()
        ending.endedWith(fatal)
        #expect(ending.decide(owed) == .stayOpen)
        let skipping = SessionEnding.Facts(skippingRefusedBytes: true)
        #expect(ending.decide(skipping) == .stayOpen, "closing with bytes unread would reset the connection")
        #expect(ending.decide(quiet) == .close(fatal: fatal, abandoningWork: false))
        // The client gave up sending the rest: nothing more to skip.
        ending.inputClosed()
        #expect(ending.decide(skipping) == .close(fatal: fatal, abandoningWork: false))
    }

    @Test func theFirstReasonStands() {
        var ending = SessionEnding()
        ending.endedWith(fatal)
        ending.terminateReceived()
        ending.endedWith(ErrorFields(severity: .fatal, code: SQLState.protocolViolation, message: "other"))
        #expect(ending.decide(quiet) == .close(fatal: fatal, abandoningWork: false))
        var terminated = SessionEnding()
        terminated.terminateReceived()
        terminated.endedWith(fatal)
        #expect(terminated.decide(quiet) == .close(fatal: fatal, abandoningWork: false), "a refusal after Terminate still tells the client")
    }
}
