import PostgresWire
import Testing
@testable import SwitchyardProxy

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

private extension Result {
    var error: Failure? { if case .failure(let error) = self { error } else { nil } }
}

private let salt = Array(repeating: UInt8(3), count: 16)
private let secret = SCRAMSecret.derive(password: "pencil", salt: salt, iterations: 4096)
/// What a client computes from "pencil": ClientKey = HMAC(SaltedPassword, "Client Key").
private let clientKey = SCRAMPrimitives.hmac(
    SCRAMPrimitives.saltedPassword("pencil", salt: salt, iterations: 4096), Array("Client Key".utf8))
private let endPoint = Array(repeating: UInt8(0xAB), count: 32)

/// A SCRAM-SHA-256-PLUS client as libpq behaves: GS2 header `p=tls-server-end-point,,`, and c= the
/// base64 of that header followed by the hash of the certificate it saw.
private struct PlusClient {
    var header = "p=tls-server-end-point,,"
    var bindingData = endPoint
    let nonce = "clientnonce"

    var clientFirst: [UInt8] { bytes(header + "n=,r=\(nonce)") }

    /// The client-final message for `serverFirst`, with a proof made from ClientKey.
    func clientFinal(_ serverFirst: [UInt8]) -> [UInt8] {
        let text = String(decoding: serverFirst, as: UTF8.self)
        let combined = text.split(separator: ",")[0].dropFirst(2)
        let withoutProof = "c=\(SCRAMPrimitives.base64(bytes(header) + bindingData)),r=\(combined)"
        let authMessage = bytes("n=,r=\(nonce),") + serverFirst + bytes("," + withoutProof)
        let signature = SCRAMPrimitives.hmac(SCRAMPrimitives.sha256(clientKey), authMessage)
        return bytes(withoutProof + ",p=\(SCRAMPrimitives.base64(SCRAMPrimitives.xor(clientKey, signature)))")
    }

    func run(against binding: SCRAMServerExchange.ChannelBinding) -> (SCRAMServerExchange, Result<[UInt8], SCRAMError>) {
        var server = SCRAMServerExchange(secret: secret, serverNonce: "srv", channelBinding: binding)
        switch server.receiveClientFirst(clientFirst) {
        case .success(let serverFirst): return (server, server.receiveClientFinalReturningSelf(clientFinal(serverFirst)))
        case .failure(let error): return (server, .failure(error))
        }
    }
}

private extension SCRAMServerExchange {
    /// receiveClientFinal on a copy, for tests that only want the result.
    func receiveClientFinalReturningSelf(_ message: [UInt8]) -> Result<[UInt8], SCRAMError> {
        var copy = self
        return copy.receiveClientFinal(message)
    }
}

@Suite struct ChannelBindingTests {
    @Test func plusLoginWithTheRightBindingSucceedsAndRecoversTheClientKey() throws {
        var server = SCRAMServerExchange(secret: secret, serverNonce: "srv", channelBinding: .selected(tlsServerEndPoint: endPoint))
        let client = PlusClient()
        let serverFirst = try server.receiveClientFirst(client.clientFirst).get()
        let serverFinal = try server.receiveClientFinal(client.clientFinal(serverFirst)).get()
        #expect(serverFinal.starts(with: bytes("v=")))
        #expect(server.clientKey == clientKey)
    }

    @Test func aForgedBindingIsRefusedLikePostgres() {
        var forged = PlusClient()
        forged.bindingData = Array(repeating: 0xCD, count: 32)  // the hash of some other certificate
        let (server, result) = forged.run(against: .selected(tlsServerEndPoint: endPoint))
        #expect(result.error == .channelBindingMismatch)
        #expect(server.clientKey == nil)
        let fields = SCRAMError.channelBindingMismatch.clientError
        #expect(fields.code == SQLState.invalidAuthorizationSpecification && fields.isFatal)
        #expect(fields.message == "SCRAM channel binding check failed")
    }

    @Test func clientSayingYWhenPlusWasOfferedIsADowngrade() {
        var server = SCRAMServerExchange(secret: secret, serverNonce: "srv", channelBinding: .offered)
        #expect(server.receiveClientFirst(bytes("y,,n=,r=cli")).error == .channelBindingDowngrade)
        let fields = SCRAMError.channelBindingDowngrade.clientError
        #expect(fields.code == "28000" && fields.message == "SCRAM channel binding negotiation error")
        #expect(fields.detail?.hasPrefix("The client supports SCRAM channel binding but thinks the server does not.") == true)
    }

