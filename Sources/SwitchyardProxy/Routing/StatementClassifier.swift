// Decides, from the text alone, whether a simple-query string is provably read-only and may run on a replica.
// Conservative by construction: anything it doesn't understand goes to the primary. It cannot see through
// views, rules, RLS policies, triggers, operators or attribute-notation calls (`t.f` calling `f(t)`) to
// volatile functions; a hot standby rejects any write those attempt, so the worst case is an error, not a
// lost write. Session-local objects (temporary tables, currval, SET values) exist only on the primary.

/// Where a statement string may run: `.replica` only if every statement in it is provably read-only.
public enum StatementRoute: Sendable, Equatable { case replica, primary }

/// A hint from a comment before the first token: `/* switchyard: replica */` or `-- switchyard: primary`.
/// It is reported, not applied: what to do with a hint is the proxy's policy.
public enum RouteHint: Sendable, Equatable { case primary, replica }

public enum TransactionControl: Sendable, Equatable {
    /// BEGIN / START TRANSACTION; read-only only with READ ONLY and no READ WRITE.
    case begin(readOnly: Bool)
    /// SET TRANSACTION ... (read-only only with READ ONLY), or SET transaction_read_only = bool.
    case setTransaction(readOnly: Bool)
    /// SET default_transaction_read_only = bool, SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY|WRITE.
    case setSessionReadOnly(Bool)
    /// COMMIT / END, ROLLBACK / ABORT. Statements that leave a transaction open are nil, i.e. ordinary
    /// primary statements: SAVEPOINT, RELEASE, ROLLBACK TO SAVEPOINT, COMMIT/ROLLBACK AND CHAIN (the next
    /// transaction starts at once), and COMMIT/ROLLBACK PREPARED and PREPARE TRANSACTION (two-phase commit).
    case commit, rollback
}

/// Statements the proxy answers itself.
public enum RouteCommand: Sendable, Equatable {
    /// SET [SESSION] switchyard.route { TO | = } primary | replica | auto (quoted or not, any case).
    case set(RouteSetting)
    /// SHOW switchyard.route
    case show
    /// SET [SESSION] switchyard.read_consistency { TO | = } eventual | session | database
    case setReadConsistency(ReadConsistency)
    /// SET [SESSION] switchyard.min_read_lsn { TO | = } '0/16B3748' (a causal token; '0/0' clears it)
    case setMinimumReadLSN(LSN)
    /// SET of one of the above to a value it does not take: refused with 22023, as Postgres would.
    case invalidValue(parameter: String, value: String, hint: String)
    /// SHOW switchyard.read_consistency, switchyard.last_write_lsn or switchyard.min_read_lsn
    case showProxySetting(String)

    /// The `switchyard.*` settings a session can SHOW, and the ones it can SET.
    static let shownSettings = ["route", "read_consistency", "last_write_lsn", "min_read_lsn"]
}

public struct StatementClassification: Sendable, Equatable {
    public var route: StatementRoute
    public var hint: RouteHint?
    /// With several statements, the last transaction-control one: it decides the state after the string runs.
    public var transactionControl: TransactionControl?
    /// Only when the string holds just that one statement, so the proxy can answer the whole string.
    public var routeCommand: RouteCommand?
    /// Non-empty statements in the string (a simple query may hold several).
    public var statementCount: Int
    /// The last statement's session effect, if any (LISTEN, DEALLOCATE, DROP DATABASE, ...).
    public var sessionEffect: SessionEffect?
    /// Some statement in the string leaves state on its server connection (LISTEN, CREATE TEMP).
    public var pinsServerConnection: Bool
    /// No statement in the string can write: each is read-only, transaction control, or SET, RESET or
    /// SHOW. Read-your-writes learns a unit's write position only when some statement may have written.
    public var writesNothing: Bool

