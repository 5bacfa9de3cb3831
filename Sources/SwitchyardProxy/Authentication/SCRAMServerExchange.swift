/// The server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS, used to authenticate clients of the proxy.
///
/// A value-type state machine with no I/O: the caller moves bytes between it and the wire
/// (SASLInitialResponse → server-first, SASLResponse → server-final). Any failure ends the exchange;
/// later calls return `.outOfOrder` instead of trapping.
public struct SCRAMServerExchange: Sendable {
    public static let mechanism = "SCRAM-SHA-256"
    /// Offered only over TLS, with `tls-server-end-point` binding to the certificate we present.
    public static let plusMechanism = "SCRAM-SHA-256-PLUS"
    public static let channelBindingType = "tls-server-end-point"

    /// What channel binding means for this exchange; it decides how the GS2 flags are judged.
    public enum ChannelBinding: Sendable, Equatable {
        /// SCRAM-SHA-256-PLUS was not offered (no TLS, or a certificate we cannot hash): `n` and `y` are fine.
        case notOffered
        /// -PLUS was offered but the client chose plain SCRAM-SHA-256: `n` is fine, `y` is a downgrade.
        case offered
        /// The client chose -PLUS: it must send `p=tls-server-end-point` and this data in `c=`.
        case selected(tlsServerEndPoint: [UInt8])
    }

    private enum State: Sendable {
        case awaitingClientFirst
        /// `authPrefix` is client-first-bare "," server-first: the first two thirds of the AuthMessage.
        /// `bindingInput` is what `c=` must carry: the GS2 header, plus the binding data for -PLUS.
        case awaitingClientFinal(bindingInput: [UInt8], authPrefix: [UInt8], nonce: String)
        case finished
    }

    private let secret: SCRAMSecret
    /// True when the user doesn't exist: we still run the whole exchange, then fail at the proof,
    /// so a client can't tell "no such user" from "wrong password".
    private let isMock: Bool
    private let serverNonce: String
    private let channelBinding: ChannelBinding
    private var state = State.awaitingClientFirst
    /// The client's ClientKey, recovered from its proof once the proof checked out. It logs Switchyard
    /// in to the server as the same role (SCRAM pass-through) without anyone knowing the password.
    public private(set) var clientKey: [UInt8]?

    /// `secret == nil` means the user is unknown. Its stand-in salt is random per exchange, so a client
    /// probing twice sees different salts; callers that care can instead pass a secret with random keys
    /// and a salt derived from the user name and a server key. The nonce is injected for testability.
    public init(secret: SCRAMSecret?, serverNonce: String, channelBinding: ChannelBinding = .notOffered) {
        guard let secret else {
            let mock = SCRAMSecret(
                iterations: 4096, salt: SCRAMPrimitives.randomBytes(16),
                storedKey: SCRAMPrimitives.randomBytes(32), serverKey: SCRAMPrimitives.randomBytes(32))
            self.init(secret: mock, isMock: true, serverNonce: serverNonce, channelBinding: channelBinding)
            return
        }
        self.init(secret: secret, isMock: false, serverNonce: serverNonce, channelBinding: channelBinding)
    }

    /// Internal so tests can show that even a correct proof fails for a mock (unknown) user.
    init(secret: SCRAMSecret, isMock: Bool, serverNonce: String, channelBinding: ChannelBinding = .notOffered) {
        self.secret = secret
        self.channelBinding = channelBinding
        self.isMock = isMock
        precondition(SCRAMPrimitives.isValidNonce(serverNonce.utf8), "server nonce must be printable ASCII without ','")
        self.serverNonce = serverNonce
    }

    /// 18 random bytes as base64: 144 bits, and never contains ',' so it is a valid SCRAM nonce.
    public static func randomNonce() -> String {
        SCRAMPrimitives.base64(SCRAMPrimitives.randomBytes(18))
    }

