import Testing
@testable import SwitchyardProxy

@Suite struct FunctionCatalogTests {
    private func route(_ sql: String, _ catalog: FunctionCatalog = .builtin) -> StatementRoute {
        StatementClassifier(catalog: catalog).classify(sql).route
    }

    @Test func unknownFunctionIsSafeOnlyWhenEveryOverloadIsNonVolatile() {
        #expect(route("select my_func()") == .primary)
        #expect(route("select my_func()", FunctionCatalog(rows: [("my_func", "i")])) == .replica)
        #expect(route("select my_func()", FunctionCatalog(rows: [("my_func", "s")])) == .replica)
        #expect(route("select my_func()", FunctionCatalog(rows: [("my_func", "i"), ("my_func", "v")])) == .primary)
        #expect(route("select my_func()", FunctionCatalog(rows: [("my_func", "v"), ("my_func", "s")])) == .primary)
        #expect(route("select lower('x')", FunctionCatalog(rows: [("lower", "i"), ("lower", "v")])) == .primary)
        #expect(route("select my_func()", FunctionCatalog(rows: [("my_func", "?")])) == .primary)
    }

    @Test func loadedCatalogLooksUpQualifiedNamesByName() {
        let catalog = FunctionCatalog(rows: [("my_func", "i"), ("lower", "i")])
        #expect(route("select myschema.my_func()", catalog) == .replica)
        #expect(route("select myschema.lower('x')", catalog) == .replica)
        // The built-in list only knows pg_catalog's functions.
        #expect(route("select myschema.lower('x')") == .primary)
        #expect(route("select pg_catalog.lower('x')") == .replica)
    }

    @Test func alwaysWriteNamesBeatTheCatalog() {
        for name in ["nextval", "setval", "set_config", "pg_advisory_lock", "pg_try_advisory_lock_shared", "lo_unlink",
                     "dblink", "txid_current", "pg_current_wal_lsn", "pg_create_physical_replication_slot", "pg_notify"] {
            let catalog = FunctionCatalog(rows: [(name, "i")])
            #expect(route("select \(name)(1)", catalog) == .primary, "\(name)")
            #expect(!catalog.isReadOnly(Array(name.utf8)), "\(name)")
        }
    }

    @Test func readOnlyVolatileAllowListSurvivesLoading() {
        let catalog = FunctionCatalog(rows: [("random", "v"), ("pg_sleep", "v"), ("clock_timestamp", "v")])
        #expect(route("select random(), pg_sleep(0), clock_timestamp()", catalog) == .replica)
        #expect(route("select pg_is_in_recovery()", FunctionCatalog(rows: [])) == .replica)
    }

    @Test func quotedNamesAreCaseSensitive() {
        let catalog = FunctionCatalog(rows: [("MyFunc", "i")])
        #expect(route(#"select "MyFunc"(1)"#, catalog) == .replica)
        #expect(route("select MyFunc(1)", catalog) == .primary)   // unquoted: looks up myfunc
        #expect(route(#"select "myfunc"(1)"#, catalog) == .primary)
    }

    @Test func isReadOnlyTakesAnyByteCollection() {
        let builtin = FunctionCatalog.builtin
        #expect(builtin.isReadOnly(Array("count".utf8)))
        #expect(builtin.isReadOnly("jsonb_build_object".utf8))
        #expect(builtin.isReadOnly(Array("random".utf8)))
        #expect(!builtin.isReadOnly(Array("nextval".utf8)))
        #expect(!builtin.isReadOnly(Array("COUNT".utf8)))
        #expect(!builtin.isReadOnly(Array("".utf8)))
        #expect(!builtin.isReadOnly(Array(repeating: UInt8(ascii: "a"), count: 300)))
    }
}

@Suite struct StatementLexerTests {
    private func kinds(_ sql: String) -> [SQLToken.Kind] {
        var sql = sql
        return sql.withUTF8 { buffer in
            var lexer = StatementLexer(UnsafeRawBufferPointer(buffer))
            var kinds: [SQLToken.Kind] = []
            while true {
                let token = lexer.next()
                kinds.append(token.kind)
                if token.kind == .end || token.kind == .invalid { return kinds }
            }
        }
    }

    @Test func dollarSigns() {
        #expect(kinds("$1") == [.parameter, .end])
        #expect(kinds("$$x$$") == [.string, .end])
        #expect(kinds("$a1$ $$ $a1$") == [.string, .end])
        #expect(kinds("a$$b$$") == [.word, .end])            // '$' continues an identifier
        #expect(kinds("$1$ x $1$") == [.parameter, .op, .word, .parameter, .op, .end])
        #expect(kinds("$x") == [.op, .word, .end])
    }

