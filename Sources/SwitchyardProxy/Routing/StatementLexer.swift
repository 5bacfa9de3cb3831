// Byte-level SQL lexer for the statement classifier. It follows PostgreSQL's scan.l just closely enough that
// every string, comment and identifier ends where the server's ends, so text inside literals and comments can
// never be mistaken for SQL. It works on UTF-8 bytes and allocates nothing.

/// One token: a kind and a byte range into the statement text.
struct SQLToken: Equatable {
    enum Kind: UInt8 {
        case word              // unquoted identifier or keyword: compared ASCII-lowercased
        case quotedIdentifier  // "..." or U&"...": compared exactly as written
        case string            // '..', E'..', B'..', X'..', N'..', U&'..', $tag$..$tag$
        case number
        case parameter         // $1
        case leftParen, rightParen, comma, semicolon, dot
        case typecast          // ::
        case op                // anything else: operator characters, brackets, a lone ':' or '$'
        case end               // end of the input (or of the statement, when read through StatementCursor)
        case invalid           // unterminated literal, quoted identifier or comment
    }

    var kind: Kind
    var start: Int
    var end: Int
    /// A quoted identifier whose bytes are not its name ("" or U& escapes), so it can't be looked up as written.
    var escaped = false
}

@inline(__always) func sqlLowercased(_ b: UInt8) -> UInt8 { b &- 65 < 26 ? b | 0x20 : b }
@inline(__always) func isSQLSpace(_ b: UInt8) -> Bool { b == 32 || (b >= 9 && b <= 13) }
@inline(__always) func isSQLDigit(_ b: UInt8) -> Bool { b &- 48 < 10 }
/// PostgreSQL's ident_start: ASCII letters, '_' and every non-ASCII byte.
@inline(__always) func isSQLIdentifierStart(_ b: UInt8) -> Bool { (b | 0x20) &- 97 < 26 || b == 95 || b >= 0x80 }
/// ident_cont also allows digits and '$' (so `a$$b$$` is one identifier, not a dollar quote).
@inline(__always) func isSQLIdentifierByte(_ b: UInt8) -> Bool { isSQLIdentifierStart(b) || isSQLDigit(b) || b == 36 }

/// The ASCII-lowercased view of `base[startIndex..<endIndex]`: keyword and function lookups without a copy.
struct ASCIILowercasedBytes: RandomAccessCollection {
    let base: UnsafeRawBufferPointer
    let startIndex: Int
    let endIndex: Int
    @inline(__always) subscript(i: Int) -> UInt8 { sqlLowercased(base[i]) }
}

struct StatementLexer {
    let text: UnsafeRawBufferPointer
    private(set) var position = 0
    /// Lex plain '...' as with standard_conforming_strings = off, where a backslash escapes the next byte.
    let backslashEscapesInPlainStrings: Bool
    /// A plain '...' literal held a backslash: the text lexes differently when standard_conforming_strings is off.
    private(set) var sawBackslashInPlainString = false

    init(_ text: UnsafeRawBufferPointer, backslashEscapesInPlainStrings: Bool = false) {
        self.text = text
        self.backslashEscapesInPlainStrings = backslashEscapesInPlainStrings
    }

    /// The byte at `i`, or 0 past the end (0 is never meaningful to the lexer).
    @inline(__always) func byte(_ i: Int) -> UInt8 { i < text.count ? text[i] : 0 }

    @inline(__always) mutating func next() -> SQLToken {
        // Fast path: at most one plain space, then something that can't start a comment.
        var start = position
        if start < text.count && text[start] == 32 { start += 1 }
        if start >= text.count || text[start] <= 32 || text[start] == UInt8(ascii: "-") || text[start] == UInt8(ascii: "/") {
            position = start
            guard skipTrivia() else { return SQLToken(kind: .invalid, start: position, end: position) }
            start = position
            guard start < text.count else { return SQLToken(kind: .end, start: start, end: start) }
        }
        position = start
        let c = text[start]
        switch c {
        case UInt8(ascii: "'"):
            return quoted(start, quoteAt: start, kind: .string, backslashes: backslashEscapesInPlainStrings, plain: true)
        case UInt8(ascii: "\""):
            return quoted(start, quoteAt: start, kind: .quotedIdentifier, backslashes: false, plain: false)
        case UInt8(ascii: "("): return single(.leftParen)
        case UInt8(ascii: ")"): return single(.rightParen)
        case UInt8(ascii: ","): return single(.comma)
        case UInt8(ascii: ";"): return single(.semicolon)
        case UInt8(ascii: ":"):
            if byte(start + 1) == UInt8(ascii: ":") { position += 2; return SQLToken(kind: .typecast, start: start, end: start + 2) }
            return single(.op)
        case UInt8(ascii: "$"): return dollar(start)
        case UInt8(ascii: "."): return isSQLDigit(byte(start + 1)) ? number(start) : single(.dot)
        default:
            if isSQLDigit(c) { return number(start) }
            if isSQLIdentifierStart(c) { return wordOrPrefixedLiteral(start) }
            return single(.op)
        }
    }

