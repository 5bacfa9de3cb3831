import PostgresWire

/// Why a SCRAM exchange or verifier was rejected.
///
/// Descriptions end up in logs and ErrorResponses, so they carry only fixed reasons written here,
/// never passwords, keys, proofs or the client's raw message.
public enum SCRAMError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The peer sent something that isn't a valid SCRAM message; the reason is ours, not its text.
    case malformedMessage(String)
    /// The client selected plain SCRAM-SHA-256 but asked for channel binding (`p=`) anyway.
    case channelBindingNotSupported
    /// The client selected SCRAM-SHA-256-PLUS but its GS2 header says `n` or `y`.
    case channelBindingRequired
    /// `y`: the client could bind but believes we can't, although we offered SCRAM-SHA-256-PLUS.
    /// Someone between us may have stripped -PLUS from the mechanism list: a downgrade.
    case channelBindingDowngrade
    /// `p=<type>` with a type other than `tls-server-end-point`; the value is sanitised.
    case unsupportedChannelBindingType(String)
    /// The `c=` binding data isn't our certificate's hash: the client's TLS session ends elsewhere.
    case channelBindingMismatch
    /// Without channel binding, `c=` must repeat the GS2 header (`biws` or `eSws`), and didn't.
    case unexpectedChannelBindingAttribute
    /// The nonce doesn't continue the one agreed earlier: a replayed or spliced exchange.
    case nonceMismatch
    /// Wrong password or unknown user; deliberately the same error for both.
    case authenticationFailed
    /// The server couldn't prove it knows our password: it may not be the server we think it is.
    case serverSignatureMismatch
    /// A step was called before the previous one succeeded, or after the exchange ended.
    case outOfOrder
    /// The server ended the exchange with `e=<value>`.
    case serverError(String)
    /// A stored `SCRAM-SHA-256$…` verifier couldn't be parsed; the reason names the bad field.
    case invalidVerifier(String)

    public var description: String {
        switch self {
        case .malformedMessage(let reason): "malformed SCRAM message: \(reason)"
        case .channelBindingNotSupported: "channel binding data sent with SCRAM-SHA-256"
        case .channelBindingRequired: "SCRAM-SHA-256-PLUS selected without channel binding data"
        case .channelBindingDowngrade: "SCRAM channel binding negotiation error"
        case .unsupportedChannelBindingType(let type): "unsupported SCRAM channel-binding type \"\(type)\""
        case .channelBindingMismatch: "SCRAM channel binding check failed"
        case .unexpectedChannelBindingAttribute: "unexpected SCRAM channel-binding attribute in client-final-message"
        case .nonceMismatch: "SCRAM nonce does not match the exchange"
        case .authenticationFailed: "SCRAM authentication failed"
        case .serverSignatureMismatch: "SCRAM server signature is invalid"
        case .outOfOrder: "SCRAM message received out of order"
        case .serverError(let value): "SCRAM server error: \(value)"
        case .invalidVerifier(let reason): "invalid SCRAM verifier: \(reason)"
        }
    }
}

extension SCRAMError {
    /// The FATAL Postgres sends a client for this failure (auth-scram.c), so drivers and operators
    /// see the server's own wording and SQLSTATE. `.authenticationFailed` is the caller's to word:
    /// it names the user.
    var clientError: ErrorFields {
        func fatal(_ code: String, _ message: String, detail: String? = nil) -> ErrorFields {
            ErrorFields(severity: .fatal, code: code, message: message, detail: detail)
        }
        switch self {
        case .malformedMessage(let reason):
            return fatal(SQLState.protocolViolation, "malformed SCRAM message", detail: reason)
        case .channelBindingNotSupported:
            return fatal(SQLState.protocolViolation, "malformed SCRAM message", detail:
                "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.")
        case .channelBindingRequired:
            return fatal(SQLState.protocolViolation, "malformed SCRAM message", detail:
                "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.")
        case .channelBindingDowngrade:
            return fatal(SQLState.invalidAuthorizationSpecification, "SCRAM channel binding negotiation error", detail:
                "The client supports SCRAM channel binding but thinks the server does not.  However, this server does support channel binding.")
        case .unsupportedChannelBindingType, .unexpectedChannelBindingAttribute:
            return fatal(SQLState.protocolViolation, description)
        case .channelBindingMismatch:
            return fatal(SQLState.invalidAuthorizationSpecification, description)
        case .nonceMismatch:
            return fatal(SQLState.protocolViolation, "invalid SCRAM response", detail: "Nonce does not match.")
        case .authenticationFailed, .serverSignatureMismatch, .outOfOrder, .serverError, .invalidVerifier:
            return fatal(SQLState.protocolViolation, "SCRAM exchange failed: \(description)")
        }
    }
}
