import PostgresWire

/// The errors a hot standby gives for statements that can only run on the primary. A replica read
/// that fails with one of them is re-run on the primary before the client sees anything.
enum ReplicaRefusal: Equatable {
    /// 25006: a write the classifier could not see (a volatile function behind a view, say).
    case readOnlyTransaction
    /// 0A000 "cannot access temporary or unlogged relations during recovery": the text does not say
    /// that a table is unlogged, and a standby has no contents for it.
    case temporaryOrUnloggedRelation

    init?(_ error: ErrorFields) {
        if error.code == SQLState.readOnlySQLTransaction {
            self = .readOnlyTransaction
        } else if error.code == SQLState.featureNotSupported,
                  error.message.hasPrefix("cannot access temporary or unlogged relations") {
            self = .temporaryOrUnloggedRelation
        } else {
            return nil
        }
    }
}