    public init(route: StatementRoute, hint: RouteHint? = nil, transactionControl: TransactionControl? = nil,
                routeCommand: RouteCommand? = nil, statementCount: Int, sessionEffect: SessionEffect? = nil,
                pinsServerConnection: Bool = false, writesNothing: Bool? = nil) {
        self.route = route
        self.writesNothing = writesNothing ?? (route == .replica)
        self.hint = hint
        self.transactionControl = transactionControl
        self.routeCommand = routeCommand
        self.statementCount = statementCount
        self.sessionEffect = sessionEffect
        self.pinsServerConnection = pinsServerConnection || (sessionEffect?.pinsServerConnection ?? false)
    }
}

public struct StatementClassifier: Sendable {
    public let catalog: FunctionCatalog
    private let keywords = sqlKeywordTable

    public init(catalog: FunctionCatalog = .builtin) { self.catalog = catalog }

    public func classify(_ sql: String) -> StatementClassification {
        var sql = sql
        return sql.withUTF8 { classify(UnsafeRawBufferPointer($0)) }
    }

    public func classify(_ sql: UnsafeRawBufferPointer) -> StatementClassification {
        keywords.withView { keywords in
            catalog.safeNames.withView { functions in
              catalog.unloggedRelations.withView { unlogged in
                let pass = ClassifierPass(text: sql, keywords: keywords, functions: functions, onlyBuiltins: catalog.onlyBuiltins,
                                          unlogged: catalog.hasUnloggedRelations ? unlogged : nil)
                var cursor = StatementCursor(StatementLexer(sql))
                var result = pass.run(&cursor)
                result.hint = Self.leadingHint(sql)
                // The session's standard_conforming_strings isn't known here. When it is off, a backslash in '...'
                // escapes the next quote and the same bytes lex differently, so both readings must be read-only.
                if result.route == .replica && cursor.lexer.sawBackslashInPlainString {
                    var other = StatementCursor(StatementLexer(sql, backslashEscapesInPlainStrings: true))
                    if pass.run(&other).route != .replica { result.route = .primary }
                }
                return result
              }
            }
        }
    }

    /// The hint in the comments before the first token; if there are several, the last one.
    static func leadingHint(_ text: UnsafeRawBufferPointer) -> RouteHint? {
        var hint: RouteHint? = nil
        var i = 0
        while i + 1 < text.count {
            if isSQLSpace(text[i]) {
                i += 1
            } else if text[i] == UInt8(ascii: "-") && text[i + 1] == UInt8(ascii: "-") {
                let end = StatementLexer.lineCommentEnd(text, from: i)
                hint = parseHint(text, from: i + 2, to: end) ?? hint
                i = end
            } else if text[i] == UInt8(ascii: "/") && text[i + 1] == UInt8(ascii: "*"),
                      let end = StatementLexer.blockCommentEnd(text, from: i) {
                hint = parseHint(text, from: i + 2, to: end - 2) ?? hint
                i = end
            } else {
                break
            }
        }
        return hint
    }

    /// `switchyard: primary` or `switchyard: replica`, in any case, with optional whitespace around each part.
    static func parseHint(_ text: UnsafeRawBufferPointer, from start: Int, to end: Int) -> RouteHint? {
        var i = start
        func skipSpace() { while i < end && isSQLSpace(text[i]) { i += 1 } }
        func take(_ word: StaticString) -> Bool {
            let n = word.utf8CodeUnitCount
            guard i + n <= end, sqlBytesEqual(text, i, i + n, word, ignoringCase: true) else { return false }
            i += n
            return true
        }
        skipSpace()
        guard take("switchyard") else { return nil }
        skipSpace()
        guard take(":") else { return nil }
        skipSpace()
        let hint: RouteHint
        if take("primary") { hint = .primary } else if take("replica") { hint = .replica } else { return nil }
        skipSpace()
        return i == end ? hint : nil
    }
}

/// `text[start..<end]` equals `word` (given in lowercase when `ignoringCase`).
func sqlBytesEqual(_ text: UnsafeRawBufferPointer, _ start: Int, _ end: Int, _ word: StaticString, ignoringCase: Bool) -> Bool {
    guard end - start == word.utf8CodeUnitCount else { return false }
    let w = word.utf8Start
    for k in 0..<(end - start) {
        let b = text[start + k]
        if (ignoringCase ? sqlLowercased(b) : b) != w[k] { return false }
    }
    return true
}

