import Testing
@testable import SwitchyardProxy

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

private extension Result {
    var error: Failure? { if case .failure(let error) = self { error } else { nil } }
}

private extension Result where Success == [UInt8] {
    /// The success as text, so expectations read like the RFC.
    var text: String? { (try? get()).map { String(decoding: $0, as: UTF8.self) } }
}

/// RFC 7677 section 3, SCRAM-SHA-256 example: user "user", password "pencil".
private enum RFC7677 {
    static let salt = SCRAMPrimitives.decodeBase64("W22ZaJ0SNY7soEsUEjb6gQ==".utf8)!
    static let clientNonce = "rOprNGfwEbeRWgbNEkqO"
    static let serverNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    static let clientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    static let serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    static let clientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    static let serverFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
}

/// A server for "pencil" with 4096 iterations, shared so PBKDF2 runs once for the suite.
private let pencil = SCRAMSecret.derive(password: "pencil", salt: RFC7677.salt)

/// Runs both sides against each other up to the client-final message.
private func handshake(
    password: String, secret: SCRAMSecret?, cache: SaltedPasswordCache? = nil
) -> (client: SCRAMClientExchange, server: SCRAMServerExchange, clientFinal: [UInt8]) {
    var client = SCRAMClientExchange(password: password, clientNonce: SCRAMServerExchange.randomNonce())
    var server = SCRAMServerExchange(secret: secret, serverNonce: SCRAMServerExchange.randomNonce())
    let serverFirst = try! server.receiveClientFirst(client.clientFirstMessage()).get()
    let clientFinal = try! client.receiveServerFirst(serverFirst, cache: cache).get()
    return (client, server, clientFinal)
}

@Suite struct SCRAMExchangeTests {
    @Test func serverMatchesRFC7677() {
        var server = SCRAMServerExchange(secret: pencil, serverNonce: RFC7677.serverNonce)
        #expect(server.receiveClientFirst(bytes(RFC7677.clientFirst)).text == RFC7677.serverFirst)
        #expect(server.receiveClientFinal(bytes(RFC7677.clientFinal)).text == RFC7677.serverFinal)
    }

    @Test func clientMatchesRFC7677() throws {
        var client = SCRAMClientExchange(password: "pencil", clientNonce: RFC7677.clientNonce, username: "user")
        #expect(client.clientFirstMessage() == bytes(RFC7677.clientFirst))
        #expect(client.receiveServerFirst(bytes(RFC7677.serverFirst)).text == RFC7677.clientFinal)
        try client.verifyServerFinal(bytes(RFC7677.serverFinal)).get()
    }

    @Test func clientFirstLooksLikeLibpq() {
        let client = SCRAMClientExchange(password: "x", clientNonce: "abc")
        #expect(client.clientFirstMessage() == bytes("n,,n=,r=abc"))
        let escaped = SCRAMClientExchange(password: "x", clientNonce: "abc", username: "a=b,c")
        #expect(escaped.clientFirstMessage() == bytes("n,,n=a=3Db=2Cc,r=abc"))
    }

    @Test func clientAndServerAgree() throws {
        var (client, server, clientFinal) = handshake(password: "pencil", secret: pencil)
        let serverFinal = try server.receiveClientFinal(clientFinal).get()
        try client.verifyServerFinal(serverFinal).get()
        // The exchange is over: nothing more is accepted.
        #expect(server.receiveClientFinal(clientFinal).error == .outOfOrder)
        #expect(client.receiveServerFirst(bytes(RFC7677.serverFirst)).error == .outOfOrder)
    }

    @Test func clientWorksAgainstAPostgresVerifier() throws {
        let secret = try SCRAMSecret(verifier: SCRAMSecretTests.postgresVerifier)
        var (client, server, clientFinal) = handshake(password: "app-secret", secret: secret)
        try client.verifyServerFinal(server.receiveClientFinal(clientFinal).get()).get()
    }

    @Test func wrongPasswordFails() {
        var (_, server, clientFinal) = handshake(password: "pencil!", secret: pencil)
        #expect(server.receiveClientFinal(clientFinal).error == .authenticationFailed)
    }

    @Test func unknownUserRunsToTheProofAndFailsLikeAWrongPassword() throws {
        var server = SCRAMServerExchange(secret: nil, serverNonce: "srv")
        let serverFirst = try #require(server.receiveClientFirst(bytes("n,,n=ghost,r=cli")).text)
        let attributes = serverFirst.split(separator: ",")
        #expect(attributes.count == 3 && attributes[0] == "r=clisrv" && attributes[2] == "i=4096")
        #expect(attributes[1].hasPrefix("s=") && attributes[1].count == 2 + 24)  // 16-byte salt
        var client = SCRAMClientExchange(password: "anything", clientNonce: "cli")
        let clientFinal = try client.receiveServerFirst(bytes(serverFirst)).get()
        #expect(server.receiveClientFinal(clientFinal).error == .authenticationFailed)
    }

