/// A WAL position as Postgres prints it (`16/B374D848`): the proof of a switchover is a comparison
/// of two of these.
public struct LSN: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt64

    public init(_ value: UInt64) { self.value = value }

    /// Parses `X/Y` (hex halves); nil for anything else.
    public init?(_ text: String) {
        let halves = text.split(separator: "/", omittingEmptySubsequences: false)
        guard halves.count == 2, let high = UInt32(halves[0], radix: 16), let low = UInt32(halves[1], radix: 16) else { return nil }
        value = UInt64(high) << 32 | UInt64(low)
    }

    public var description: String {
        String(value >> 32, radix: 16, uppercase: true) + "/" + String(value & 0xFFFF_FFFF, radix: 16, uppercase: true)
    }

    public static func < (lhs: LSN, rhs: LSN) -> Bool { lhs.value < rhs.value }

    /// WAL pages are 8 kB (the Debian build's default); every page starts with a header, 40 bytes at
    /// the start of a segment and 24 elsewhere.
    static let pageSize: UInt64 = 8192
    static let pageHeaderSizes: Set<UInt64> = [24, 40]

    /// Whether a server that has replayed up to `self` holds everything before `insertPosition`, the
    /// old primary's `pg_current_wal_insert_lsn()`. Replay reports the end of the last record; the
    /// insert position skips the next page's header when the last record ended exactly at a page
    /// boundary, so a position exactly one header past a boundary is covered by replay up to it.
    /// (No record ends inside a page header, so nothing lies between the two.)
    public func covers(insertPosition: LSN) -> Bool {
        if self >= insertPosition { return true }
        let offset = insertPosition.value % Self.pageSize
        guard Self.pageHeaderSizes.contains(offset) else { return false }
        return self.value >= insertPosition.value - offset
    }
}