/// The rules, applied in one left-to-right pass over a statement string read through `cursor`. Kept apart
/// from the cursor (passed `inout`) so the hot loop never copies mutable state around.
struct ClassifierPass {
    let text: UnsafeRawBufferPointer
    let keywords: KeywordTable.View
    /// The catalog's safe function names.
    let functions: ByteNameTable.View
    /// The catalog is `FunctionCatalog.builtin`, which knows only pg_catalog.
    let onlyBuiltins: Bool
    /// Unlogged relation names, when the catalog knows any: naming one keeps a query off replicas.
    let unlogged: ByteNameTable.View?

    /// What one statement amounts to; the default is a plain primary statement.
    struct Verdict {
        var replicaSafe = false
        var transactionControl: TransactionControl? = nil
        var routeCommand: RouteCommand? = nil
        var sessionEffect: SessionEffect? = nil
        /// SET, RESET, SHOW: not replica-safe (they act on, or show, the server they run on), but no write.
        var writesNothing = false
    }

    func run(_ cursor: inout StatementCursor) -> StatementClassification {
        var count = 0
        var allSafe = true
        var quiet = true
        var control: TransactionControl? = nil
        var command: RouteCommand? = nil
        var effect: SessionEffect? = nil
        var pins = false
        while !cursor.atEnd {
            cursor.beginStatement()
            let first = cursor.next()
            if first.kind == .end { continue }
            count += 1
            let verdict = statement(startingWith: first, &cursor)
            cursor.skipToEnd()
            allSafe = allSafe && verdict.replicaSafe
            quiet = quiet && (verdict.replicaSafe || verdict.writesNothing || verdict.transactionControl != nil)
            control = verdict.transactionControl ?? control
            command = verdict.routeCommand
            effect = verdict.sessionEffect
            pins = pins || (verdict.sessionEffect?.pinsServerConnection ?? false)
        }
        // The server parses the whole string before running any of it: if it doesn't lex, nothing runs.
        if cursor.malformed { return StatementClassification(route: .primary, statementCount: count) }
        return StatementClassification(route: allSafe && count > 0 ? .replica : .primary, transactionControl: control,
                                       routeCommand: count == 1 ? command : nil, statementCount: count,
                                       sessionEffect: effect, pinsServerConnection: pins, writesNothing: quiet && count > 0)
    }

    func statement(startingWith first: SQLToken, _ cursor: inout StatementCursor) -> Verdict {
        if first.kind == .leftParen { return Verdict(replicaSafe: queryIsReadOnly(startingAt: first, &cursor)) }
        switch keywordInfo(first).keyword {
        case .select, .values, .table, .with:
            return Verdict(replicaSafe: queryIsReadOnly(startingAt: first, &cursor))
        case .explain:
            return Verdict(replicaSafe: explainIsReadOnly(&cursor))
        case .begin:
            return Verdict(transactionControl: .begin(readOnly: accessModes(&cursor).readOnly))
        case .start:
            guard isWord(cursor.next(), "transaction") else { return Verdict() }
            return Verdict(transactionControl: .begin(readOnly: accessModes(&cursor).readOnly))
        case .commit, .end:
            return Verdict(transactionControl: transactionEnd(.commit, &cursor))
        case .rollback, .abort:
            return Verdict(transactionControl: transactionEnd(.rollback, &cursor))
        case .set:
            var verdict = setStatement(&cursor)
            verdict.writesNothing = true
            return verdict
        case .reset:
            return Verdict(writesNothing: true)
        case .show:
            let name = cursor.next(), dot = cursor.next(), member = cursor.next()
            guard isWord(name, "switchyard"), dot.kind == .dot, member.kind == .word, cursor.next().kind == .end else {
                return Verdict(writesNothing: true)
            }
            let setting = word(member).lowercased()
            guard RouteCommand.shownSettings.contains(setting) else { return Verdict(writesNothing: true) }
            return Verdict(routeCommand: setting == "route" ? .show : .showProxySetting(setting), writesNothing: true)
        default:
            // DML, DDL, COPY, CALL, DO, LOCK, VACUUM, PREPARE/EXECUTE, DECLARE/FETCH, LISTEN/NOTIFY, SHOW, ...
            return Verdict(sessionEffect: sessionEffect(startingWith: first, &cursor))
        }
    }

