import NIOCore
import PostgresWire
import Testing
@testable import SwitchyardProxy

@Suite struct SessionEffectTests {
    let classifier = StatementClassifier()

    @Test(arguments: [
        ("LISTEN orders", SessionEffect.listen(channel: "orders")),
        ("listen \"Mixed Case\"", .listen(channel: "Mixed Case")),
        ("/* app */ LISTEN jobs;", .listen(channel: "jobs")),
        ("UNLISTEN orders", .unlisten(channel: "orders")),
        ("UNLISTEN *", .unlisten(channel: nil)),
        ("DISCARD ALL", .discard(all: true)),
        ("discard temporary", .discard(all: false)),
        ("DEALLOCATE _pg3_0", .deallocate(name: "_pg3_0")),
        ("DEALLOCATE PREPARE \"S_1\"", .deallocate(name: "S_1")),
        ("DEALLOCATE ALL", .deallocate(name: nil)),
        ("CREATE TEMP TABLE t (a int)", .createTemporary),
        ("create local temporary table t as select 1", .createTemporary),
        ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", .createTemporary),
        ("DROP DATABASE scratch", .databaseDDL(database: "scratch")),
        ("DROP DATABASE IF EXISTS \"Scratch\" WITH (FORCE)", .databaseDDL(database: "Scratch")),
        ("ALTER DATABASE scratch RENAME TO other", .databaseDDL(database: "scratch")),
        ("CREATE DATABASE copy TEMPLATE scratch", .databaseDDL(database: "scratch")),
        ("CREATE DATABASE copy WITH OWNER app TEMPLATE = Scratch ENCODING 'UTF8'", .databaseDDL(database: "scratch")),
    ] as [(String, SessionEffect)])
    func effects(sql: String, effect: SessionEffect) {
        let classification = classifier.classify(sql)
        #expect(classification.sessionEffect == effect, "\(sql)")
        #expect(classification.route == .primary)
        #expect(classification.pinsServerConnection == effect.pinsServerConnection)
        var buffer = ByteBuffer(string: sql)
        buffer.moveReaderIndex(forwardBy: 0)
        #expect(SessionEffect.mayBeginStatement(buffer), "the first-word check must let \(sql) through")
    }

    @Test(arguments: ["SELECT 1", "CREATE TABLE t (a int)", "CREATE DATABASE fresh", "ALTER DATABASE app SET work_mem = '8MB'",
                      "DROP TABLE t", "INSERT INTO t VALUES (1)", "DISCARD PLANS", "NOTIFY orders"])
    func noEffect(sql: String) {
        #expect(classifier.classify(sql).sessionEffect == nil, "\(sql)")
        #expect(!classifier.classify(sql).pinsServerConnection)
    }

    @Test(arguments: ["SELECT 1", "update t set a = 1", "INSERT INTO t VALUES (1)", "BEGIN", "  end", "delete from t", "COMMIT"])
    func firstWordCheckSkipsTheHotPath(sql: String) {
        #expect(!SessionEffect.mayBeginStatement(ByteBuffer(string: sql)), "\(sql)")
    }

    @Test func multiStatementStringWithAListenPins() {
        let classification = classifier.classify("LISTEN a; SELECT 1")
        #expect(classification.pinsServerConnection)
        #expect(classification.sessionEffect == nil)
        // The effect may be in a later statement: the first-word check must not skip the string.
        let later = classifier.classify("SELECT 1; LISTEN a")
        #expect(later.pinsServerConnection)
        #expect(SessionEffect.mayBeginStatement(ByteBuffer(string: "SELECT 1; LISTEN a")), "found by fuzz/run.sh sql")
        #expect(!SessionEffect.mayBeginStatement(ByteBuffer(string: "SELECT 1;  ")), "a trailing semicolon alone is not a second statement")
    }
}

@Suite struct ServerPinTests {
    @Test func listensUntilUnlistenAll() {
        var pin = ServerPin()
        #expect(!pin.isPinned)
        pin.apply(.listen(channel: "a"))
        pin.apply(.listen(channel: "b"))
        pin.apply(.unlisten(channel: "a"))
        #expect(pin.isPinned, "still listening on b")
        pin.apply(.unlisten(channel: nil))
        #expect(!pin.isPinned)
    }

    @Test func temporaryObjectsUntilDiscard() {
        var pin = ServerPin()
        pin.apply(.createTemporary)
        pin.apply(.listen(channel: "a"))
        pin.apply(.discard(all: false))
        #expect(pin.isPinned, "DISCARD TEMP keeps the LISTEN")
        pin.apply(.discard(all: true))
        #expect(!pin.isPinned)
        pin.pinUntilDiscarded()
        #expect(pin.isPinned)
        pin.apply(.unlisten(channel: nil))
        #expect(pin.isPinned, "UNLISTEN * does not drop temporary objects")
    }
}

@Suite struct ReplicaRefusalTests {
    @Test func recognisesTheStandbyRefusals() {
        #expect(ReplicaRefusal(ErrorFields(severity: .error, code: "25006", message: "cannot execute INSERT in a read-only transaction"))
                == .readOnlyTransaction)
        #expect(ReplicaRefusal(ErrorFields(severity: .error, code: "0A000", message: "cannot access temporary or unlogged relations during recovery"))
                == .temporaryOrUnloggedRelation)
        #expect(ReplicaRefusal(ErrorFields(severity: .error, code: "0A000", message: "cached plan must not change result type")) == nil)
        #expect(ReplicaRefusal(ErrorFields(severity: .error, code: "42P01", message: "relation \"t\" does not exist")) == nil)
    }
}

@Suite struct UnloggedRelationRoutingTests {
    let classifier = StatementClassifier(catalog: FunctionCatalog(rows: [("lower", "i")], unloggedRelations: ["sessions", "Cache"]))

    @Test(arguments: ["SELECT * FROM sessions", "select s.id from public.sessions s", "SELECT 1 FROM \"Cache\"",
                      "with x as (select * from sessions) select * from x", "SELECT * FROM SESSIONS"])
    func queriesNamingAnUnloggedTableGoToThePrimary(sql: String) {
        #expect(classifier.classify(sql).route == .primary, "\(sql)")
    }

    @Test(arguments: ["SELECT * FROM users", "SELECT lower(name) FROM accounts", "SELECT * FROM cache"])
    func otherQueriesStillGoToReplicas(sql: String) {
        #expect(classifier.classify(sql).route == .replica, "\(sql)")
    }
}

@Suite struct DatabaseDDLCheckTests {
    @Test(arguments: ["DROP DATABASE x", "  alter database x rename to y", "/* c */ DROP DATABASE x", "CREATE DATABASE y TEMPLATE x"])
    func letsDatabaseDDLThrough(sql: String) {
        #expect(SessionEffect.mayBeginDatabaseDDL(ByteBuffer(string: sql)), "\(sql)")
    }

    @Test(arguments: ["SELECT 1; DROP DATABASE x", "LISTEN a", "DISCARD ALL", "update t set a = 1"])
    func skipsEverythingElse(sql: String) {
        #expect(!SessionEffect.mayBeginDatabaseDDL(ByteBuffer(string: sql)), "\(sql)")
    }
}
