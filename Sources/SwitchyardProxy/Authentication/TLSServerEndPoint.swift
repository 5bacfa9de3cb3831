import Crypto

/// RFC 5929 `tls-server-end-point` channel binding data: a hash of the certificate Switchyard
/// presents to clients. SCRAM-SHA-256-PLUS clients mix it into their proof, so a man in the middle
/// who terminates TLS with another certificate cannot relay the login.
///
/// The hash function is the certificate's signature hash, except that MD5 and SHA-1 become SHA-256
/// (RFC 5929 section 4.1). Postgres computes it the same way (`be_tls_get_certificate_hash`).
public enum TLSServerEndPoint {
    /// The binding data for a DER-encoded certificate, or nil when its signature algorithm has no
    /// single hash we can compute (Ed25519, RSA-PSS, SHA-224 …): Switchyard then doesn't offer
    /// SCRAM-SHA-256-PLUS at all, rather than offering a binding it cannot check.
    public static func bindingData(certificateDER der: [UInt8]) -> [UInt8]? {
        guard let oid = signatureAlgorithmOID(der) else { return nil }
        switch hash(forSignatureAlgorithm: oid) {
        case .sha256?: return Array(SHA256.hash(data: der))
        case .sha384?: return Array(SHA384.hash(data: der))
        case .sha512?: return Array(SHA512.hash(data: der))
        case nil: return nil
        }
    }

    enum Hash { case sha256, sha384, sha512 }

    /// Signature algorithm OIDs (DER content bytes) and the hash RFC 5929 says to use for each.
    static func hash(forSignatureAlgorithm oid: [UInt8]) -> Hash? {
        let rsa: [UInt8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01]  // 1.2.840.113549.1.1
        let ecdsa: [UInt8] = [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04]  // 1.2.840.10045.4
        let dsaSHA1: [UInt8] = [0x2A, 0x86, 0x48, 0xCE, 0x38, 0x04, 0x03]  // 1.2.840.10040.4.3
        let nistSignatures: [UInt8] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03]  // 2.16.840.1.101.3.4.3
        if oid.count == rsa.count + 1, oid.starts(with: rsa) {
            switch oid.last! {
            case 4, 5: return .sha256  // md5WithRSAEncryption, sha1WithRSAEncryption
            case 11: return .sha256
            case 12: return .sha384
            case 13: return .sha512
            default: return nil  // 14 is SHA-224 (not in swift-crypto), 10 is RSA-PSS (hash in the parameters)
            }
        }
        if oid == ecdsa + [0x01] { return .sha256 }  // ecdsa-with-SHA1
        if oid.count == ecdsa.count + 2, oid.starts(with: ecdsa + [0x03]) {
            switch oid.last! {
            case 2: return .sha256
            case 3: return .sha384
            case 4: return .sha512
            default: return nil
            }
        }
        if oid == dsaSHA1 { return .sha256 }
        if oid == nistSignatures + [0x02] { return .sha256 }  // dsa-with-sha256
        return nil
    }

    /// Walks just enough DER to read `Certificate.signatureAlgorithm.algorithm`:
    /// SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { OID, … }, signature BIT STRING }.
    static func signatureAlgorithmOID(_ der: [UInt8]) -> [UInt8]? {
        var reader = DERReader(der[...])
        guard var certificate = reader.read(tag: 0x30) else { return nil }
        guard certificate.read(tag: 0x30) != nil, var algorithm = certificate.read(tag: 0x30) else { return nil }
        return algorithm.read(tag: 0x06).map { Array($0.bytes) }
    }
}

/// A bounds-checked reader of DER tag-length-value items; any malformation yields nil.
struct DERReader {
    private(set) var bytes: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    /// Reads one item with the given (single-byte) tag and returns a reader over its contents.
    mutating func read(tag: UInt8) -> DERReader? {
        guard bytes.count >= 2, bytes.first == tag else { return nil }
        var index = bytes.startIndex + 1
        var length = Int(bytes[index])
        index += 1
        if length & 0x80 != 0 {
            let count = length & 0x7F
            guard (1...4).contains(count), bytes.endIndex - index >= count else { return nil }
            length = 0
            for _ in 0..<count {
                length = length << 8 | Int(bytes[index])
                index += 1
            }
        }
        guard bytes.endIndex - index >= length else { return nil }
        let contents = bytes[index..<(index + length)]
        bytes = bytes[(index + length)...]
        return DERReader(contents)
    }
}
