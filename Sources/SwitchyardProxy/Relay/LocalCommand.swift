import PostgresWire

/// Statements Switchyard answers itself; no server sees them.
enum LocalCommand: LocalStatement {
    /// SET / SHOW switchyard.route.
    case route(RouteCommand)
    /// DEALLOCATE of the client's protocol-level statements (nil: ALL). In transaction mode only
    /// Switchyard knows them by the client's names; the servers hold shared `sy_...` statements
    /// that other clients may be using, so they must not be dropped there.
    case deallocate(name: String?)

    /// The setting a SHOW answers with a row; the other commands answer with NoData.
    var shownSetting: String? {
        switch self {
        case .route(.show): return "switchyard.route"
        case .route(.showProxySetting(let name)): return "switchyard." + name
        default: return nil
        }
    }

    var returnsRow: Bool { shownSetting != nil }

    var resultColumns: [(name: String, type: ColumnType)]? { shownSetting.map { [($0, .text)] } }

    var commandTag: String {
        switch self {
        case .route(.show), .route(.showProxySetting): return "SHOW"
        case .route: return "SET"
        case .deallocate(nil): return "DEALLOCATE ALL"
        case .deallocate: return "DEALLOCATE"
        }
    }
}
