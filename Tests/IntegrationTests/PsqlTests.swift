import Foundation
import Testing

extension IntegrationTests {
    /// psql (libpq, simple query protocol) through the proxy.
    @Suite struct Psql {
        @Test func simpleQuery() async throws {
            try await withProxy { proxy in
                let result = try await psql(port: proxy.port, ["select 1 + 1, current_database()"])
                #expect(result.succeeded, "\(result)")
                #expect(result.output == "2|app")
            }
        }

        /// One Query message with two statements yields both results.
        @Test func multiStatementString() async throws {
            try await withProxy { proxy in
                let result = try await psql(port: proxy.port, ["select 1; select 2"])
                #expect(result.succeeded, "\(result)")
                #expect(result.lines == ["1", "2"])
            }
        }

        /// A committed transaction is visible to a later, separate client (no lost write).
        @Test func transactionCommitsAndReadsBack() async throws {
            let table = uniqueName("it_tx")
            try await withProxy { proxy in
                let write = try await psql(port: proxy.port, [
                    "create table \(table) (id int primary key, note text)",
                    "begin; insert into \(table) values (1, 'one'), (2, 'two'); commit",
                ])
                #expect(write.succeeded, "\(write)")
                let read = try await psql(port: proxy.port, ["select id || ':' || note from \(table) order by id"])
                #expect(read.lines == ["1:one", "2:two"], "\(read)")
                let direct = try await superuserQuery("select count(*) from \(table)", database: "app")
                #expect(direct == "2")
                _ = try await psql(port: proxy.port, ["drop table \(table)"])
            }
        }

        /// An error inside a transaction aborts it (25P02 after 42P01); ROLLBACK recovers the
        /// session, which keeps working on the same connection.
        @Test func errorInsideTransactionThenRollback() async throws {
            try await withProxy { proxy in
                let result = try await psql(port: proxy.port, [
                    "\\set VERBOSITY verbose",
                    "begin",
                    "select * from no_such_table_xyz",
                    "select 1",
                    "rollback",
                    "select 'still-usable', pg_backend_pid() > 0",
                ], onErrorStop: false)
                #expect(result.exitCode == 0, "\(result)")
                #expect(result.stderr.contains("42P01"), "\(result)")
                #expect(result.stderr.contains("relation \"no_such_table_xyz\" does not exist"))
                #expect(result.stderr.contains("25P02"), "\(result)")
                #expect(result.lines.last == "still-usable|t", "\(result)")
            }
        }
    }
}
