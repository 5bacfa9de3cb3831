import PostgresWire

/// Decides which side serves a unit of work: an autocommit statement or a whole transaction.
/// A pure value kept per client session; the session asks it only when no server is attached.
public struct RoutePlanner: Sendable, Equatable {
    public enum Target: Sendable, Equatable { case primary, replica }

    /// `SET switchyard.route`, initialised from the user's `route` or `default_route`.
    public var setting: RouteSetting
    /// The session ran `SET default_transaction_read_only = on` (or SESSION CHARACTERISTICS).
    public var sessionReadOnly = false

    public init(setting: RouteSetting) {
        self.setting = setting
    }

    /// Where a unit that begins with a statement classified as `classification` should run.
    public func target(for classification: StatementClassification) -> Target {
        if let hint = classification.hint { return hint == .primary ? .primary : .replica }
        switch setting {
        case .primary: return .primary
        case .replica: return .replica
        case .auto: break
        }
        switch classification.transactionControl {
        case .begin(let readOnly)?:
            // A transaction runs wholly on one server: a replica only when it promises not to write.
            return readOnly || sessionReadOnly ? .replica : .primary
        case .setTransaction?, .setSessionReadOnly?, .commit?, .rollback?:
            return .primary
        case nil:
            return classification.route == .replica ? .replica : .primary
        }
    }

    /// Remembers session-level facts a statement establishes once the server accepted it.
    public mutating func observe(_ classification: StatementClassification) {
        if case .setSessionReadOnly(let readOnly)? = classification.transactionControl {
            sessionReadOnly = readOnly
        }
    }
}