    // MARK: Queries

    /// What came before a token, as far as the call rules care.
    struct Prev: Equatable {
        enum Kind: UInt8 { case start, open, comma, dot, typecast, literal, quoted, other, word, close, closeExpr }
        var kind: Kind
        var info = SQLKeywordInfo.notKeyword

        static let start = Prev(kind: .start), open = Prev(kind: .open), comma = Prev(kind: .comma)
        static let dot = Prev(kind: .dot), typecast = Prev(kind: .typecast), literal = Prev(kind: .literal)
        static let quoted = Prev(kind: .quoted), other = Prev(kind: .other)
        /// A `)`; `exprFollows` if it closed DISTINCT ON (...) or OPERATOR(...), which an expression may follow.
        static func close(exprFollows: Bool) -> Prev { Prev(kind: exprFollows ? .closeExpr : .close) }
        static func word(_ info: SQLKeywordInfo) -> Prev { Prev(kind: .word, info: info) }

        @inline(__always) func isWord(_ keyword: SQLKeyword) -> Bool { kind == .word && info.keyword == keyword }
    }

    /// SELECT, VALUES, TABLE or WITH, possibly parenthesized: replica-safe only if nothing in it, at any
    /// depth, writes (INSERT/UPDATE/DELETE/MERGE, also in CTEs), locks rows (FOR UPDATE/SHARE/...), is
    /// SELECT INTO, or calls a function the catalog doesn't vouch for. Returns at the first reason to say no.
    func queryIsReadOnly(startingAt first: SQLToken, _ cursor: inout StatementCursor) -> Bool {
        var token = first, previous = first, beforeDot = first
        var prev = Prev.start
        var chainPrev = Prev.start        // what came before the current (possibly qualified) name
        var qualifier: SQLToken? = nil    // the name before the current name's last '.'
        var started = false               // seen SELECT/VALUES/TABLE/WITH after any leading '('
        var exprParens: UInt64 = 0        // bit d-1: the '(' that opened depth d was DISTINCT ON / OPERATOR
        var withDepth = -1                // depth of a WITH list still being read
        var groupByDepth = -1             // depth of a GROUP BY list still being read
        while true {
            let depth = cursor.depth
            if !started && token.kind != .word && token.kind != .leftParen { return false }
            switch token.kind {
            case .end:
                return started
            case .word:
                if let unlogged, unlogged.value(for: ASCIILowercasedBytes(base: text, startIndex: token.start, endIndex: token.end)) != nil {
                    return false
                }
                let info = keywordInfo(token)
                let keyword = info.keyword
                if !started {
                    guard keyword == .select || keyword == .values || keyword == .table || keyword == .with else { return false }
                    started = true
                }
                switch keyword {
                case .insert, .update, .delete, .merge, .into:
                    return false
                case .share, .key, .no:
                    if prev.isWord(.for) { return false }
                case .with:
                    if prev == .start || prev == .open { withDepth = depth }
                case .select, .values, .table:
                    if depth == withDepth { withDepth = -1 }
                case .by:
                    if prev.isWord(.group) { groupByDepth = depth }
                case .afterGroupBy, .fetch, .for:
                    if depth == groupByDepth { groupByDepth = -1 }
                default:
                    break
                }
                if prev == .dot { qualifier = beforeDot } else { chainPrev = prev; qualifier = nil }
                prev = .word(info)
            case .quotedIdentifier:
                if let unlogged, token.escaped || unlogged.value(for: UnsafeRawBufferPointer(rebasing: text[(token.start + 1)..<(token.end - 1)])) != nil {
                    return false
                }
                if prev == .dot { qualifier = beforeDot } else { chainPrev = prev; qualifier = nil }
                prev = .quoted
            case .leftParen:
                switch prev.kind {
                case .word, .quoted:
                    guard isReadOnlyCall(previous, prev.info, qualifier: qualifier, after: chainPrev, depth: depth - 1,
                                         withDepth: withDepth, groupByDepth: groupByDepth) else { return false }
                case .close, .closeExpr:
                    if depth - 1 == withDepth { withDepth = -1 }    // WITH ... AS (...) (SELECT ...)
                default:
                    break
                }
                let distinctOn = prev.isWord(.on) && chainPrev.isWord(.distinct)
                if (distinctOn || prev.isWord(.operator)) && depth <= 64 { exprParens |= 1 << UInt64(depth - 1) }
                prev = .open
            case .rightParen:
                let bit: UInt64 = depth < 64 ? 1 << UInt64(depth) : 0
                prev = .close(exprFollows: depth >= 64 || exprParens & bit != 0)
                exprParens &= ~bit
                if withDepth > depth { withDepth = -1 }
                if groupByDepth > depth { groupByDepth = -1 }
            case .dot:
                beforeDot = previous
                prev = .dot
            case .comma: prev = .comma
            case .typecast: prev = .typecast
            case .string, .number, .parameter: prev = .literal
            case .op: prev = .other
            case .semicolon, .invalid: return false   // ';' inside parentheses
            }
            previous = token
            token = cursor.next()
        }
    }

