/// Keywords the classifier acts on. `.none`: not a keyword at all; `.other`: a reserved or column-name
/// keyword with no rule of its own (it matters only through `neverFunction`).
enum SQLKeyword: UInt8 {
    case none, other
    // Statement starts.
    case select, values, table, with, explain, begin, start, commit, end, rollback, abort, set, reset, show
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

/// Keyword lookup without a per-byte loop: a word of at most 24 bytes is loaded as three little-endian
/// UInt64s, ASCII-lowercased a word at a time, hashed with one multiply and compared with three compares.
struct KeywordTable: Sendable {
    /// Per slot: the payload (0 = empty slot) and, three words per slot, the packed name. Most words aren't
    /// keywords and stop at an empty slot, so they touch only the small payload array.
    private var payloads: [UInt16]
    private var keys: [UInt64]
    /// For each length, a bit per first letter (a-z, then 26 for anything else) that some keyword has:
    /// most identifiers are rejected here without hashing.
    private var firstLetters: [UInt32]
    private static let slotBits = 9

    init(_ entries: [(name: String, payload: UInt16)]) {
        payloads = Array(repeating: 0, count: 1 << Self.slotBits)
        keys = Array(repeating: 0, count: 3 << Self.slotBits)
        firstLetters = Array(repeating: 0, count: 25)
        precondition(entries.count * 2 <= payloads.count)
        for (name, payload) in entries {
            let bytes = Array(name.utf8)
            precondition(bytes.count <= 24 && payload != 0)
            let key = bytes.withUnsafeBytes { Self.pack($0, 0, $0.count) }
            var i = Self.index(key)
            while payloads[i] != 0 { i = (i + 1) & ((1 << Self.slotBits) - 1) }
            payloads[i] = payload
            (keys[3 * i], keys[3 * i + 1], keys[3 * i + 2]) = key
            firstLetters[bytes.count] |= 1 << Self.letterBit(bytes[0])
        }
    }

    /// Lends the table as raw pointers, so a whole classification does its lookups without reference counting.
    func withView<R>(_ body: (View) -> R) -> R {
        payloads.withUnsafeBufferPointer { payloads in
            keys.withUnsafeBufferPointer { keys in
                firstLetters.withUnsafeBufferPointer { body(View(payloads: payloads, keys: keys, firstLetters: $0)) }
            }
        }
    }

    struct View {
        let payloads: UnsafeBufferPointer<UInt16>
        let keys: UnsafeBufferPointer<UInt64>
        let firstLetters: UnsafeBufferPointer<UInt32>

        /// The payload for `text[start..<end]` (any case), or nil if it isn't in the table.
        @inline(__always) func payload(_ text: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> UInt16? {
            guard end - start <= 24, firstLetters[end - start] & (1 << KeywordTable.letterBit(text[start])) != 0 else { return nil }
            let key = KeywordTable.pack(text, start, end)
            var i = KeywordTable.index(key)
            while true {
                let payload = payloads[i]
                if payload == 0 { return nil }
                if keys[3 * i] == key.0 && keys[3 * i + 1] == key.1 && keys[3 * i + 2] == key.2 { return payload }
                i = (i + 1) & ((1 << KeywordTable.slotBits) - 1)
            }
        }
    }

    @inline(__always) static func letterBit(_ b: UInt8) -> UInt32 {
        let letter = (b | 0x20) &- 97
        return letter < 26 ? UInt32(letter) : 26
    }

    @inline(__always) static func index(_ key: (UInt64, UInt64, UInt64)) -> Int {
        let h = (key.0 &* 0x9E37_79B9_7F4A_7C15) ^ (key.1 &* 0xC2B2_AE3D_27D4_EB4F) ^ (key.2 &* 0x1656_67B1_9E37_79F9)
        return Int(truncatingIfNeeded: h >> UInt64(64 - slotBits))
    }

    /// `text[start..<end]` (at most 24 bytes), zero-padded into three words, ASCII letters lowercased.
    @inline(__always) static func pack(_ text: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> (UInt64, UInt64, UInt64) {
        let length = end - start
        var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
        if start + 24 <= text.count {
            let bits = UInt64(length) * 8
            words.0 = UInt64(littleEndian: text.loadUnaligned(fromByteOffset: start, as: UInt64.self))
            if length < 8 {
                words.0 &= (1 << bits) - 1
            } else if length > 8 {
                words.1 = UInt64(littleEndian: text.loadUnaligned(fromByteOffset: start + 8, as: UInt64.self))
                if length < 16 {
                    words.1 &= (1 << (bits - 64)) - 1
                } else if length > 16 {
                    words.2 = UInt64(littleEndian: text.loadUnaligned(fromByteOffset: start + 16, as: UInt64.self))
                    if length < 24 { words.2 &= (1 << (bits - 128)) - 1 }
                }
            }
        } else {
            for k in 0..<length {
                let byte = UInt64(text[start + k]) << UInt64(8 * (k & 7))
                switch k >> 3 {
                case 0: words.0 |= byte
                case 1: words.1 |= byte
                default: words.2 |= byte
                }
            }
        }
        return (lowercased(words.0), lowercased(words.1), lowercased(words.2))
    }

    /// Sets 0x20 in every byte that is 'A'...'Z'; other bytes, including non-ASCII ones, are unchanged.
    @inline(__always) static func lowercased(_ w: UInt64) -> UInt64 {
        let low7 = w & 0x7F7F_7F7F_7F7F_7F7F
        let atLeastA = low7 &+ 0x3F3F_3F3F_3F3F_3F3F    // high bit set where byte >= 'A'
        let pastZ = low7 &+ 0x2525_2525_2525_2525       // high bit set where byte > 'Z'
        let upper = atLeastA & ~pastZ & ~w & 0x8080_8080_8080_8080
        return w | (upper >> 2)
    }
}

/// PostgreSQL 17's keyword categories (src/include/parser/kwlist.h) plus the unreserved words with a rule.
let sqlKeywordTable: KeywordTable = {
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
        "set": .set, "reset": .reset, "show": .show,
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
    return KeywordTable(all.map { word in
        let info = SQLKeywordInfo(keyword: specific[word] ?? .other, reserved: reservedWords.contains(word),
                                  neverFunction: reservedWords.contains(word) || columnNameWords.contains(word))
        return (word, info.payload)
    })
}()