    @inline(__always) private mutating func single(_ kind: SQLToken.Kind) -> SQLToken {
        position += 1
        return SQLToken(kind: kind, start: position - 1, end: position)
    }

    /// Skips whitespace, `--` line comments and nested `/* */` comments; false on an unterminated comment.
    private mutating func skipTrivia() -> Bool {
        let text = self.text
        var i = position
        defer { position = i }
        while i < text.count {
            let b = text[i]
            if isSQLSpace(b) {
                i &+= 1
            } else if b == UInt8(ascii: "-") && byte(i + 1) == UInt8(ascii: "-") {
                i = Self.lineCommentEnd(text, from: i)
            } else if b == UInt8(ascii: "/") && byte(i + 1) == UInt8(ascii: "*") {
                guard let end = Self.blockCommentEnd(text, from: i) else { i = text.count; return false }
                i = end
            } else {
                return true
            }
        }
        return true
    }

    /// Index of the newline ending the `--` comment at `start` (or the end of the text).
    static func lineCommentEnd(_ text: UnsafeRawBufferPointer, from start: Int) -> Int {
        var i = start + 2
        while i < text.count && text[i] != 10 && text[i] != 13 { i += 1 }
        return i
    }

    /// Index just past the `*/` closing the (nestable) block comment at `start`, or nil if it never closes.
    static func blockCommentEnd(_ text: UnsafeRawBufferPointer, from start: Int) -> Int? {
        var depth = 1
        var i = start + 2
        while i + 1 < text.count {
            if text[i] == UInt8(ascii: "/") && text[i + 1] == UInt8(ascii: "*") {
                depth += 1; i += 2
            } else if text[i] == UInt8(ascii: "*") && text[i + 1] == UInt8(ascii: "/") {
                depth -= 1; i += 2
                if depth == 0 { return i }
            } else {
                i += 1
            }
        }
        return nil
    }

    /// An identifier, or a literal with a one-letter prefix: E'..' (backslash escapes), B'..', X'..', N'..',
    /// U&'..' and U&"..". A prefix only counts when the quote follows immediately, exactly as in scan.l.
    private mutating func wordOrPrefixedLiteral(_ start: Int) -> SQLToken {
        let prefix = text[start] | 0x20
        let next = byte(start + 1)
        if next == UInt8(ascii: "'") {
            switch prefix {
            case UInt8(ascii: "e"): return quoted(start, quoteAt: start + 1, kind: .string, backslashes: true, plain: false)
            case UInt8(ascii: "b"), UInt8(ascii: "x"): return quoted(start, quoteAt: start + 1, kind: .string, backslashes: false, plain: false)
            // N'..' is the NCHAR keyword followed by an ordinary literal, so standard_conforming_strings applies.
            case UInt8(ascii: "n"): return quoted(start, quoteAt: start + 1, kind: .string, backslashes: backslashEscapesInPlainStrings, plain: true)
            default: break
            }
        } else if prefix == UInt8(ascii: "u") && next == UInt8(ascii: "&") {
            let quote = byte(start + 2)
            if quote == UInt8(ascii: "'") {
                return quoted(start, quoteAt: start + 2, kind: .string, backslashes: false, plain: false)
            }
            if quote == UInt8(ascii: "\"") {
                var token = quoted(start, quoteAt: start + 2, kind: .quotedIdentifier, backslashes: false, plain: false)
                token.escaped = true
                return token
            }
        }
        let text = self.text
        var i = start + 1
        while i < text.count && isSQLIdentifierByte(text[i]) { i &+= 1 }
        position = i
        return SQLToken(kind: .word, start: start, end: i)
    }