    /// Takes `<gs2 header>n=<user>,r=<client nonce>` and returns the server-first message.
    /// The user name inside SCRAM is ignored, as Postgres does: the startup packet already named the user.
    public mutating func receiveClientFirst(_ message: [UInt8]) -> Result<[UInt8], SCRAMError> {
        guard case .awaitingClientFirst = state else { return .failure(.outOfOrder) }
        state = .finished
        let fields = message.split(separator: comma, maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3 else { return .failure(.malformedMessage("missing GS2 header")) }
        let flag = fields[0]
        // The GS2 flags as Postgres judges them (auth-scram.c, read_client_first_message).
        var bindingData: [UInt8] = []
        if flag.starts(with: "p=".utf8) {
            guard case .selected(let endPoint) = channelBinding else { return .failure(.channelBindingNotSupported) }
            guard flag.dropFirst(2).elementsEqual(Self.channelBindingType.utf8) else {
                let shown = flag.dropFirst(2).prefix(30).map { (0x21...0x7E).contains($0) ? $0 : UInt8(ascii: "?") }
                return .failure(.unsupportedChannelBindingType(String(decoding: shown, as: UTF8.self)))
            }
            bindingData = endPoint
        } else if flag.elementsEqual("n".utf8) || flag.elementsEqual("y".utf8) {
            switch channelBinding {
            case .selected: return .failure(.channelBindingRequired)
            case .offered where flag.first == UInt8(ascii: "y"): return .failure(.channelBindingDowngrade)
            case .offered, .notOffered: break
            }
        } else {
            return .failure(.malformedMessage("invalid channel binding flag"))
        }
        guard fields[1].isEmpty else { return .failure(.malformedMessage("authorization identity is not supported")) }
        let bare = fields[2]
        guard let attributes = SCRAMPrimitives.attributes(bare), attributes.count >= 2 else {
            return .failure(.malformedMessage("invalid client-first message"))
        }
        guard attributes[0].name != UInt8(ascii: "m") else {
            return .failure(.malformedMessage("mandatory extensions are not supported"))
        }
        guard attributes[0].name == UInt8(ascii: "n"), attributes[1].name == UInt8(ascii: "r"),
              SCRAMPrimitives.isValidNonce(attributes[1].value) else {
            return .failure(.malformedMessage("expected n= and a valid r= nonce"))
        }

        let nonce = String(decoding: attributes[1].value, as: UTF8.self) + serverNonce
        let serverFirst = Array("r=\(nonce),s=\(SCRAMPrimitives.base64(secret.salt)),i=\(secret.iterations)".utf8)
        state = .awaitingClientFinal(
            bindingInput: Array(flag) + [comma, comma] + bindingData, authPrefix: Array(bare) + [comma] + serverFirst, nonce: nonce)
        return .success(serverFirst)
    }

    /// Takes `c=<base64 GS2 header>,r=<nonce>,p=<proof>` and, if the proof is right, returns
    /// `v=<server signature>`. The caller must treat only `.success` as authenticated.
    public mutating func receiveClientFinal(_ message: [UInt8]) -> Result<[UInt8], SCRAMError> {
        guard case let .awaitingClientFinal(bindingInput, authPrefix, expectedNonce) = state else {
            return .failure(.outOfOrder)
        }
        state = .finished
        guard let attributes = SCRAMPrimitives.attributes(message[...]), attributes.count >= 3,
              attributes[0].name == UInt8(ascii: "c"), attributes[1].name == UInt8(ascii: "r"),
              let last = attributes.last, last.name == UInt8(ascii: "p") else {
            return .failure(.malformedMessage("expected c=, r= and p= attributes"))
        }
        // c= repeats the GS2 header, so a rewritten flag can't go unnoticed; with -PLUS it also
        // carries the hash of the certificate the client saw, which must be ours.
        guard SCRAMPrimitives.decodeBase64(attributes[0].value) == bindingInput else {
            if case .selected = channelBinding { return .failure(.channelBindingMismatch) }
            return .failure(.unexpectedChannelBindingAttribute)
        }
        guard attributes[1].value.elementsEqual(expectedNonce.utf8) else { return .failure(.nonceMismatch) }
        guard let proof = SCRAMPrimitives.decodeBase64(last.value), proof.count == 32 else {
            return .failure(.malformedMessage("client proof must be 32 bytes of base64"))
        }

        // AuthMessage = client-first-bare "," server-first "," client-final-without-proof.
        let authMessage = authPrefix + [comma] + message[..<(last.value.startIndex - 3)]  // drop ",p=<proof>"
        let clientKey = SCRAMPrimitives.xor(proof, SCRAMPrimitives.hmac(secret.storedKey, authMessage))
        let proofMatches = SCRAMPrimitives.constantTimeEquals(SCRAMPrimitives.sha256(clientKey), secret.storedKey)
        guard proofMatches, !isMock else { return .failure(.authenticationFailed) }
        self.clientKey = clientKey
        let serverSignature = SCRAMPrimitives.hmac(secret.serverKey, authMessage)
        return .success(Array("v=\(SCRAMPrimitives.base64(serverSignature))".utf8))
    }
}

private let comma = UInt8(ascii: ",")
