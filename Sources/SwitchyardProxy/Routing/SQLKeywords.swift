/// Keywords the classifier acts on. `.none`: not a keyword at all; `.other`: a reserved or column-name
/// keyword with no rule of its own (it matters only through `neverFunction`).
enum SQLKeyword: UInt8 {
    case none, other
    // Statement starts.
    case select, values, table, with, explain, begin, start, commit, end, rollback, abort, set, show
    // Writes, and SELECT INTO, anywhere in a query.
    case insert, update, delete, merge, into
    // Locking clauses: FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE.
    case `for`, share, key, no
    // Context that decides whether `name(` is a function call.
    case `as`, not, on, distinct, `operator`, recursive, materialized, ordinality, tablesample, group, by, grouping, sets
    case rollup, cube, time, zone, fetch, first, next, character, char, bit, nchar, varying
    /// An infix word that may be followed by `(` without being a call: `a JOIN (`, `x LIKE (`, `'$' COLUMNS (`.
    case infix
    /// A clause that ends a GROUP BY list.
    case afterGroupBy
    case analyze, verbose
}

/// A word's keyword and its PostgreSQL category (kwlist.h), packed in the keyword table's 16-bit payload.
struct SQLKeywordInfo: Equatable {
    var keyword: SQLKeyword
    /// RESERVED_KEYWORD: `select join(1)` is a call to `join`, `x join (` isn't.
    var reserved: Bool
    /// Reserved or COL_NAME_KEYWORD: can never name a function unless quoted or schema-qualified, so a `(`
    /// after it is syntax: `IN (`, `VALUES (`, `COALESCE(`, `SUBSTRING(`, `numeric(10, 2)`, `CURRENT_TIME(3)`.
    var neverFunction: Bool

    static let notKeyword = SQLKeywordInfo(keyword: .none, reserved: false, neverFunction: false)

    init(keyword: SQLKeyword, reserved: Bool, neverFunction: Bool) {
        self.keyword = keyword
        self.reserved = reserved
        self.neverFunction = neverFunction
    }

    init(payload: UInt16) {
        keyword = SQLKeyword(rawValue: UInt8(truncatingIfNeeded: payload)) ?? .other
        reserved = payload & 0x100 != 0
        neverFunction = payload & 0x200 != 0
    }

    var payload: UInt16 { UInt16(keyword.rawValue) | (reserved ? 0x100 : 0) | (neverFunction ? 0x200 : 0) }
}

/// Words longer than this are never keywords ("current_timestamp"), so lookups can skip them.
let longestSQLKeyword = 17

/// PostgreSQL 17's keyword categories (src/include/parser/kwlist.h) plus the unreserved words with a rule.
let sqlKeywordTable: ByteNameTable = {
    let reserved = """
        all analyse analyze and any array as asc asymmetric both case cast check collate column constraint create \
        current_catalog current_date current_role current_time current_timestamp current_user default deferrable \
        desc distinct do else end except false fetch for foreign from grant group having in initially intersect \
        into lateral leading limit localtime localtimestamp not null offset on only or order placing primary \
        references returning select session_user some symmetric system_user table then to trailing true union \
        unique user using variadic when where window with
        """
    let columnName = """
        between bigint bit boolean char character coalesce dec decimal exists extract float greatest grouping \
        inout int integer interval json json_array json_arrayagg json_exists json_object json_objectagg json_query \
        json_scalar json_serialize json_table json_value least merge_action national nchar none normalize nullif \
        numeric out overlay position precision real row setof smallint substring time timestamp treat trim values \
        varchar xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot \
        xmlserialize xmltable
        """
    let specific: [String: SQLKeyword] = [
        "select": .select, "values": .values, "table": .table, "with": .with, "explain": .explain,
        "begin": .begin, "start": .start, "commit": .commit, "end": .end, "rollback": .rollback, "abort": .abort,
        "set": .set, "show": .show,
        "insert": .insert, "update": .update, "delete": .delete, "merge": .merge, "into": .into,
        "for": .for, "share": .share, "key": .key, "no": .no,
        "as": .as, "not": .not, "on": .on, "distinct": .distinct, "operator": .operator, "recursive": .recursive,
        "materialized": .materialized, "ordinality": .ordinality, "tablesample": .tablesample, "group": .group,
        "by": .by, "grouping": .grouping, "sets": .sets, "rollup": .rollup, "cube": .cube, "time": .time,
        "zone": .zone, "fetch": .fetch, "first": .first, "next": .next, "character": .character, "char": .char,
        "bit": .bit, "nchar": .nchar, "varying": .varying,
        "join": .infix, "like": .infix, "ilike": .infix, "overlaps": .infix, "columns": .infix,
        "having": .afterGroupBy, "window": .afterGroupBy, "order": .afterGroupBy, "limit": .afterGroupBy,
        "offset": .afterGroupBy, "union": .afterGroupBy, "intersect": .afterGroupBy, "except": .afterGroupBy,
        "analyze": .analyze, "analyse": .analyze, "verbose": .verbose,
    ]
    let reservedWords = Set(reserved.split(separator: " ").map(String.init))
    let columnNameWords = Set(columnName.split(separator: " ").map(String.init))
    let all = reservedWords.union(columnNameWords).union(specific.keys)
    return ByteNameTable(all.map { word in
        let info = SQLKeywordInfo(keyword: specific[word] ?? .other, reserved: reservedWords.contains(word),
                                  neverFunction: reservedWords.contains(word) || columnNameWords.contains(word))
        return (Array(word.utf8), info.payload)
    })
}()