    @Test func literalsAndIdentifiers() {
        #expect(kinds(#"'a''b' E'\'' B'1' X'f' N'n' U&'u' U&"i" "q""q""#) == [.string, .string, .string, .string, .string, .string, .quotedIdentifier, .quotedIdentifier, .end])
        #expect(kinds("e 'x'") == [.word, .string, .end])
        #expect(kinds("1into 1.5 .5 1_000 0x1F") == [.number, .word, .number, .number, .number, .number, .word, .end])
        #expect(kinds("x::int a.b") == [.word, .typecast, .word, .word, .dot, .word, .end])
        #expect(kinds("/* a /* b */ c */ -- d\n x") == [.word, .end])
        #expect(kinds("'open") == [.invalid])
        #expect(kinds("/* open /* */") == [.invalid])
    }
}

@Suite struct StatementClassifierPropertyTests {
    static let classifier = StatementClassifier()

    private func classify(bytes: [UInt8]) -> StatementClassification {
        bytes.withUnsafeBytes { Self.classifier.classify($0) }
    }

    @Test func arbitraryBytesNeverCrash() {
        var rng = SplitMix64(state: 42)
        let alphabet = Array("selct fromwhere()'\"$;:-/*\\eExXuU&1_.,\n".utf8)
        for i in 0..<4000 {
            let length = Int.random(in: 0..<80, using: &rng)
            let bytes: [UInt8] = (0..<length).map { _ in
                i.isMultiple(of: 2) ? UInt8.random(in: 0...255, using: &rng) : alphabet.randomElement(using: &rng)!
            }
            let result = classify(bytes: bytes)
            #expect(result.statementCount >= 0)
            #expect(result == classify(bytes: bytes))
        }
    }

    @Test func truncationsNeverCrash() {
        var rng = SplitMix64(state: 7)
        for c in RoutingTable.cases {
            let bytes = Array(c.sql.utf8)
            for _ in 0..<8 {
                let cut = Int.random(in: 0...bytes.count, using: &rng)
                _ = classify(bytes: Array(bytes[..<cut]))
                _ = classify(bytes: Array(bytes[cut...]))
            }
        }
    }

    /// Whether the lexer gets through `sql` with balanced parentheses and everything closed.
    private func lexesCleanly(_ sql: String) -> Bool {
        var sql = sql
        return sql.withUTF8 { buffer in
            var cursor = StatementCursor(StatementLexer(UnsafeRawBufferPointer(buffer)))
            while !cursor.atEnd {
                cursor.beginStatement()
                cursor.skipToEnd()
            }
            return !cursor.malformed
        }
    }

    /// Leaving something open makes the whole string unparseable for the server: primary, no controls.
    @Test(arguments: ["\n'", "\n\"", "\n(", "\n)", "\n/*", "\n$$", "\nE'\\'"])
    func unterminatedSuffixesGoToPrimary(_ suffix: String) {
        for c in RoutingTable.cases where lexesCleanly(c.sql) {
            let result = Self.classifier.classify(c.sql + suffix)
            #expect(result.route == .primary, "\(c.sql.debugDescription) + \(suffix.debugDescription)")
            #expect(result.transactionControl == nil && result.routeCommand == nil)
        }
    }

    @Test func aWriteAfterAnySafeStatementGoesToPrimary() {
        for c in RoutingTable.cases where c.route == .replica {
            #expect(Self.classifier.classify(c.sql + "\n; delete from t").route == .primary, "\(c.sql.debugDescription)")
            #expect(Self.classifier.classify(c.sql + "\n; select nextval('s')").route == .primary, "\(c.sql.debugDescription)")
        }
    }

    @Test func leadingCommentsAndCaseDoNotMatter() {
        for c in RoutingTable.cases {
            let expected = Self.classifier.classify(c.sql)
            #expect(Self.classifier.classify("/* note */\n  -- more\n" + c.sql) == expected, "\(c.sql.debugDescription)")
            // Quoted identifiers are case-sensitive, so only unquoted SQL can be upper-cased wholesale.
            if !c.sql.contains("\"") {
                let upper = String(decoding: c.sql.utf8.map { $0 &- 97 < 26 ? $0 - 32 : $0 }, as: UTF8.self)
                #expect(Self.classifier.classify(upper) == expected, "\(upper.debugDescription)")
            }
        }
    }

    @Test func bufferAndStringAgree() {
        for c in RoutingTable.cases {
            #expect(classify(bytes: Array(c.sql.utf8)) == Self.classifier.classify(c.sql))
        }
    }

    @Test func deepNestingStaysConservative() {
        let deep = String(repeating: "(", count: 100) + "select 1" + String(repeating: ")", count: 100)
        #expect(Self.classifier.classify(deep).route == .replica)
        let deepCall = "select " + String(repeating: "lower(", count: 100) + "'x'" + String(repeating: ")", count: 100)
        #expect(Self.classifier.classify(deepCall).route == .replica)
        let deepWrite = "select " + String(repeating: "(", count: 100) + "select nextval('s')" + String(repeating: ")", count: 100)
        #expect(Self.classifier.classify(deepWrite).route == .primary)
    }
}
