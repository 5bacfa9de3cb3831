import PostgresWire

/// Statements Switchyard answers itself; no server sees them.
enum LocalCommand: Equatable {
    /// SET / SHOW switchyard.route.
    case route(RouteCommand)
    /// DEALLOCATE of the client's protocol-level statements (nil: ALL). In transaction mode only
    /// Switchyard knows them by the client's names; the servers hold shared `sy_...` statements
    /// that other clients may be using, so they must not be dropped there.
    case deallocate(name: String?)

    /// The answer has a row (SHOW); the others answer with NoData.
    var returnsRow: Bool { self == .route(.show) }

    var commandTag: String {
        switch self {
        case .route(.set): return "SET"
        case .route(.show): return "SHOW"
        case .deallocate(nil): return "DEALLOCATE ALL"
        case .deallocate: return "DEALLOCATE"
        }
    }
}
