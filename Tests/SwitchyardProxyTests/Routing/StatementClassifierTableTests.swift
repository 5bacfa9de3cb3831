import Testing
@testable import SwitchyardProxy

/// One row of the routing table: the SQL and everything the classifier should say about it.
/// `control`, `command` and `hint` are always checked (nil means "must be nil"); `count` only when given.
struct RoutingCase: Sendable, CustomTestStringConvertible {
    var sql: String
    var route: StatementRoute
    var control: TransactionControl? = nil
    var command: RouteCommand? = nil
    var hint: RouteHint? = nil
    var count: Int? = nil

    var testDescription: String { "\(route): \(sql.debugDescription)" }
}

/// Replica-safe.
private func r(_ sql: String, count: Int? = nil, hint: RouteHint? = nil) -> RoutingCase {
    RoutingCase(sql: sql, route: .replica, hint: hint, count: count)
}

/// Primary, with whatever transaction control or route command it carries.
private func p(_ sql: String, _ control: TransactionControl? = nil, command: RouteCommand? = nil,
               hint: RouteHint? = nil, count: Int? = nil) -> RoutingCase {
    RoutingCase(sql: sql, route: .primary, control: control, command: command, hint: hint, count: count)
}

enum RoutingTable {
    static let cases: [RoutingCase] = replicaCases + primaryCases + transactionCases + commandCases