    @Test func unknownUserRejectsEvenAProofForItsOwnMockKeys() throws {
        // The mock keys are random, but even a lucky proof must not authenticate a user that doesn't exist.
        var server = SCRAMServerExchange(secret: nil, serverNonce: "srv")
        _ = server.receiveClientFirst(bytes("n,,n=,r=cli"))
        let proof = SCRAMPrimitives.base64([UInt8](repeating: 0, count: 32))
        #expect(server.receiveClientFinal(bytes("c=biws,r=clisrv,p=\(proof)")).error == .authenticationFailed)
    }

    @Test func mockUserRejectsEvenACorrectProof() {
        var server = SCRAMServerExchange(secret: pencil, isMock: true, serverNonce: RFC7677.serverNonce)
        _ = server.receiveClientFirst(bytes(RFC7677.clientFirst))
        #expect(server.receiveClientFinal(bytes(RFC7677.clientFinal)).error == .authenticationFailed)
    }

    @Test func serverRejectsATamperedNonce() {
        var (_, server, clientFinal) = handshake(password: "pencil", secret: pencil)
        let text = String(decoding: clientFinal, as: UTF8.self)
        let tampered = text.replacingFirstOccurrence(of: ",r=", with: ",r=X")
        #expect(server.receiveClientFinal(bytes(tampered)).error == .nonceMismatch)
    }

    @Test(arguments: [
        "r=someoneElse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",   // doesn't extend our nonce
        "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  // echoes it without adding anything
    ])
    func clientRejectsAServerNonceThatDoesNotExtendItsOwn(_ serverFirst: String) {
        var client = SCRAMClientExchange(password: "pencil", clientNonce: RFC7677.clientNonce)
        #expect(client.receiveServerFirst(bytes(serverFirst)).error == .nonceMismatch)
    }

    @Test func clientRejectsAForgedServerSignature() throws {
        var (client, server, clientFinal) = handshake(password: "pencil", secret: pencil)
        _ = try server.receiveClientFinal(clientFinal).get()
        let forged = "v=" + SCRAMPrimitives.base64([UInt8](repeating: 7, count: 32))
        #expect(client.verifyServerFinal(bytes(forged)).error == .serverSignatureMismatch)
        #expect(client.verifyServerFinal(bytes("e=invalid-proof")).error == .serverError("invalid-proof"))
        #expect(client.verifyServerFinal(bytes("e=bad\u{1B}[31m")).error == .serverError("bad[31m"))
        #expect(client.verifyServerFinal(bytes("nonsense")).error == .malformedMessage("expected v= or e="))
    }

    @Test func channelBinding() throws {
        var server = SCRAMServerExchange(secret: pencil, serverNonce: "srv")
        #expect(server.receiveClientFirst(bytes("p=tls-server-end-point,,n=,r=cli")).error == .channelBindingNotSupported)

        // "y": the client could bind but believes we can't. Fine when -PLUS wasn't offered (no TLS).
        var yes = SCRAMServerExchange(secret: pencil, serverNonce: "srv")
        _ = try yes.receiveClientFirst(bytes("y,,n=,r=cli")).get()
        let proof = SCRAMPrimitives.base64([UInt8](repeating: 0, count: 32))
        // c= must echo "y,," (eSws), not "n,," (biws): a rewritten header is caught.
        #expect(yes.receiveClientFinal(bytes("c=biws,r=clisrv,p=\(proof)")).error == .unexpectedChannelBindingAttribute)
        var yes2 = SCRAMServerExchange(secret: pencil, serverNonce: "srv")
        _ = yes2.receiveClientFirst(bytes("y,,n=,r=cli"))
        #expect(yes2.receiveClientFinal(bytes("c=eSws,r=clisrv,p=\(proof)")).error == .authenticationFailed)
    }

    @Test(arguments: [
        "", "n,,", "n", "x,,n=,r=abc", "n,a=admin,n=,r=abc", "n,,r=abc", "n,,n=,r=", "n,,n=,r=a b",
        "n,,m=ext,n=,r=abc", "n,,n=,x=abc", "n,,n=,r=abc,", "n,,n=,r=abc,=x",
    ])
    func serverRejectsMalformedClientFirst(_ message: String) {
        var server = SCRAMServerExchange(secret: pencil, serverNonce: "srv")
        guard case .malformedMessage? = server.receiveClientFirst(bytes(message)).error else {
            Issue.record("accepted or misclassified: \(message)")
            return
        }
        #expect(server.receiveClientFinal(bytes("c=biws,r=abcsrv,p=AAAA")).error == .outOfOrder)
    }

    @Test(arguments: [
        "", "c=biws,r=clisrv", "r=clisrv,c=biws,p=AAAA", "c=biws,r=clisrv,p=not*base64",
        "c=biws,r=clisrv,p=AAAA", "c=biws,r=clisrv,p=",
    ])
    func serverRejectsMalformedClientFinal(_ message: String) {
        var server = SCRAMServerExchange(secret: pencil, serverNonce: "srv")
        _ = server.receiveClientFirst(bytes("n,,n=,r=cli"))
        guard case .malformedMessage? = server.receiveClientFinal(bytes(message)).error else {
            Issue.record("accepted or misclassified: \(message)")
            return
        }
    }

