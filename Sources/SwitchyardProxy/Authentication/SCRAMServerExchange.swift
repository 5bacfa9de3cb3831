/// The server side of SCRAM-SHA-256 without channel binding, used to authenticate clients of the proxy.
///
/// A value-type state machine with no I/O: the caller moves bytes between it and the wire
/// (SASLInitialResponse → server-first, SASLResponse → server-final). Any failure ends the exchange;
/// later calls return `.outOfOrder` instead of trapping.
public struct SCRAMServerExchange: Sendable {
    /// The only mechanism we advertise: no `-PLUS`, so a client sending `y,,` is not being downgraded.
    public static let mechanism = "SCRAM-SHA-256"

    private enum State: Sendable {
        case awaitingClientFirst
        /// `authPrefix` is client-first-bare "," server-first: the first two thirds of the AuthMessage.
        case awaitingClientFinal(gs2Header: [UInt8], authPrefix: [UInt8], nonce: String)
        case finished
    }

    private let secret: SCRAMSecret
    /// True when the user doesn't exist: we still run the whole exchange, then fail at the proof,
    /// so a client can't tell "no such user" from "wrong password".
    private let isMock: Bool
    private let serverNonce: String
    private var state = State.awaitingClientFirst

    /// `secret == nil` means the user is unknown. Its stand-in salt is random per exchange, so a client
    /// probing twice sees different salts; callers that care can instead pass a secret with random keys
    /// and a salt derived from the user name and a server key. The nonce is injected for testability.
    public init(secret: SCRAMSecret?, serverNonce: String) {
        guard let secret else {
            let mock = SCRAMSecret(
                iterations: 4096, salt: SCRAMPrimitives.randomBytes(16),
                storedKey: SCRAMPrimitives.randomBytes(32), serverKey: SCRAMPrimitives.randomBytes(32))
            self.init(secret: mock, isMock: true, serverNonce: serverNonce)
            return
        }
        self.init(secret: secret, isMock: false, serverNonce: serverNonce)
    }

    /// Internal so tests can show that even a correct proof fails for a mock (unknown) user.
    init(secret: SCRAMSecret, isMock: Bool, serverNonce: String) {
        self.secret = secret
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
        if flag.starts(with: "p=".utf8) { return .failure(.channelBindingNotSupported) }
        guard flag.elementsEqual("n".utf8) || flag.elementsEqual("y".utf8) else {
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
            gs2Header: Array(flag) + [comma, comma], authPrefix: Array(bare) + [comma] + serverFirst, nonce: nonce)
        return .success(serverFirst)
    }

    /// Takes `c=<base64 GS2 header>,r=<nonce>,p=<proof>` and, if the proof is right, returns
    /// `v=<server signature>`. The caller must treat only `.success` as authenticated.
    public mutating func receiveClientFinal(_ message: [UInt8]) -> Result<[UInt8], SCRAMError> {
        guard case let .awaitingClientFinal(gs2Header, authPrefix, expectedNonce) = state else {
            return .failure(.outOfOrder)
        }
        state = .finished
        guard let attributes = SCRAMPrimitives.attributes(message[...]), attributes.count >= 3,
              attributes[0].name == UInt8(ascii: "c"), attributes[1].name == UInt8(ascii: "r"),
              let last = attributes.last, last.name == UInt8(ascii: "p") else {
            return .failure(.malformedMessage("expected c=, r= and p= attributes"))
        }
        // Without channel binding, c= must echo the GS2 header, so a stripped "p=" can't go unnoticed.
        guard SCRAMPrimitives.decodeBase64(attributes[0].value) == gs2Header else {
            return .failure(.malformedMessage("channel binding data does not match the GS2 header"))
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
        let serverSignature = SCRAMPrimitives.hmac(secret.serverKey, authMessage)
        return .success(Array("v=\(SCRAMPrimitives.base64(serverSignature))".utf8))
    }
}

private let comma = UInt8(ascii: ",")
