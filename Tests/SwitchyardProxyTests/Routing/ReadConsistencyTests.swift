import NIOCore
import PostgresWire
import Testing
@testable import SwitchyardProxy

@Suite struct ReadFloorTests {
    let a = LSN(0x100), b = LSN(0x200)

    @Test func eventualIgnoresWritesButHonoursAToken() {
        var floor = ReadFloor(level: .eventual)
        floor.wrote(at: b)
        #expect(!floor.tracksWrites)
        #expect(floor.requirement(database: .at(b)) == .anyReplica)
        floor.minimumRead = a
        #expect(floor.requirement(database: .none) == .replayed(a))
    }

    @Test func sessionRequiresTheClientsOwnLastWriteOnly() {
        var floor = ReadFloor(level: .session)
        #expect(floor.requirement(database: .at(b)) == .anyReplica, "no write yet; another client's write does not count")
        floor.wrote(at: a)
        #expect(floor.requirement(database: .at(b)) == .replayed(a))
        floor.wrote(at: LSN(0x50))
        #expect(floor.lastWrite == .at(a), "a watermark never goes back")
        floor.minimumRead = b
        #expect(floor.requirement(database: .none) == .replayed(b), "the higher of the write and the token")
    }

    @Test func databaseRequiresTheHigherOfBoth() {
        var floor = ReadFloor(level: .database)
        #expect(floor.requirement(database: .none) == .anyReplica)
        #expect(floor.requirement(database: .at(b)) == .replayed(b))
        floor.wrote(at: a)
        #expect(floor.requirement(database: .at(b)) == .replayed(b))
        #expect(floor.requirement(database: .none) == .replayed(a))
    }

    @Test func anUnknownPositionSendsReadsToThePrimaryUntilTheNextWrite() {
        var floor = ReadFloor(level: .session)
        floor.writePositionLost()
        #expect(floor.requirement(database: .none) == .primary)
        floor.wrote(at: a)
        #expect(floor.requirement(database: .none) == .replayed(a))
        var database = ReadFloor(level: .database)
        #expect(database.requirement(database: .unknown) == .primary)
        database.level = .session
        #expect(database.requirement(database: .unknown) == .anyReplica, "the database's watermark counts only at database level")
    }
}

@Suite struct DatabaseWatermarkTests {
    @Test func advancesToTheHighestPosition() {
        let watermark = DatabaseWatermark()
        #expect(watermark.watermark == .none)
        watermark.advance(to: LSN(300), failuresBeforeProbe: 0)
        watermark.advance(to: LSN(200), failuresBeforeProbe: 0)
        #expect(watermark.watermark == .at(LSN(300)))
    }

    /// A failed probe leaves a committed write of unknown position: only a probe sent after the failure
    /// covers it, not one that was already in flight.
    @Test func aFailureIsCoveredOnlyByAProbeSentAfterIt() {
        let watermark = DatabaseWatermark()
        let inFlight = watermark.failureCount
        watermark.probeFailed()
        #expect(watermark.watermark == .unknown)
        watermark.advance(to: LSN(500), failuresBeforeProbe: inFlight)
        #expect(watermark.watermark == .unknown, "that probe was sent before the failure")
        let later = watermark.failureCount
        watermark.advance(to: LSN(600), failuresBeforeProbe: later)
        #expect(watermark.watermark == .at(LSN(600)))
    }

    @Test func oneWatermarkPerDatabase() {
        let all = DatabaseWatermarks()
        #expect(all.watermark(for: "app") === all.watermark(for: "app"))
        #expect(all.watermark(for: "app") !== all.watermark(for: "other"))
    }
}

@Suite struct WatermarkProbeTests {
    /// What Postgres answers `select pg_catalog.pg_current_wal_insert_lsn()` with.
    static func answer(_ lsn: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        BackendMessage.rowDescription(columns: ["pg_current_wal_insert_lsn"], into: &buffer)
        BackendMessage.dataRow([lsn], into: &buffer)
        BackendMessage.commandComplete("SELECT 1", into: &buffer)
        BackendMessage.readyForQuery(.idle, into: &buffer)
        return buffer
    }

    @Test func readsThePositionEvenWhenTheAnswerIsSplit() throws {
        let whole = Self.answer("1/16B3748")
        for cut in 1..<whole.readableBytes {
            var probe = WatermarkProbe()
            probe.querySent(holdingClientOutput: true, failuresBefore: 3)
            #expect(probe.holdsClientOutput && probe.awaiting?.failuresBefore == 3)
            let first = try probe.bytesRead(whole.getSlice(at: 0, length: cut)!) { _ in }
            #expect(first == .consumed, "cut at \(cut)")
            let second = try probe.bytesRead(whole.getSlice(at: cut, length: whole.readableBytes - cut)!) { _ in }
            #expect(second == .finished(LSN(0x1_016B_3748), problem: nil, rest: ByteBuffer()), "cut at \(cut)")
            #expect(!probe.isAwaiting)
        }
    }

    @Test func anErrorIsAProblemNotAPosition() throws {
        var buffer = ByteBuffer()
        ErrorFields(severity: .error, code: "55000", message: "recovery is in progress").encode(into: &buffer)
        BackendMessage.readyForQuery(.idle, into: &buffer)
        var probe = WatermarkProbe()
        probe.querySent(holdingClientOutput: false, failuresBefore: 0)
        guard case .finished(nil, let problem?, _) = try probe.bytesRead(buffer, parameterStatus: { _ in }) else {
            Issue.record("an error answer must finish without a position")
            return
        }
        #expect(problem.contains("55000") && problem.contains("recovery is in progress"))
    }