    /// Like Postgres, a c= that isn't the GS2 header ("biws") is judged as a binding attribute, base64 or not.
    @Test func serverRejectsAGarbledBindingAttribute() {
        var server = SCRAMServerExchange(secret: pencil, serverNonce: "srv")
        _ = server.receiveClientFirst(bytes("n,,n=,r=cli"))
        #expect(server.receiveClientFinal(bytes("c=!!!!,r=clisrv,p=AAAA")).error == .unexpectedChannelBindingAttribute)
    }

    @Test(arguments: [
        "", "r=rOprNGfwEbeRWgbNEkqOsrv", "r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==",
        "m=ext,r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOsrv,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOsrv,s=not*base64,i=4096", "r=rOprNGfwEbeRWgbNEkqOsrv,s=,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
        "r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
        "r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096x",
        "r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4294967297",
    ])
    func clientRejectsMalformedServerFirst(_ message: String) {
        var client = SCRAMClientExchange(password: "pencil", clientNonce: RFC7677.clientNonce)
        guard case .malformedMessage? = client.receiveServerFirst(bytes(message)).error else {
            Issue.record("accepted or misclassified: \(message)")
            return
        }
        #expect(client.verifyServerFinal(bytes(RFC7677.serverFinal)).error == .outOfOrder)
    }

    @Test func outOfOrderCallsReturnErrors() {
        var server = SCRAMServerExchange(secret: pencil, serverNonce: RFC7677.serverNonce)
        #expect(server.receiveClientFinal(bytes(RFC7677.clientFinal)).error == .outOfOrder)
        var fresh = SCRAMServerExchange(secret: pencil, serverNonce: RFC7677.serverNonce)
        _ = fresh.receiveClientFirst(bytes(RFC7677.clientFirst))
        #expect(fresh.receiveClientFirst(bytes(RFC7677.clientFirst)).error == .outOfOrder)

        var client = SCRAMClientExchange(password: "pencil", clientNonce: RFC7677.clientNonce)
        #expect(client.verifyServerFinal(bytes(RFC7677.serverFinal)).error == .outOfOrder)
        _ = client.receiveServerFirst(bytes(RFC7677.serverFirst))
        #expect(client.receiveServerFirst(bytes(RFC7677.serverFirst)).error == .outOfOrder)
    }

    @Test func cacheReusesSaltedPasswordPerSaltAndIterations() throws {
        let cache = SaltedPasswordCache()
        for _ in 0..<3 {
            var (client, server, clientFinal) = handshake(password: "pencil", secret: pencil, cache: cache)
            try client.verifyServerFinal(server.receiveClientFinal(clientFinal).get()).get()
        }
        #expect(cache.count == 1)
        let otherSalt = SCRAMSecret.derive(password: "pencil", salt: [9, 9, 9, 9], iterations: 1)
        var (client, server, clientFinal) = handshake(password: "pencil", secret: otherSalt, cache: cache)
        try client.verifyServerFinal(server.receiveClientFinal(clientFinal).get()).get()
        #expect(cache.count == 2)
        // A wrong password shares salt and iterations but must not hit the right password's entry.
        var (_, server2, wrongFinal) = handshake(password: "pencil!", secret: otherSalt, cache: cache)
        #expect(server2.receiveClientFinal(wrongFinal).error == .authenticationFailed)
        #expect(cache.count == 3)
    }

    @Test func cacheKeysOnSaltAndStartsOverWhenFull() throws {
        let cache = SaltedPasswordCache(capacity: 3)
        for salt in 1...4 {  // same password and iterations, different salts: each needs its own entry
            let secret = SCRAMSecret.derive(password: "p", salt: [UInt8(salt)], iterations: 1)
            var (client, server, clientFinal) = handshake(password: "p", secret: secret, cache: cache)
            try client.verifyServerFinal(server.receiveClientFinal(clientFinal).get()).get()
            #expect(cache.count == (salt - 1) % 3 + 1)
        }
    }

    @Test func randomNoncesAreDistinctAndValid() {
        let nonces = (0..<100).map { _ in SCRAMServerExchange.randomNonce() }
        #expect(Set(nonces).count == 100)
        #expect(nonces.allSatisfy { $0.utf8.count == 24 && SCRAMPrimitives.isValidNonce($0.utf8) })
    }

    @Test func errorDescriptionsAreFixedText() {
        #expect(SCRAMError.authenticationFailed.description == "SCRAM authentication failed")
        #expect(SCRAMError.nonceMismatch.description == "SCRAM nonce does not match the exchange")
        #expect(SCRAMError.outOfOrder.description == "SCRAM message received out of order")
    }
}

private extension String {
    func replacingFirstOccurrence(of target: String, with replacement: String) -> String {
        guard let range = firstRange(of: target) else { return self }
        var copy = self
        copy.replaceSubrange(range, with: replacement)
        return copy
    }
}