    /// `name(`: fine if the grammar makes it syntax rather than a call, or if the catalog vouches for the call.
    /// `depth` is the name's own parenthesis depth.
    func isReadOnlyCall(_ name: SQLToken, _ info: SQLKeywordInfo, qualifier: SQLToken?, after chainPrev: Prev,
                        depth: Int, withDepth: Int, groupByDepth: Int) -> Bool {
        if let qualifier {
            // Keywords don't apply after a schema: pg_catalog.substring( is the function substring.
            return (!onlyBuiltins || isPgCatalog(qualifier)) && catalogAllows(name)
        }
        if info.neverFunction || catalogAllows(name) { return true }
        // Not a function we know to be safe. Positions where `name(` can't be a call:
        if chainPrev == .typecast || chainPrev == .close(exprFollows: false) {
            return true   // x::mytype(3); f() t(a, b), count(*) FILTER (, OVER (, (...) JOIN (, REPEATABLE (
        }
        if chainPrev.isWord(.as) || chainPrev.isWord(.ordinality) || chainPrev.isWord(.tablesample) {
            return true   // AS t(a, b), CAST(x AS mytype(3)), WITH ORDINALITY t(a, n), TABLESAMPLE system (10)
        }
        if depth == withDepth && (chainPrev == .comma || chainPrev.isWord(.with) || chainPrev.isWord(.recursive)) {
            return true   // WITH [RECURSIVE] t(a, b) AS (...), u(c) AS (...)
        }
        guard name.kind == .word else { return false }
        switch info.keyword {
        case .materialized: return chainPrev.isWord(.not) && depth == withDepth   // AS NOT MATERIALIZED (
        case .infix, .operator: return followsOperand(chainPrev)     // t JOIN (, x LIKE (, 1 OPERATOR(pg_catalog.+)
        case .varying:                                               // character varying(10)
            return chainPrev.isWord(.character) || chainPrev.isWord(.char) || chainPrev.isWord(.bit) || chainPrev.isWord(.nchar)
        case .sets: return chainPrev.isWord(.grouping)               // GROUPING SETS (
        case .rollup, .cube: return groupByDepth >= 0 && depth >= groupByDepth
        case .zone: return chainPrev.isWord(.time)                   // AT TIME ZONE (
        case .first, .next: return chainPrev.isWord(.fetch)          // FETCH FIRST (n) ROWS
        default: return false
        }
    }

    /// After an operand, a word followed by `(` is an infix keyword or an alias, never a call. Reserved
    /// keywords (SELECT, WHERE, AND, ...) are followed by expressions, so after them it would be a call.
    private func followsOperand(_ prev: Prev) -> Bool {
        switch prev.kind {
        case .quoted, .literal: return true
        case .word: return !prev.info.reserved
        default: return false
        }
    }

