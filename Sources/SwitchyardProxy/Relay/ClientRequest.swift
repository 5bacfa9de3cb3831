import PostgresWire

/// A client message on its way to a server, with its statement's classification once known. Local
/// commands, routing and forwarding all ask for it; the statement is lexed at most once.
struct ClientRequest {
    enum Classification {
        case notYet
        /// Nil for messages that carry no SQL text (Bind, Sync, ...).
        case known(StatementClassification?)
    }

    let message: WireMessage
    private var classification: Classification
    /// What a large message costs the memory budget, given back when the last copy of the request goes.
    let claim: BudgetClaim?

    init(_ message: WireMessage, claim: BudgetClaim? = nil) {
        self.message = message
        self.classification = .notYet
        self.claim = claim
    }

    var id: UInt8 { message.id }

    /// The classification of a Query's or Parse's SQL text, computed on first use.
    mutating func classification(by shard: PoolShard) -> StatementClassification? {
        if case .known(let known) = classification { return known }
        let computed = message.statementText.map { shard.classify($0) }
        classification = .known(computed)
        return computed
    }
}
