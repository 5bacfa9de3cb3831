import Foundation
import NIOCore

/// What a statement does beyond its own transaction that a transaction-mode relay must act on:
/// state that lives on one server connection (notifications, temporary objects), statement names
/// the proxy maps to shared server-side ones, and database-level DDL that Switchyard's own idle
/// connections would block. Read from the text alone, like the route.
public enum SessionEffect: Sendable, Equatable {
    /// LISTEN channel: notifications arrive on this server connection only.
    case listen(channel: String)
    /// UNLISTEN channel, or UNLISTEN * (nil).
    case unlisten(channel: String?)
    /// CREATE [GLOBAL | LOCAL] TEMP[ORARY] ...: the object exists on this server connection only.
    case createTemporary
    /// DISCARD ALL (everything session-local goes) or DISCARD TEMP[ORARY].
    case discard(all: Bool)
    /// DEALLOCATE [PREPARE] name, or DEALLOCATE [PREPARE] ALL (nil).
    case deallocate(name: String?)
    /// DROP DATABASE x, ALTER DATABASE x RENAME ..., CREATE DATABASE y ... TEMPLATE x: Postgres refuses
    /// these while other sessions, pooled idle ones included, are connected to `database`.
    case databaseDDL(database: String)

    /// Whether the statement leaves state on its server connection that later statements need.
    public var pinsServerConnection: Bool {
        switch self {
        case .listen, .createTemporary: return true
        case .unlisten, .discard, .deallocate, .databaseDDL: return false
        }
    }
}

extension ClassifierPass {
    /// The session effect of a statement that starts with `first`, for the statements the main
    /// classifier treats as ordinary primary statements. Cold: reached only for the first words below.
    func sessionEffect(startingWith first: SQLToken, _ cursor: inout StatementCursor) -> SessionEffect? {
        if isWord(first, "listen") {
            return identifier(cursor.next()).map { .listen(channel: $0) }
        }
        if isWord(first, "unlisten") {
            let token = cursor.next()
            if token.kind == .op, text[token.start] == UInt8(ascii: "*") { return .unlisten(channel: nil) }
            return identifier(token).map { .unlisten(channel: $0) }
        }
        if isWord(first, "discard") {
            let token = cursor.next()
            if isWord(token, "all") { return .discard(all: true) }
            if isWord(token, "temp") || isWord(token, "temporary") { return .discard(all: false) }
            return nil
        }
        if isWord(first, "deallocate") {
            var token = cursor.next()
            if isWord(token, "prepare") { token = cursor.next() }
            if isWord(token, "all") { return .deallocate(name: nil) }
            return identifier(token).map { .deallocate(name: $0) }
        }
        if isWord(first, "create") {
            var token = cursor.next()
            if isWord(token, "or") { _ = cursor.next(); token = cursor.next() }   // OR REPLACE
            if isWord(token, "global") || isWord(token, "local") { token = cursor.next() }
            if isWord(token, "temp") || isWord(token, "temporary") { return .createTemporary }
            guard isWord(token, "database") else { return nil }
            // CREATE DATABASE name [WITH] ... TEMPLATE [=] template ...
            while true {
                token = cursor.next()
                if token.kind == .end { return nil }
                if isWord(token, "template") {
                    var name = cursor.next()
                    if name.kind == .op, text[name.start] == UInt8(ascii: "=") { name = cursor.next() }
                    return identifier(name).map { .databaseDDL(database: $0) }
                }
            }
        }
        if isWord(first, "drop") {
            guard isWord(cursor.next(), "database") else { return nil }
            var token = cursor.next()
            if isWord(token, "if") { _ = cursor.next(); token = cursor.next() }   // IF EXISTS
            return identifier(token).map { .databaseDDL(database: $0) }
        }
        if isWord(first, "alter") {
            guard isWord(cursor.next(), "database"), let name = identifier(cursor.next()), isWord(cursor.next(), "rename") else { return nil }
            return .databaseDDL(database: name)
        }
        return nil
    }

    /// An identifier's name as Postgres folds it: unquoted words lower-cased, quoted ones as written.
    func identifier(_ token: SQLToken) -> String? {
        switch token.kind {
        case .word:
            return String(decoding: ASCIILowercasedBytes(base: text, startIndex: token.start, endIndex: token.end), as: UTF8.self)
        case .quotedIdentifier where !token.escaped && token.end - token.start >= 2:
            return String(decoding: UnsafeRawBufferPointer(rebasing: text[(token.start + 1)..<(token.end - 1)]), as: UTF8.self)
        case .quotedIdentifier:
            // "" inside the name: undo the doubling (U& escapes are rare enough to treat as unknown).
            guard text[token.start] == UInt8(ascii: "\"") else { return nil }
            let raw = String(decoding: UnsafeRawBufferPointer(rebasing: text[(token.start + 1)..<(token.end - 1)]), as: UTF8.self)
            return raw.replacingOccurrences(of: "\"\"", with: "\"")
        default:
            return nil
        }
    }
}

extension SessionEffect {
    /// Whether SQL `text` may start with a statement that has a session effect: LISTEN, UNLISTEN,
    /// DISCARD, DEALLOCATE, CREATE, DROP, ALTER, a comment or parenthesis before the first word, or a
    /// second statement after a semicolon.
    /// A few byte compares, so the relay can skip classifying everything else.
    public static func mayBeginStatement(_ text: ByteBuffer) -> Bool {
        mayBegin(text, with: leadingTrigrams, orLaterStatement: true)
    }

    /// The same check for database DDL alone (DROP, ALTER, CREATE). No later statement is looked at:
    /// Postgres refuses DROP/CREATE/ALTER DATABASE inside a multi-statement string (an implicit transaction).
    public static func mayBeginDatabaseDDL(_ text: ByteBuffer) -> Bool {
        mayBegin(text, with: databaseDDLTrigrams, orLaterStatement: false)
    }

    private static func mayBegin(_ text: ByteBuffer, with trigrams: [UInt32], orLaterStatement: Bool) -> Bool {
        let view = text.readableBytesView
        guard let start = view.firstIndex(where: { !isSQLSpace($0) }) else { return false }
        let first = view[start]
        if first == UInt8(ascii: "/") || first == UInt8(ascii: "-") || first == UInt8(ascii: "(") { return true }
        // A later statement of a multi-statement string may have the effect ("SELECT 1; LISTEN a").
        if orLaterStatement, let semicolon = text.readableOffset(of: UInt8(ascii: ";"), from: start - view.startIndex),
           view[(view.startIndex + semicolon + 1)...].contains(where: { !isSQLSpace($0) }) { return true }
        guard view.endIndex - start >= 4 else { return false }
        let word = (UInt32(sqlLowercased(view[start])) << 16) | (UInt32(sqlLowercased(view[start + 1])) << 8)
            | UInt32(sqlLowercased(view[start + 2]))
        return trigrams.contains(word)
    }

    private static func trigrams(_ words: [String]) -> [UInt32] {
        words.map { $0.utf8.reduce(UInt32(0)) { ($0 << 8) | UInt32($1) } }
    }

    private static let leadingTrigrams = trigrams(["lis", "unl", "dis", "dea", "cre", "dro", "alt"])
    private static let databaseDDLTrigrams = trigrams(["cre", "dro", "alt"])
}
