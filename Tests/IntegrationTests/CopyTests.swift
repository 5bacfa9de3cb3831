import Foundation
import Testing

extension IntegrationTests {
    /// COPY's sub-protocol (CopyData/CopyDone/CopyFail) relayed both ways.
    @Suite struct Copy {
        /// 10 000 rows in with `\copy … from pstdin`, and the very same bytes back out with COPY TO STDOUT.
        @Test func copyInAndOutTenThousandRows() async throws {
            let table = uniqueName("it_copy")
            let rows = (1...10_000).map { "\($0)\trow-\($0)-\(String(repeating: "z", count: $0 % 13))" }
            let data = rows.joined(separator: "\n") + "\n"
            try await withProxy { proxy in
                let create = try await psql(port: proxy.port, ["create table \(table) (id int primary key, note text)"])
                try #require(create.succeeded, "\(create)")

                let copyIn = try await psql(port: proxy.port, ["\\copy \(table) from pstdin"], stdin: Data(data.utf8))
                #expect(copyIn.succeeded, "\(copyIn)")
                #expect(copyIn.output == "COPY 10000")

                let copyOut = try await psql(port: proxy.port, ["copy (select * from \(table) order by id) to stdout"])
                #expect(copyOut.succeeded)
                #expect(copyOut.stdout.count == data.count)
                #expect(copyOut.stdout == data, "COPY TO STDOUT returned different bytes than were copied in")

                // Checked directly in Postgres too: count and a checksum over every row.
                let direct = try await superuserQuery(
                    "select count(*), sum(id), md5(string_agg(id || ':' || note, ',' order by id)) from \(table)", database: "app")
                let expected = try await superuserQuery(
                    "select 10000, \(10_000 * 10_001 / 2), md5(string_agg(g || ':row-' || g || '-' || repeat('z', g % 13), ',' order by g)) from generate_series(1, 10000) g")
                #expect(direct == expected)
                _ = try await superuserPsql("drop table \(table)", database: "app")
            }
        }

        /// A bad row half-way through COPY FROM STDIN → 22P02 reported, nothing inserted, and the
        /// same connection keeps working (in transaction pooling the backend went back clean).
        @Test func copyInWithBadRowFailsCleanly() async throws {
            let table = uniqueName("it_copy_bad")
            try await withProxy { proxy in
                let result = try await python("""
                    with psycopg.connect(DSN, autocommit=True) as conn:
                        conn.execute("create table \(table) (id int primary key, note text)")
                        error = None
                        try:
                            with conn.cursor() as cur:
                                with cur.copy("copy \(table) from stdin") as copy:
                                    for i in range(1, 10001):
                                        copy.write(f"{'oops' if i == 5000 else i}\\trow {i}\\n")
                        except psycopg.Error as e:
                            error = {"sqlstate": e.sqlstate, "message": str(e)}
                        count = conn.execute("select count(*) from \(table)").fetchone()[0]
                        again = conn.execute("select 'usable'").fetchone()[0]
                        conn.execute("drop table \(table)")
                    emit(error=error, count=count, again=again)
                    """, port: proxy.port)
                struct Output: Decodable {
                    struct Failure: Decodable { var sqlstate: String?; var message: String }
                    var error: Failure?
                    var count: Int
                    var again: String
                }
                let output = try result.json(Output.self)
                #expect(output.error?.sqlstate == "22P02", "\(result)")
                #expect(output.error?.message.contains("oops") == true)
                #expect(output.count == 0)
                #expect(output.again == "usable")
            }
        }
    }
}