    private func catalogAllows(_ name: SQLToken) -> Bool {
        if name.kind == .word {
            return functions.value(for: ASCIILowercasedBytes(base: text, startIndex: name.start, endIndex: name.end)) != nil
        }
        // "..." is looked up exactly as written; with "" or U& escapes it would need decoding: unknown.
        return !name.escaped && functions.value(for: UnsafeRawBufferPointer(rebasing: text[(name.start + 1)..<(name.end - 1)])) != nil
    }

    private func isPgCatalog(_ token: SQLToken) -> Bool {
        switch token.kind {
        case .word: return sqlBytesEqual(text, token.start, token.end, "pg_catalog", ignoringCase: true)
        case .quotedIdentifier: return !token.escaped && sqlBytesEqual(text, token.start + 1, token.end - 1, "pg_catalog", ignoringCase: false)
        default: return false
        }
    }

    /// EXPLAIN without ANALYZE only plans, so it is as safe as the statement; with ANALYZE it runs it: primary.
    func explainIsReadOnly(_ cursor: inout StatementCursor) -> Bool {
        var token = cursor.next()
        if token.kind == .leftParen {   // EXPLAIN (option [value], ...): any mention of ANALYZE counts
            repeat {
                token = cursor.next()
                if token.kind == .end || keywordInfo(token).keyword == .analyze { return false }
            } while !(token.kind == .rightParen && cursor.depth == 0)
            token = cursor.next()
        } else {                        // EXPLAIN [ANALYZE] [VERBOSE]
            while true {
                let keyword = keywordInfo(token).keyword
                if keyword == .analyze { return false }
                guard keyword == .verbose else { break }
                token = cursor.next()
            }
        }
        return queryIsReadOnly(startingAt: token, &cursor)
    }

    // MARK: Transaction control and SET/SHOW

    /// The rest of BEGIN / START TRANSACTION / SET TRANSACTION: READ ONLY and READ WRITE in the mode list.
    func accessModes(_ cursor: inout StatementCursor) -> (readOnly: Bool, readWrite: Bool) {
        var readOnly = false, readWrite = false, afterRead = false
        while true {
            let token = cursor.next()
            if token.kind == .end { return (readOnly && !readWrite, readWrite) }
            if afterRead && isWord(token, "only") { readOnly = true }
            if afterRead && isWord(token, "write") { readWrite = true }
            afterRead = isWord(token, "read")
        }
    }

    /// COMMIT/END/ROLLBACK/ABORT, or nil when the transaction stays open (ROLLBACK TO [SAVEPOINT], AND CHAIN)
    /// or it isn't this session's (COMMIT/ROLLBACK PREPARED).
    func transactionEnd(_ control: TransactionControl, _ cursor: inout StatementCursor) -> TransactionControl? {
        var previous = SQLToken(kind: .end, start: 0, end: 0)
        while true {
            let token = cursor.next()
            if token.kind == .end { return control }
            if isWord(token, "prepared") || (control == .rollback && isWord(token, "to"))
                || (isWord(token, "chain") && isWord(previous, "and")) { return nil }
            previous = token
        }
    }