    static let replicaCases: [RoutingCase] = [
        // Plain reads, casing, whitespace, terminators.
        r("select 1", count: 1),
        r("SELECT 1"),
        r("  \n\t select 1  "),
        r("select 1;", count: 1),
        r("select 1;;", count: 1),
        r("select 1\n;\n"),
        r("SeLeCt * FrOm t"),
        r("\n\n   SELECT\n\t*\nFROM\tt\n"),
        r("SELECT abalance FROM pgbench_accounts WHERE aid = 123;"),
        r("SELECT count(*) FROM pgbench_accounts WHERE aid = $1"),
        r("SELECT * FROM users WHERE email = $1 LIMIT 1"),
        r(#"SELECT "Id" FROM "Users" WHERE "Email" = $1"#),
        r("select * from t where x = $1 and y = $2"),
        r("select $1::int"),
        r("select '$1'"),
        r("table t"),
        r("TABLE public.t"),
        r("values (1), (2)"),
        r("select 1; select 2", count: 2),
        r("select 1; values (2); table t", count: 3),
        // Subqueries, CTEs, set operations, parentheses.
        r("select * from t where x in (select y from u)"),
        r("select * from t where x = (select max(y) from u)"),
        r("select exists (select 1 from t where x = 1)"),
        r("select * from t where x = any(array[1, 2]) and y <> all (select z from u)"),
        r("with x as (select 1) select * from x"),
        r("with recursive r(n) as (select 1 union all select n + 1 from r where n < 10) select * from r"),
        r("with a as (select 1), b(x) as (select 2) select * from a, b"),
        r("with x as materialized (select 1) select * from x"),
        r("with x as not materialized (select 1) select * from x"),
        r("with x as (select 1) (select * from x)"),
        r("with x as (with y as (select 1) select * from y) select * from x"),
        r("select * from (with y as (select 1) select * from y) s"),
        r("(select 1) union (select 2)"),
        r("((select 1))"),
        r("select 1 union all select 2 except select 3 intersect select 4"),
        // Functions the built-in catalog knows, and syntax that looks like calls.
        r("select now()"),
        r("select current_timestamp, current_date, localtime(2), current_time(3), current_user"),
        r("select random()"),
        r("select pg_sleep(1)"),
        r("select pg_is_in_recovery()"),
        r("select pg_last_wal_replay_lsn(), pg_last_xact_replay_timestamp()"),
        r("select gen_random_uuid()"),
        r("select version(), current_setting('work_mem')"),
        r("select current_schema(), current_database(), pg_backend_pid()"),
        r("select lower(x)::text from t"),
        r("select coalesce(a, b), nullif(a, 0), greatest(1, 2), least(1, 2) from t"),
        r("select extract(epoch from now()), date_part('year', now()), date_trunc('day', ts) from t"),
        r("select substring('abc' from 1 for 2)"),
        r("select substring('abc', 1, 2), position('b' in 'abc'), trim(both 'x' from 'xax'), overlay('abc' placing 'x' from 2 for 1)"),
        r("select cast(x as numeric(10, 2)), x::varchar(20), '1'::timestamp(3), interval(2) '1 second' from t"),
        r("select x::character varying(10), y::bit varying(5), z::double precision, w::timestamp(3) with time zone from t"),
        r("select x::mytype(3), cast(y as othertype(1, 2)) from t"),
        r("select row_number() over (partition by a order by b), rank() over w, lag(x, 1) over (order by y) from t window w as (order by a)"),
        r("select count(*) filter (where x > 1) from t"),
        r("select percentile_cont(0.5) within group (order by x) from t"),
        r("select array_agg(x order by y), string_agg(z, ',') from t group by k"),
        r("select a, sum(b) from t group by rollup(a), cube(b)"),
        r("select a, b, sum(c) from t group by grouping sets ((a), (b), rollup(a, b), ())"),
        r("select json_build_object('a', 1), jsonb_agg(x), x->>'k', x #> '{a,b}' from t group by x"),
        r("select json_object('a' value 1), json_array(1, 2), json_value(j, '$.a' returning int)"),
        r("select xmlelement(name foo, xmlattributes(1 as bar))"),
        r("select to_char(now(), 'YYYY'), abs(-1), round(1.5), length('x'), upper('x')"),
        r("select to_tsvector('english', body) @@ plainto_tsquery($1) from docs"),
        r("select now() at time zone 'utc'"),
        r("select date_bin('15 minutes', ts, timestamp '2001-01-01') from t"),
        r("select pg_catalog.lower('X')"),
        r("select pg_catalog.substring('abc', 1, 1)"),
        r(#"select "pg_catalog"."lower"('x')"#),
        r(#"select "lower"('X')"#),
        r("SELECT c.relname FROM pg_catalog.pg_class c WHERE pg_catalog.pg_table_is_visible(c.oid)"),
        r("select 1 operator(pg_catalog.+) 2"),
        r("select array(select 1), array[1, 2]"),
        r("select row(1, 2) = row(1, 2)"),
        r("select case when x > 0 then 'pos' else 'neg' end from t"),
        // FROM-clause shapes: aliases with column lists, joins, lateral, sampling.
        r("select * from generate_series(1, 10) g(i)"),
        r("select * from unnest(array[1, 2]) with ordinality as u(x, n)"),
        r("select * from unnest(array[1, 2]) with ordinality u(x, n)"),
        r("select * from (values (1, 2)) as v(a, b)"),
        r("select * from (values (1, 2)) v(a, b)"),
        r("select * from a join (select * from b) s on a.id = s.id"),
        r("select * from a left join (b join c on b.x = c.x) on a.y = b.y"),
        r("select * from a cross join lateral (select * from b where b.a = a.id) l"),
        r("select * from a join b using (id) join (select 1 as id) c using (id)"),
        r("select 1 from t1 natural join t2"),
        r("select * from a join b on (a.id = b.id) join (select 1 as id) c on (c.id = a.id)"),
        r("select * from t tablesample system (10) repeatable (42)"),
        // Predicates and clauses.
        r("select * from t where name like ('%' || $1 || '%')"),
        r("select * from t where (a, b) overlaps (c, d)"),
        r("select * from t where x::text like 'a%' escape '!'"),
        r("select distinct on (a) a, b from t order by a, b"),
        r("select t.* from t where t.deleted_at is null"),
        r("select * from t order by x desc nulls last limit 10 offset 5"),
        r("select * from t fetch first 5 rows only"),
        r("select * from t fetch first (5) rows with ties"),
        r("select * from t for read only"),
        r("select * from t where x in (1, 2, 3) and not (a and b)"),
        r("select * from t where a between symmetric 1 and 2"),
        r("select x is distinct from y from t"),
        r("select 1 from t having count(*) > 1"),
        // Writes, locks and INTO that are only text: strings, comments, quoted identifiers.
        r(#"select "delete" from t"#),
        r(#"select "delete", "update", "into" from "insert""#),
        r(#"select 1 as "select""#),
        r("select 'for update' from t"),
        r("select 'delete from t; drop table t'"),
        r("select ';'", count: 1),
        r("select $$delete$$"),
        r("select $tag$ delete from t; $$ nested $$ $tag$"),
        r(#"select E'\'; delete from t; --'"#, count: 1),
        r("select 1 -- delete from t"),
        r("select 1 /* delete from t */"),
        r("select /* outer /* inner */ delete */ 1"),
        r("select 'it''s'"),
        // Other literal forms.
        r(#"select U&'d\0061t\+000061'"#),
        r("select B'1010', X'FF', N'nat'"),
        r(#"select e'\n'"#),
        r(#"select '\d+' ~ name from t"#),
        r("select 1.5e10, .5, 0x1F, 1_000"),
        r("select x[1:2] from t"),
        r("select a$b from t"),
        // EXPLAIN without ANALYZE only plans.
        r("explain select 1"),
        r("explain verbose select * from t"),
        r("explain (costs off, verbose) select * from t"),
        // Hints: reported, not applied; only before the first token.
        r("/* switchyard: replica */ select 1", hint: .replica),
        r("/*switchyard:replica*/select 1", hint: .replica),
        r("/*  SWITCHYARD :  Replica  */ select 1", hint: .replica),
        r("-- switchyard: primary\nselect 1", hint: .primary),
        r("/* app */ /* switchyard: replica */ select 1", hint: .replica),
        r("select 1 /* switchyard: primary */"),
        r("/* switchyard: replica, please */ select 1"),
    ]

    static let primaryCases: [RoutingCase] = [
        // Writes.
        p("insert into t values (1)"),
        p("update t set x = 1"),
        p("\n  DELETE FROM t"),
        p("merge into t using s on t.id = s.id when matched then update set x = s.x"),
        p("values (nextval('s'))"),
        // Data-modifying CTEs, at any depth, and a write as the main statement.
        p("with x as (delete from t returning *) select * from x"),
        p("with x as (insert into t values (1) returning id) select id from x"),
        p("with x as (update t set a = 1 returning *) select * from x"),
        p("with a as (select 1), b as (with c as (delete from t returning 1) select * from c) select * from b"),
        p("select * from (with c as (delete from t returning 1) select * from c) s"),
        p("with x as (select 1) insert into t select * from x"),
        p("with x as (select 1) update t set a = 1"),
        p("WITH x AS (MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE RETURNING *) SELECT * FROM x"),
        // Locking clauses, at any depth.
        p("select * from t for update"),
        p("sElEcT * FrOm t FoR uPdAtE"),
        p("select * from t for no key update"),
        p("select * from t for share"),
        p("select * from t for key share"),
        p("select * from t for update of t skip locked"),
        p("select * from (select * from t for update) s"),
        p("select * from t where x in (select y from u for share)"),
        p("with l as (select * from t for update skip locked limit 1) select * from l"),
        // SELECT INTO creates a table.
        p("select x into t2 from t"),
        p("select * into temp t2 from t"),
        p("select x into strict y from t"),
        p("select 1into t"),
        // Functions that write, lock or change session state.
        p("select nextval('s')"),
        p(#"select "nextval"('s')"#),
        p("select pg_catalog.setval('s', 1)"),
        p("select pg_catalog.nextval('s')"),
        p("select currval('s'), lastval()"),
        p("select pg_advisory_lock(1)"),
        p("select pg_try_advisory_xact_lock(1)"),
        p("select set_config('a', 'b', false)"),
        p("select txid_current()"),
        p("select pg_current_xact_id()"),
        p("select pg_current_wal_lsn()"),
        p("select pg_notify('c', 'x')"),
        p("select pg_terminate_backend(123)"),
        p("select lo_import('/tmp/x')"),
        p("select dblink_exec('conn', 'delete from t')"),
        p("select pg_create_logical_replication_slot('s', 'pgoutput')"),
        p("select pg_switch_wal()"),
        // Functions the built-in catalog can't vouch for.
        p("select my_func()"),
        p("select myschema.myfunc(1)"),
        p("select myschema.lower('x')"),
        p(#"select "my schema"."lower"('x')"#),
        p(#"select "Lower"('x')"#),
        p(#"select "NEXTVAL"('s')"#),
        p("select 1 from t where my_volatile(x)"),
        p("select count(*), my_func(x) from t"),
        p("select * from t, my_srf(1) f"),
        p("select distinct on (a) my_func(b) from t"),
        p("select 1 operator(pg_catalog.+) my_func(2)"),
        p("select join(1)"),
        p("select not materialized(1)"),
        p("select distinct on (a) b, nextval('s') from t"),
        p("explain select nextval('s')"),
        // Every statement must be safe.
        p("select 1; delete from t", count: 2),
        p("select 1; select nextval('s')", count: 2),
        p("delete from t; select 1", count: 2),
        p("select ';'; delete from t", count: 2),
        p("table t; insert into t values (1)", count: 2),
        p(#"select E'\\'; delete from t; --'"#, count: 2),
        // With standard_conforming_strings off this is `select 'a\', '` b; delete from t; ...
        p(#"select 'a\', 'b; delete from t; --'"#),
        // Nothing to route.
        p("", count: 0),
        p("   ", count: 0),
        p(";", count: 0),
        p("-- only a comment", count: 0),
        p("/* only a comment */", count: 0),
        p("/* switchyard: replica */", hint: .replica, count: 0),
        // Doesn't lex, or parentheses don't balance: the server rejects it.
        p("select 'unterminated"),
        p(#"select "unterminated"#),
        p("select $$unterminated"),
        p("select $tag$ x $other$"),
        p(#"select e'\'"#),
        p("select /* outer /* inner */ 1"),
        p("select (1"),
        p("select 1)"),
        p("select (1; 2)"),
        p("()"),
        // Everything else.
        p("copy t to stdout"),
        p("copy (select 1) to stdout"),
        p("call proc()"),
        p("do $$ begin perform 1; end $$"),
        p("explain analyze select 1"),
        p("explain analyze delete from t"),
        p("explain (analyze, buffers) select 1"),
        p("explain (analyze false) select 1"),
        p("explain delete from t"),
        p("explain execute p(1)"),
        p("show work_mem"),
        p("show all"),
        p("set work_mem = '64MB'"),
        p("set search_path to public"),
        p("reset all"),
        p("listen c"),
        p("notify c, 'x'"),
        p("unlisten *"),
        p("lock table t in access exclusive mode"),
        p("vacuum t"),
        p("analyze t"),
        p("prepare p as select 1"),
        p("execute p"),
        p("deallocate all"),
        p("discard all"),
        p("declare c cursor for select 1"),
        p("fetch 10 from c"),
        p("close c"),
        p("create table t (id int)"),
        p("create temp table t as select 1"),
        p("drop table t"),
        p("truncate t"),
        p("refresh materialized view v"),
        p("checkpoint"),
    ]

    static let transactionCases: [RoutingCase] = [
        p("begin", .begin(readOnly: false)),
        p("BEGIN", .begin(readOnly: false)),
        p("begin work", .begin(readOnly: false)),
        p("begin transaction;", .begin(readOnly: false)),
        p("BEGIN READ ONLY", .begin(readOnly: true)),
        p("begin transaction read only", .begin(readOnly: true)),
        p("begin isolation level repeatable read, read only", .begin(readOnly: true)),
        p("begin isolation level read committed", .begin(readOnly: false)),
        p("begin read only, read write", .begin(readOnly: false)),
        p("begin read write", .begin(readOnly: false)),
        p("start transaction", .begin(readOnly: false)),
        p("start transaction read only", .begin(readOnly: true)),
        p("START TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE", .begin(readOnly: true)),
        p("start transaction read write", .begin(readOnly: false)),
        p("begin; select 1", .begin(readOnly: false), count: 2),
        p("begin read only; select 1", .begin(readOnly: true), count: 2),
        p("begin; select 1; commit", .commit, count: 3),
        p("select 1; begin", .begin(readOnly: false), count: 2),
        p("commit", .commit),
        p("COMMIT WORK", .commit),
        p("commit transaction", .commit),
        p("commit and no chain", .commit),
        p("end", .commit),
        p("end transaction", .commit),
        p("rollback", .rollback),
        p("rollback work", .rollback),
        p("ROLLBACK TRANSACTION", .rollback),
        p("abort", .rollback),
        p("abort work", .rollback),
        // The transaction stays open, or isn't this session's: ordinary primary statements.
        p("commit and chain"),
        p("rollback and chain"),
        p("rollback to savepoint a"),
        p("rollback to a"),
        p("rollback transaction to savepoint a"),
        p("savepoint a"),
        p("release savepoint a"),
        p("prepare transaction 'x'"),
        p("commit prepared 'x'"),
        p("rollback prepared 'x'"),
        // SET TRANSACTION and session read-only defaults.
        p("set transaction read only", .setTransaction(readOnly: true)),
        p("SET TRANSACTION READ WRITE", .setTransaction(readOnly: false)),
        p("set transaction isolation level serializable", .setTransaction(readOnly: false)),
        p("set transaction isolation level repeatable read, read only", .setTransaction(readOnly: true)),
        p("set transaction_read_only = on", .setTransaction(readOnly: true)),
        p("set session characteristics as transaction read only", .setSessionReadOnly(true)),
        p("set session characteristics as transaction read write", .setSessionReadOnly(false)),
        p("set session characteristics as transaction isolation level serializable"),
        p("set default_transaction_read_only = on", .setSessionReadOnly(true)),
        p("set default_transaction_read_only to off", .setSessionReadOnly(false)),
        p("SET default_transaction_read_only = true", .setSessionReadOnly(true)),
        p("set default_transaction_read_only = 'on'", .setSessionReadOnly(true)),
        p("set default_transaction_read_only = 0", .setSessionReadOnly(false)),
        p("set session default_transaction_read_only = 1", .setSessionReadOnly(true)),
        p("set local default_transaction_read_only = on"),
        p("set default_transaction_read_only = maybe"),
    ]

    static let commandCases: [RoutingCase] = [
        p("SET switchyard.route TO replica", command: .set(.replica)),
        p("set switchyard.route = 'auto'", command: .set(.auto)),
        p("set switchyard.route = primary", command: .set(.primary)),
        p("set session switchyard.route to 'REPLICA'", command: .set(.replica)),
        p("SET SWITCHYARD.ROUTE TO Primary;", command: .set(.primary)),
        p("show switchyard.route", command: .show),
        p("SHOW switchyard.route;", command: .show),
        p("/* switchyard: primary */ show switchyard.route", command: .show, hint: .primary),
        p("set local switchyard.route = replica"),
        p("set switchyard.route = nowhere"),
        p("set switchyard.route = replica, primary"),
        p("show switchyard.other"),
        // Read-your-writes settings.
        p("set switchyard.read_consistency = session", command: .setReadConsistency(.session)),
        p("SET SESSION switchyard.read_consistency TO 'DATABASE'", command: .setReadConsistency(.database)),
        p("set switchyard.read_consistency to eventual;", command: .setReadConsistency(.eventual)),
        p("set switchyard.read_consistency = sometimes", command: .invalidValue(
            parameter: "switchyard.read_consistency", value: "sometimes", hint: "Available values: eventual, session, database.")),
        p("set local switchyard.read_consistency = session"),
        p("set switchyard.min_read_lsn = '0/16B3748'", command: .setMinimumReadLSN(LSN(0x16B3748))),
        p("set switchyard.min_read_lsn to '1F/0'", command: .setMinimumReadLSN(LSN(0x1F_0000_0000))),
        p("set switchyard.min_read_lsn = '12345'", command: .invalidValue(
            parameter: "switchyard.min_read_lsn", value: "12345", hint: "A WAL position such as '0/16B3748', from SHOW switchyard.last_write_lsn.")),
        p("show switchyard.read_consistency", command: .showProxySetting("read_consistency")),
        p("SHOW SWITCHYARD.LAST_WRITE_LSN", command: .showProxySetting("last_write_lsn")),
        p("show switchyard.min_read_lsn;", command: .showProxySetting("min_read_lsn")),
        p("set switchyard.other = 1"),
        p("show switchyard.last_write_lsn; select 1", count: 2),
        // Only answered by the proxy when alone in the string.
        p("set switchyard.route = replica; select 1", count: 2),
        p("show switchyard.route; select 1", count: 2),
    ]
}

@Suite struct StatementClassifierTableTests {
    static let classifier = StatementClassifier()

    @Test(arguments: RoutingTable.cases)
    func classifies(_ c: RoutingCase) {
        let result = Self.classifier.classify(c.sql)
        #expect(result.route == c.route)
        #expect(result.transactionControl == c.control)
        #expect(result.routeCommand == c.command)
        #expect(result.hint == c.hint)
        if let count = c.count { #expect(result.statementCount == count) }
    }

    /// Whether a string's write position must be learnt (read-your-writes): only when a statement may write.
    @Test(arguments: [
        ("select 1", true), ("begin", true), ("commit", true), ("SET search_path = a", true), ("set local x = 1", true),
        ("RESET ALL", true), ("show work_mem", true), ("SHOW switchyard.route", true), ("begin; select 1; commit", true),
        ("set transaction read only", true), ("insert into t values (1)", false), ("begin; insert into t values (1); commit", false),
        ("insert into t values (1); commit", false), ("set a = 1; update t set b = 2", false), ("select nextval('s')", false),
        ("", false), (";", false), ("vacuum", false), ("listen x", false),
    ])
    func writesNothing(sql: String, expected: Bool) {
        #expect(Self.classifier.classify(sql).writesNothing == expected)
    }

    @Test func tableIsLargeAndUnique() {
        #expect(RoutingTable.cases.count >= 150)
        #expect(Set(RoutingTable.cases.map(\.sql)).count == RoutingTable.cases.count)
    }
}