    @Test func parameterStatusOnTheWayIsRecordedAndBytesAfterAreReturned() throws {
        var buffer = ByteBuffer()
        BackendMessage.parameterStatus(name: "TimeZone", value: "UTC", into: &buffer)
        buffer.writeImmutableBuffer(Self.answer("0/10"))
        buffer.writeString("tail")
        var probe = WatermarkProbe()
        probe.querySent(holdingClientOutput: false, failuresBefore: 0)
        var seen: [String] = []
        let outcome = try probe.bytesRead(buffer) { body in
            if let (name, _) = BackendMessage.decodeParameterStatus(body) { seen.append(name) }
        }
        #expect(seen == ["TimeZone"])
        guard case .finished(LSN(0x10)?, nil, let rest) = outcome else {
            Issue.record("expected the position, got \(outcome)")
            return
        }
        #expect(rest.getString(at: rest.readerIndex, length: rest.readableBytes) == "tail")
    }

    @Test func abandoningForgetsTheProbe() {
        var probe = WatermarkProbe()
        #expect(probe.abandoned() == nil)
        probe.querySent(holdingClientOutput: false, failuresBefore: 0)
        #expect(probe.abandoned() != nil)
        #expect(!probe.isAwaiting)
    }
}

@Suite struct ReadConsistencyConfigurationTests {
    static let base = """
        [switchyard]
        health_check_user = app
        %@
        [servers]
        main = host=db role=primary
        r1 = host=r1 role=replica
        [users]
        app = password=x %@
        """

    static func text(_ setting: String, user: String = "") -> String {
        base.replacingOccurrences(of: "%@\n[servers]", with: setting + "\n[servers]")
            .replacingOccurrences(of: "password=x %@", with: "password=x " + user)
    }

    @Test func defaultsAreSessionAndFiftyMilliseconds() throws {
        let config = try ProxyConfiguration.parse(Self.text(""))
        #expect(config.routing.readConsistency == .session)
        #expect(config.routing.readConsistencyMaxWait == .milliseconds(50))
        #expect(config.users["app"]?.readConsistency == nil)
    }

    @Test func keysAndTheUserOverride() throws {
        let config = try ProxyConfiguration.parse(Self.text("read_consistency = database\nread_consistency_max_wait = 0.2",
                                                             user: "read_consistency=eventual"))
        #expect(config.routing.readConsistency == .database)
        #expect(config.routing.readConsistencyMaxWait == .milliseconds(200))
        #expect(config.users["app"]?.readConsistency == .eventual)
        #expect(config.displayedSettings.contains { $0.key == "read_consistency" && $0.value == "database" && $0.reloadable })
    }

    @Test func badValuesNameTheKeyAndTheChoices() {
        for (setting, user, expected) in [
            ("read_consistency = strong", "", "read_consistency"),
            ("read_consistency_max_wait = soon", "", "read_consistency_max_wait"),
            ("", "read_consistency=always", "read_consistency of user 'app'"),
        ] {
            #expect(throws: ConfigurationError.self) { try ProxyConfiguration.parse(Self.text(setting, user: user)) }
            do { _ = try ProxyConfiguration.parse(Self.text(setting, user: user)) } catch {
                #expect("\(error)".contains(expected), "\(error)")
            }
        }
    }
}

@Suite struct PrimaryPositionHistoryTests {
    @Test func aReplicaThatReplayedEverythingHasNoLagHoweverIdleThePrimary() {
        var history = PrimaryPositionHistory()
        history.record(LSN(1000), at: 0)
        history.record(LSN(1000), at: 3600)
        #expect(history.lagSeconds(replayed: LSN(1000), lastReplayedCommitAge: 3600, now: 3600) == 0)
    }

    @Test func theLagIsTheAgeOfTheReplayedWALBoundedByTheLastReplayedCommit() {
        var history = PrimaryPositionHistory()
        for second in 0...10 { history.record(LSN(UInt64(1000 + second * 100)), at: Double(second)) }
        // Replayed what the primary had at second 4; the last commit it replayed is 7 s old.
        #expect(history.lagSeconds(replayed: LSN(1450), lastReplayedCommitAge: 7, now: 10) == 6)
        // A recent commit bounds it tighter: replay keeps up under load.
        #expect(history.lagSeconds(replayed: LSN(1450), lastReplayedCommitAge: 0.005, now: 10) == 0.005)
        // Behind every sample and no commit replayed: at least as old as the oldest sample.
        #expect(history.lagSeconds(replayed: LSN(10), lastReplayedCommitAge: nil, now: 10) == 10)
    }

    @Test func keepsAtMostItsCapacityAndStartsOverWhenThePositionGoesBack() {
        var history = PrimaryPositionHistory(capacity: 3)
        for second in 0..<10 { history.record(LSN(UInt64(100 + second)), at: Double(second)) }
        // Only seconds 7, 8, 9 are kept: a replica behind them all counts from second 7.
        #expect(history.lagSeconds(replayed: LSN(100), lastReplayedCommitAge: nil, now: 10) == 3)
        history.record(LSN(5), at: 11)
        #expect(history.lagSeconds(replayed: LSN(5), lastReplayedCommitAge: nil, now: 12) == 0)
    }
}

@Suite struct UntrackedWriteTests {
    /// A client whose reads all ran on the primary wrote without learning where: a read that goes to a
    /// replica after all (a hint, a changed route) runs on the primary until its next write.
    @Test func aReadAfterAnUntrackedWriteUsesThePrimary() {
        var floor = ReadFloor(level: .session)
        floor.writeNotTracked()
        #expect(floor.requirement(database: .none) == .primary)
        floor.wrote(at: LSN(7))
        #expect(floor.requirement(database: .none) == .replayed(LSN(7)))
        var eventual = ReadFloor(level: .eventual)
        eventual.writeNotTracked()
        #expect(eventual.requirement(database: .none) == .anyReplica)
    }
}