    /// SET: transaction access modes, default_transaction_read_only, and the proxy's own switchyard.route.
    /// SET LOCAL of a session setting isn't the session's, so it stays an ordinary statement.
    func setStatement(_ cursor: inout StatementCursor) -> Verdict {
        var token = cursor.next()
        var local = false
        if isWord(token, "session") {
            token = cursor.next()
            if isWord(token, "characteristics") {   // SET SESSION CHARACTERISTICS AS TRANSACTION ...
                let modes = accessModes(&cursor)
                let readOnly: Bool? = modes.readOnly ? true : modes.readWrite ? false : nil
                return Verdict(transactionControl: readOnly.map { .setSessionReadOnly($0) })
            }
        } else if isWord(token, "local") {
            local = true
            token = cursor.next()
        }
        if isWord(token, "transaction") {
            return Verdict(transactionControl: .setTransaction(readOnly: accessModes(&cursor).readOnly))
        }
        // SET name[.member] { TO | = } value
        guard token.kind == .word else { return Verdict() }
        let name = token
        var member: SQLToken? = nil
        token = cursor.next()
        if token.kind == .dot {
            member = cursor.next()
            token = cursor.next()
        }
        guard isWord(token, "to") || (token.kind == .op && text[token.start] == UInt8(ascii: "=")) else { return Verdict() }
        let value = cursor.next()
        guard cursor.next().kind == .end else { return Verdict() }
        if let member {
            guard !local, isWord(name, "switchyard") else { return Verdict() }
            if isWord(member, "route") {
                let setting: RouteSetting? = valueIs(value, "primary") ? .primary : valueIs(value, "replica") ? .replica
                    : valueIs(value, "auto") ? .auto : nil
                return Verdict(routeCommand: setting.map { .set($0) })
            }
            if isWord(member, "read_consistency") {
                let text = settingValue(value)
                guard let level = text.flatMap({ ReadConsistency(rawValue: $0.lowercased()) }) else {
                    return Verdict(routeCommand: .invalidValue(parameter: "switchyard.read_consistency", value: text ?? "",
                                                               hint: "Available values: eventual, session, database."))
                }
                return Verdict(routeCommand: .setReadConsistency(level))
            }
            if isWord(member, "min_read_lsn") {
                let text = settingValue(value)
                guard let position = text.flatMap(LSN.init) else {
                    return Verdict(routeCommand: .invalidValue(parameter: "switchyard.min_read_lsn", value: text ?? "",
                                                               hint: "A WAL position such as '0/16B3748', from SHOW switchyard.last_write_lsn."))
                }
                return Verdict(routeCommand: .setMinimumReadLSN(position))
            }
            return Verdict()
        }
        let on = valueIs(value, "on") || valueIs(value, "true") || valueIs(value, "yes") || valueIs(value, "1")
        let off = valueIs(value, "off") || valueIs(value, "false") || valueIs(value, "no") || valueIs(value, "0")
        guard on || off else { return Verdict() }
        if !local && isWord(name, "default_transaction_read_only") { return Verdict(transactionControl: .setSessionReadOnly(on)) }
        if isWord(name, "transaction_read_only") { return Verdict(transactionControl: .setTransaction(readOnly: on)) }
        return Verdict()
    }

    /// A SET value's text: a word (down-cased, as Postgres does) or number, or a plain '...' literal's
    /// contents. Cold paths only.
    private func settingValue(_ token: SQLToken) -> String? {
        switch token.kind {
        case .word:
            return word(token).lowercased()
        case .number:
            return word(token)
        case .string where text[token.start] == UInt8(ascii: "'") && !token.escaped && token.end - token.start >= 2:
            return String(decoding: UnsafeRawBufferPointer(rebasing: text[(token.start + 1)..<(token.end - 1)]), as: UTF8.self)
        default:
            return nil
        }
    }

    /// A token's text. Cold paths only.
    private func word(_ token: SQLToken) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: text[token.start..<token.end]), as: UTF8.self)
    }

    /// A SET value, as a word or number, or inside a plain '...' literal, equals `word` ignoring case.
    private func valueIs(_ token: SQLToken, _ word: StaticString) -> Bool {
        switch token.kind {
        case .word, .number:
            return sqlBytesEqual(text, token.start, token.end, word, ignoringCase: true)
        case .string where text[token.start] == UInt8(ascii: "'") && !token.escaped:
            return sqlBytesEqual(text, token.start + 1, token.end - 1, word, ignoringCase: true)
        default:
            return false
        }
    }

    // MARK: Words

    @inline(__always) func keywordInfo(_ token: SQLToken) -> SQLKeywordInfo {
        guard token.kind == .word, token.end - token.start <= longestSQLKeyword,
              let payload = keywords.payload(text, token.start, token.end)
        else { return .notKeyword }
        return SQLKeywordInfo(payload: payload)
    }

    /// An unquoted word equal to `word` (lowercase) ignoring case. Cold paths only.
    func isWord(_ token: SQLToken, _ word: StaticString) -> Bool {
        token.kind == .word && sqlBytesEqual(text, token.start, token.end, word, ignoringCase: true)
    }
}
