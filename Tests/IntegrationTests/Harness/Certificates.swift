import Foundation

/// A throwaway self-signed certificate for `CN=localhost`, made with openssl in a temp directory.
struct SelfSignedCertificate: Sendable {
    var directory: String
    var certificatePath: String { directory + "/server.crt" }
    var keyPath: String { directory + "/server.key" }

    static func make() async throws -> SelfSignedCertificate {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("switchyard-it-tls")).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let certificate = SelfSignedCertificate(directory: directory)
        let result = try await runProcess("openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1",
            "-keyout", certificate.keyPath, "-out", certificate.certificatePath,
        ], timeout: .seconds(30))
        guard result.succeeded else { throw HarnessError("openssl failed: \(result)") }
        return certificate
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}