    @Test func clientSayingYWithoutTLSIsFine() throws {
        var server = SCRAMServerExchange(secret: secret, serverNonce: "srv", channelBinding: .notOffered)
        _ = try server.receiveClientFirst(bytes("y,,n=,r=cli")).get()
    }

    @Test func clientSayingNIsFineUnlessItSelectedPlus() throws {
        var offered = SCRAMServerExchange(secret: secret, serverNonce: "srv", channelBinding: .offered)
        _ = try offered.receiveClientFirst(bytes("n,,n=,r=cli")).get()
        for flag in ["n", "y"] {
            var plus = SCRAMServerExchange(secret: secret, serverNonce: "srv", channelBinding: .selected(tlsServerEndPoint: endPoint))
            #expect(plus.receiveClientFirst(bytes("\(flag),,n=,r=cli")).error == .channelBindingRequired)
        }
        #expect(SCRAMError.channelBindingRequired.clientError.detail
            == "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.")
    }

    @Test func bindingDataWithPlainSCRAMAndUnknownBindingTypesAreRefused() {
        for binding in [SCRAMServerExchange.ChannelBinding.offered, .notOffered] {
            var server = SCRAMServerExchange(secret: secret, serverNonce: "srv", channelBinding: binding)
            #expect(server.receiveClientFirst(bytes("p=tls-server-end-point,,n=,r=cli")).error == .channelBindingNotSupported)
        }
        var plus = SCRAMServerExchange(secret: secret, serverNonce: "srv", channelBinding: .selected(tlsServerEndPoint: endPoint))
        #expect(plus.receiveClientFirst(bytes("p=tls-unique,,n=,r=cli")).error == .unsupportedChannelBindingType("tls-unique"))
        #expect(SCRAMError.unsupportedChannelBindingType("tls-unique").clientError.message
            == #"unsupported SCRAM channel-binding type "tls-unique""#)
    }

    @Test func aPlusHeaderWithoutTheBindingDataIsRefused() {
        // c= carrying only the GS2 header, as a client that didn't hash the certificate would send.
        var lazy = PlusClient()
        lazy.bindingData = []
        #expect(lazy.run(against: .selected(tlsServerEndPoint: endPoint)).1.error == .channelBindingMismatch)
    }

    @Test func withoutBindingCMustRepeatTheFlag() throws {
        var server = SCRAMServerExchange(secret: secret, serverNonce: "srv", channelBinding: .notOffered)
        _ = try server.receiveClientFirst(bytes("y,,n=,r=cli")).get()
        let proof = SCRAMPrimitives.base64([UInt8](repeating: 0, count: 32))
        #expect(server.receiveClientFinal(bytes("c=biws,r=clisrv,p=\(proof)")).error == .unexpectedChannelBindingAttribute)
        #expect(SCRAMError.unexpectedChannelBindingAttribute.clientError.code == SQLState.protocolViolation)
    }
}