    /// A literal or quoted identifier whose opening quote is at `quoteAt`; a doubled quote is an escaped quote.
    private mutating func quoted(_ start: Int, quoteAt: Int, kind: SQLToken.Kind, backslashes: Bool, plain: Bool) -> SQLToken {
        let quote = text[quoteAt]
        var i = quoteAt + 1
        var escaped = false
        while i < text.count {
            let b = text[i]
            if b == quote {
                if byte(i + 1) == quote { i += 2; escaped = true; continue }
                position = i + 1
                return SQLToken(kind: kind, start: start, end: position, escaped: escaped)
            }
            if b == UInt8(ascii: "\\") {
                if backslashes { i += 2; continue }
                if plain { sawBackslashInPlainString = true }
            }
            i += 1
        }
        position = text.count
        return SQLToken(kind: .invalid, start: start, end: position)
    }

    /// `$1` parameter, `$tag$...$tag$` dollar quote (tag: identifier bytes without '$', not starting with a
    /// digit; may be empty), or a lone '$'.
    private mutating func dollar(_ start: Int) -> SQLToken {
        var i = start + 1
        if isSQLDigit(byte(i)) {
            while isSQLDigit(byte(i)) { i += 1 }
            position = i
            return SQLToken(kind: .parameter, start: start, end: i)
        }
        if isSQLIdentifierStart(byte(i)) {
            i += 1
            while isSQLIdentifierStart(byte(i)) || isSQLDigit(byte(i)) { i += 1 }
        }
        guard byte(i) == UInt8(ascii: "$") else { return single(.op) }
        let delimiterLength = i + 1 - start
        var j = i + 1
        while j + delimiterLength <= text.count {
            if text[j] == UInt8(ascii: "$") && matchesDelimiter(at: j, delimiterAt: start, length: delimiterLength) {
                position = j + delimiterLength
                return SQLToken(kind: .string, start: start, end: position)
            }
            j += 1
        }
        position = text.count
        return SQLToken(kind: .invalid, start: start, end: position)
    }

    private func matchesDelimiter(at j: Int, delimiterAt start: Int, length: Int) -> Bool {
        for k in 1..<length where text[j + k] != text[start + k] { return false }
        return true
    }

    /// Digits, '_' separators and a fraction. Letters start a new token, so `0x1F` and `1e5` lex as a number
    /// and a harmless word, and `1into` as `1 into`, which is how PostgreSQL before 15 reads it (15+ rejects
    /// it): the classifier must see that INTO.
    private mutating func number(_ start: Int) -> SQLToken {
        var i = start
        while isSQLDigit(byte(i)) || byte(i) == UInt8(ascii: "_") || (byte(i) == UInt8(ascii: ".") && byte(i + 1) != UInt8(ascii: ".")) {
            i += 1
        }
        position = i
        return SQLToken(kind: .number, start: start, end: i)
    }
}

/// Reads the tokens of one statement at a time: a `;` outside parentheses (or the end of the input) comes
/// back as `.end`, and keeps coming back until `beginStatement()`. Tracks parenthesis depth and malformation.
struct StatementCursor {
    var lexer: StatementLexer
    /// Parenthesis depth after the token last returned.
    private(set) var depth = 0
    /// Unterminated literal/comment or unbalanced parentheses: the server rejects the whole string.
    private(set) var malformed = false
    /// The input is used up.
    private(set) var atEnd = false
    private var statementEnded = false

    init(_ lexer: StatementLexer) { self.lexer = lexer }

    mutating func beginStatement() { statementEnded = false }

    @inline(__always) mutating func next() -> SQLToken {
        let position = lexer.position
        if statementEnded { return SQLToken(kind: .end, start: position, end: position) }
        let token = lexer.next()
        switch token.kind {
        case .leftParen:
            depth += 1
        case .rightParen:
            if depth == 0 { malformed = true } else { depth -= 1 }
        case .semicolon where depth == 0:
            statementEnded = true
            return SQLToken(kind: .end, start: token.start, end: token.end)
        case .end, .invalid:
            if depth != 0 || token.kind == .invalid { malformed = true }
            atEnd = true
            statementEnded = true
            return SQLToken(kind: .end, start: token.start, end: token.end)
        default:
            break
        }
        return token
    }

    mutating func skipToEnd() {
        while next().kind != .end {}
    }
}
