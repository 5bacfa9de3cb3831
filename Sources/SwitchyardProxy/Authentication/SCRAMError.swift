/// Why a SCRAM exchange or verifier was rejected.
///
/// Descriptions end up in logs and ErrorResponses, so they carry only fixed reasons written here,
/// never passwords, keys, proofs or the client's raw message.
public enum SCRAMError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The peer sent something that isn't a valid SCRAM message; the reason is ours, not its text.
    case malformedMessage(String)
    /// The client asked for channel binding (`p=`), but we only offer plain SCRAM-SHA-256.
    case channelBindingNotSupported
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
        case .channelBindingNotSupported: "SCRAM channel binding is not supported"
        case .nonceMismatch: "SCRAM nonce does not match the exchange"
        case .authenticationFailed: "SCRAM authentication failed"
        case .serverSignatureMismatch: "SCRAM server signature is invalid"
        case .outOfOrder: "SCRAM message received out of order"
        case .serverError(let value): "SCRAM server error: \(value)"
        case .invalidVerifier(let reason): "invalid SCRAM verifier: \(reason)"
        }
    }
}