/// RFC 5929's hash choice, checked against `openssl x509 -fingerprint` of real certificates.
@Suite struct TLSServerEndPointTests {
    /// ecdsa-with-SHA384 (P-384): the binding is the certificate's SHA-384.
    static let ecdsaSHA384 = "MIIBvDCCAUKgAwIBAgIUKaR4c6kxx5FCbyKfAV7O+0N68vYwCgYIKoZIzj0EAwMwFDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwMTIxMzU1MFoYDzIxMjYxMTA3MjEzNTUwWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwdjAQBgcqhkjOPQIBBgUrgQQAIgNiAAQZdGuwb576HHVkQGd7X1URcVTcZUXVD0sIr2wK20ti2y60DmNnRUVplOIGXt1QVOjJGtiGeOglG2LKhf2V9IUfC+uIHVoi/503T8zUUt15qH+cDIqAnG23LvaNhEGOhDmjUzBRMB0GA1UdDgQWBBSmksaz4RBM+Hd+26V6xlvzqUZNCzAfBgNVHSMEGDAWgBSmksaz4RBM+Hd+26V6xlvzqUZNCzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMDA2gAMGUCMQCpaaHTFbVnmkkfud8nmCR0BBS6yngzkFCs/cL/uSEZmHaHyX6g1+ZXt7yAsTFdEqkCMHXNCuIdG1oNV35gjtbKyocYXFX+LNQdCw2oKPv2bk4ssDgck+rn9H+b9deCfC4uSQ=="
    static let ecdsaSHA384Fingerprint = "9FC539A0F12FAF3F96744212D7280E7CAF9E7D6C3FB5914B91BC3E37338A94338B89AB92376870952596B8ED5C162787"
    /// ecdsa-with-SHA1: SHA-1 is replaced by SHA-256.
    static let ecdsaSHA1 = "MIIBfjCCASSgAwIBAgIUCO2z8orKsa+BGLaWJo6di2XvgD0wCQYHKoZIzj0EATAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwIBcNMjYxMjAxMjEzNTUwWhgPMjEyNjExMDcyMTM1NTBaMBQxEjAQBgNVBAMMCWxvY2FsaG9zdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMxV3dK9sRYqFYvZ/bCsF0y+JAl9MUfeWdCVokHkXc4MIECQw9NX0zFFq4fa4a4/4MV6ziwcyGNS/s5Y0k8EyrSjUzBRMB0GA1UdDgQWBBRzbU74twNn6cUcKzcqIwQF7K7umjAfBgNVHSMEGDAWgBRzbU74twNn6cUcKzcqIwQF7K7umjAPBgNVHRMBAf8EBTADAQH/MAkGByqGSM49BAEDSQAwRgIhAPq9tcizld0WuZPr5yXBvIzJaHyCp5y4RzVQstbakZ4eAiEA07HIa7V/jEEIUORwoeTeRuoGKRUIqQmcuMuDlzSgrUo="
    static let ecdsaSHA1Fingerprint = "14B50EE068B40EA496199D7D1DDE5AC319CB059FC5353356D9034810F0B35CB8"
    /// Ed25519 signs without a separate hash: no binding, so -PLUS is not offered.
    static let ed25519 = "MIIBPjCB8aADAgECAhR3X/1oZoRt9NTmg4Mhp2rZAJBaDzAFBgMrZXAwFDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwMTIxMzU1MFoYDzIxMjYxMTA3MjEzNTUwWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwKjAFBgMrZXADIQAdpFrDaMaZvoNlRf69W08687e/j8OGn4BR/FnkYZZWiKNTMFEwHQYDVR0OBBYEFH2AUzFu/UqRJ+A2EbJf+abCBbzpMB8GA1UdIwQYMBaAFH2AUzFu/UqRJ+A2EbJf+abCBbzpMA8GA1UdEwEB/wQFMAMBAf8wBQYDK2VwA0EAjeq9CpFPvviKZ4JDAFp4oVBgN9NkhhPC+MBMGR2D76mibVZ7GPai6TUqrN5L1C+SOTvmKASKe1Is6On6rpAyAA=="

    static func hex(_ bytes: [UInt8]?) -> String? {
        let digits = Array("0123456789ABCDEF")
        return bytes.map { String($0.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xF)]] }) }
    }

    static func der(_ base64: String) -> [UInt8] { SCRAMPrimitives.decodeBase64(base64.utf8)! }

    @Test func hashFollowsTheSignatureAlgorithm() {
        #expect(Self.hex(TLSServerEndPoint.bindingData(certificateDER: Self.der(Self.ecdsaSHA384))) == Self.ecdsaSHA384Fingerprint)
        #expect(Self.hex(TLSServerEndPoint.bindingData(certificateDER: Self.der(Self.ecdsaSHA1))) == Self.ecdsaSHA1Fingerprint)
        #expect(TLSServerEndPoint.bindingData(certificateDER: Self.der(Self.ed25519)) == nil)
    }

    @Test func rsaAlgorithmsMapAsRFC5929Says() {
        let rsa: [UInt8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01]
        #expect(TLSServerEndPoint.hash(forSignatureAlgorithm: rsa + [4]) == .sha256)   // md5WithRSAEncryption
        #expect(TLSServerEndPoint.hash(forSignatureAlgorithm: rsa + [5]) == .sha256)   // sha1WithRSAEncryption
        #expect(TLSServerEndPoint.hash(forSignatureAlgorithm: rsa + [11]) == .sha256)
        #expect(TLSServerEndPoint.hash(forSignatureAlgorithm: rsa + [12]) == .sha384)
        #expect(TLSServerEndPoint.hash(forSignatureAlgorithm: rsa + [13]) == .sha512)
        #expect(TLSServerEndPoint.hash(forSignatureAlgorithm: rsa + [10]) == nil)      // RSASSA-PSS
    }

    @Test func truncatedOrGarbledCertificatesYieldNothing() {
        let der = Self.der(Self.ecdsaSHA384)
        for length in [0, 1, 2, 10, 300] {
            #expect(TLSServerEndPoint.bindingData(certificateDER: Array(der.prefix(length))) == nil)
        }
        #expect(TLSServerEndPoint.bindingData(certificateDER: [0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]) == nil)
        #expect(TLSServerEndPoint.bindingData(certificateDER: [0x31] + der.dropFirst()) == nil)
    }
}
