import Foundation
import Testing

extension IntegrationTests {
    /// Read/write routing against the test cluster's primary and its one streaming replica: what a
    /// client sees (which server answered, that writes never fail, that failures stay invisible).
    /// Serialized like every integration suite: some tests stop the replica or pause its replay.
    @Suite struct Routing {}
}

/// A table, a sequence, a VOLATILE SQL function that inserts a row (`insert … returning 1`) and a
/// STABLE one that only reads, created in database `app` directly on the primary as `app` (not through a
/// proxy), and visible on the replica before ``create()`` returns.
struct RoutingFixture: Sendable {
    let table: String
    let sequence: String
    /// `select <writer>()` inserts one row with `v = 1` and returns 1.
    let writer: String
    /// `select <reader>()` returns `pg_is_in_recovery()` of whichever server runs it.
    let reader: String

    static func create() async throws -> RoutingFixture {
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let fixture = RoutingFixture(table: "sy_rt_\(suffix)", sequence: "sy_seq_\(suffix)",
                                     writer: "sy_write_\(suffix)", reader: "sy_read_\(suffix)")
        try await fixture.primary([
            "create table \(fixture.table) (id serial primary key, v int not null, note text)",
            "create sequence \(fixture.sequence)",
            "create function \(fixture.writer)() returns int language sql volatile as $$ insert into \(fixture.table) (v, note) values (1, 'fn') returning 1 $$",
            "create function \(fixture.reader)() returns boolean language sql stable as $$ select pg_is_in_recovery() $$",
        ])
        // The replica must know the function before anything calls it there (else 42883, not 25006).
        let replicated = await eventually(within: .seconds(20), every: .milliseconds(100)) {
            let names = try? await ReplicaControl.query(
                "select count(*) from pg_proc where proname in ('\(fixture.writer)', '\(fixture.reader)')", database: "app")
            return names == "2"
        }
        guard replicated else { throw HarnessError("the replica did not replay the fixture's DDL within 20 s") }
        return fixture
    }

    /// psql as `app` straight to the primary (TCP, SCRAM), bypassing any proxy.
    @discardableResult
    func primary(_ commands: [String]) async throws -> ProcessResult {
        let result = try await psql(port: TestEnvironment.pgPort, commands)
        guard result.succeeded else { throw HarnessError("direct primary command failed: \(result)") }
        return result
    }

    /// Rows of the table on the primary, optionally only those with `note`.
    func primaryCount(note: String? = nil) async throws -> Int {
        let filter = note.map { " where note = '\($0)'" } ?? ""
        let output = try await primary(["select count(*) from \(table)\(filter)"]).output
        guard let count = Int(output) else { throw HarnessError("not a count: \(output)") }
        return count
    }

    func drop() async {
        _ = try? await primary([
            "drop function if exists \(writer)()", "drop function if exists \(reader)()",
            "drop table if exists \(table)", "drop sequence if exists \(sequence)",
        ])
    }
}

/// Creates a fixture, runs `body`, and always drops the fixture.
func withRoutingFixture<T>(_ body: (RoutingFixture) async throws -> T) async throws -> T {
    let fixture = try await RoutingFixture.create()
    do {
        let result = try await body(fixture)
        await fixture.drop()
        return result
    } catch {
        await fixture.drop()
        throw error
    }
}

extension ProcessResult {
    /// psql's `-At` output without the command tags of statements that return no rows.
    var rowLines: [String] {
        let tags: Set<String> = ["BEGIN", "COMMIT", "ROLLBACK", "SET", "START TRANSACTION"]
        return lines.filter { !tags.contains($0) && !$0.hasPrefix("INSERT ") }
    }

    /// psql `-At` rows of the form `label|value`, keyed by label (the last one wins).
    var labelled: [String: String] {
        var result: [String: String] = [:]
        for line in lines {
            let parts = line.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.count == 2 { result[String(parts[0])] = String(parts[1]) }
        }
        return result
    }
}
