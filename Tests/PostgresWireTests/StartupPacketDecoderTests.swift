import NIOCore
import NIOTestUtils
import Testing
@testable import PostgresWire

@Suite struct StartupPacketDecoderTests {
    func decodeAll(_ bytes: ByteBuffer) throws -> [StartupPacket] {
        var decoder = StartupPacketDecoder()
        var buffer = bytes
        var packets: [StartupPacket] = []
        while let packet = try decoder.decode(buffer: &buffer) { packets.append(packet) }
        return packets
    }

    @Test func decodesStartupMessageParameters() throws {
        var buffer = ByteBuffer()
        StartupMessage(parameters: [("user", "app"), ("database", "db"), ("application_name", "psql")]).encode(into: &buffer)
        let packets = try decodeAll(buffer)
        #expect(packets == [.startup(StartupMessage(parameters: [("user", "app"), ("database", "db"), ("application_name", "psql")]))])
    }

    @Test func decodesSSLRequestAndCancel() throws {
        var ssl = ByteBuffer()
        ssl.writeInteger(Int32(8)); ssl.writeInteger(Int32(80_877_103))
        #expect(try decodeAll(ssl) == [.sslRequest])
        var gss = ByteBuffer()
        gss.writeInteger(Int32(8)); gss.writeInteger(Int32(80_877_104))
        #expect(try decodeAll(gss) == [.gssEncryptionRequest])
        var cancel = ByteBuffer()
        CancelRequest(processID: 42, secretKey: -7).encode(into: &cancel)
        #expect(try decodeAll(cancel) == [.cancel(CancelRequest(processID: 42, secretKey: -7))])
    }

    @Test func rejectsPlaintextPipelinedAfterSSLRequest() {
        var buffer = ByteBuffer()
        buffer.writeInteger(Int32(8)); buffer.writeInteger(Int32(80_877_103))
        StartupMessage(parameters: [("user", "app")]).encode(into: &buffer)
        #expect(throws: StartupPacketError.unexpectedDataAfterEncryptionRequest) { try decodeAll(buffer) }
    }

    @Test func rejectsOtherProtocolVersions() {
        var buffer = ByteBuffer()
        buffer.writeInteger(Int32(9)); buffer.writeInteger(Int32(2 << 16)); buffer.writeInteger(UInt8(0))
        #expect(throws: StartupPacketError.unsupportedProtocolVersion(major: 2, minor: 0)) { try decodeAll(buffer) }
    }

    @Test func rejectsOversizedAndTruncatedPackets() {
        var huge = ByteBuffer()
        huge.writeInteger(Int32(1_000_000)); huge.writeInteger(Int32(196_608))
        #expect(throws: StartupPacketError.invalidLength(1_000_000)) { try decodeAll(huge) }
        var tiny = ByteBuffer()
        tiny.writeInteger(Int32(4)); tiny.writeInteger(Int32(0))
        #expect(throws: StartupPacketError.invalidLength(4)) { try decodeAll(tiny) }
        var unterminated = ByteBuffer()
        unterminated.writeInteger(Int32(13)); unterminated.writeInteger(Int32(196_608)); unterminated.writeString("userx")
        #expect(throws: StartupPacketError.malformedStartupMessage) { try decodeAll(unterminated) }
    }

    @Test func waitsForWholePacket() throws {
        var buffer = ByteBuffer()
        StartupMessage(parameters: [("user", "app")]).encode(into: &buffer)
        var decoder = StartupPacketDecoder()
        var partial = buffer.getSlice(at: 0, length: buffer.readableBytes - 1)!
        #expect(try decoder.decode(buffer: &partial) == nil)
    }
}

@Suite struct FrameDecoderTests {
    @Test func decodesFramesSplitAtEveryByte() throws {
        var wire = ByteBuffer()
        FrontendMessage.query("select 1", into: &wire)
        FrontendMessage.terminate(into: &wire)
        let expected = [
            (wire, [Frame(id: FrontendMessageID.query, body: ByteBuffer(bytes: Array("select 1".utf8) + [0])),
                    Frame(id: FrontendMessageID.terminate, body: ByteBuffer())]),
        ]
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: expected) { FrameDecoder(maximumLength: 1024) }
    }

    @Test func rejectsOversizedMessageBeforeBufferingIt() {
        var buffer = ByteBuffer()
        buffer.writeInteger(FrontendMessageID.query)
        buffer.writeInteger(Int32(10_000))
        var decoder = FrameDecoder(maximumLength: 1024)
        #expect(throws: FrameDecodingError.messageTooLarge(length: 10_000, limit: 1024)) { try decoder.decode(buffer: &buffer) }
    }

    @Test func rejectsNegativeLength() {
        var buffer = ByteBuffer()
        buffer.writeInteger(FrontendMessageID.query)
        buffer.writeInteger(Int32(-1))
        var decoder = FrameDecoder(maximumLength: 1024)
        #expect(throws: FrameDecodingError.invalidLength(-1)) { try decoder.decode(buffer: &buffer) }
    }
}

@Suite struct ErrorFieldsTests {
    @Test func roundTrips() throws {
        var buffer = ByteBuffer()
        let error = ErrorFields(severity: .fatal, code: "28P01", message: "password authentication failed", hint: "try again")
        error.encode(into: &buffer)
        var decoder = FrameDecoder(maximumLength: 1024)
        let frame = try #require(try decoder.decode(buffer: &buffer))
        #expect(frame.id == BackendMessageID.errorResponse)
        #expect(ErrorFields(decoding: frame.body) == error)
    }
}
