import NIOCore
import PostgresWire

/// Targets for the wire decoders (PostgresWire). Each reads the same bytes twice, whole and cut into
/// reads by ``ReadSplitter``, and the two must agree: what a client sees cannot depend on where TCP
/// happened to end a read.
enum WireTargets {
    // MARK: Start-up packets

    static func startupPacket(_ input: [UInt8]) -> String? {
        var splitter = ReadSplitter(input)
        let whole = decodeStartup([splitter.data])
        let pieces = decodeStartup(splitter.reads())
        if whole.error == "\(StartupPacketError.unexpectedDataAfterEncryptionRequest)" {
            // Bytes sent behind an SSLRequest in the same read are refused (they would bypass TLS);
            // in pieces, the request may end its read. Up to that point the two agree.
            guard pieces.packets.starts(with: whole.packets) else { return "startup: \(whole) read whole, \(pieces) in pieces" }
            return nil
        }
        return whole == pieces ? nil : "startup: \(whole) read whole, \(pieces) in pieces"
    }

    private struct Decoded: Equatable {
        var packets: [String] = []
        var error: String?
    }

    private static func decodeStartup(_ reads: [ArraySlice<UInt8>]) -> Decoded {
        let processor = NIOSingleStepByteToMessageProcessor(StartupPacketDecoder())
        var decoded = Decoded()
        do {
            for read in reads {
                try processor.process(buffer: ByteBuffer(bytes: read)) { decoded.packets.append("\($0)") }
            }
        } catch {
            decoded.error = "\(error)"
        }
        return decoded
    }

    // MARK: Client message stream

    /// Small enough that the corpus's messages are streamed; the relay's is 64 KiB.
    static let streamingThreshold = 24
    static let maximumLength = 4096

    static func clientStream(_ input: [UInt8]) -> String? {
        var splitter = ReadSplitter(input)
        let whole = frameClientStream([splitter.data])
        let pieces = frameClientStream(splitter.reads())
        if let broken = whole.broken ?? pieces.broken { return "client stream: \(broken)" }
        guard whole.messages == pieces.messages, whole.error == pieces.error else {
            return "client stream: read whole \(whole.messages.count) messages, error \(whole.error ?? "none"); "
                + "in pieces \(pieces.messages.count), error \(pieces.error ?? "none")"
        }
        return nil
    }

    private struct Framed {
        /// Complete messages, streamed ones joined: type byte, length word, body.
        var messages: [[UInt8]] = []
        var error: String?
        var broken: String?
    }

    private static func frameClientStream(_ reads: [ArraySlice<UInt8>]) -> Framed {
        var stream = ClientMessageStream(maximumLength: maximumLength, streamingThreshold: streamingThreshold)
        var framed = Framed()
        var streaming: [UInt8]?
        // As the relay may answer: Query and CopyData streamed, Bind refused, a FunctionCall only after
        // waiting once for room, the rest held whole.
        var waitedOnce = false, retry = false
        let admit = { (id: UInt8, _: Int) -> ClientMessageStream.Admission in
            switch id {
            case FrontendMessageID.query, FrontendMessageID.copyData: return .stream
            case FrontendMessageID.bind: return .refuse
            case FrontendMessageID.functionCall:
                waitedOnce.toggle()
                retry = waitedOnce
                return waitedOnce ? .notYet : .whole
            default: return .whole
            }
        }
        let mayStream = { (id: UInt8) in id == FrontendMessageID.query || id == FrontendMessageID.copyData }
        do {
            for read in reads {
                var input = ByteBuffer(bytes: read)
                repeat {
                    retry = false
                    try stream.process(input, admit: admit) { event in
                        switch event {
                        case .message(let message):
                            guard streaming == nil else { framed.broken = "a whole message inside a streamed one"; return }
                            let bytes = Array(message.bytes.readableBytesView)
                            if bytes.first != message.id || declaredLength(bytes) != bytes.count - 1 {
                                framed.broken = "message \(message.id) of \(bytes.count) bytes declares \(declaredLength(bytes) ?? -1)"
                            }
                            framed.messages.append(bytes)
                        case .streamStart(let id, let bytes):
                            guard streaming == nil else { framed.broken = "a stream started inside another"; return }
                            guard mayStream(id) else { framed.broken = "message type \(id) streamed without leave"; return }
                            streaming = Array(bytes.readableBytesView)
                        case .streamBody(let bytes, let isLast):
                            guard var current = streaming else { framed.broken = "stream bytes outside a stream"; return }
                            current += bytes.readableBytesView
                            streaming = current
                            if isLast {
                                if declaredLength(current) != current.count - 1 { framed.broken = "a streamed message of the wrong length" }
                                framed.messages.append(current)
                                streaming = nil
                            }
                        case .refused(let id, let length):
                            guard streaming == nil else { framed.broken = "a message refused inside a streamed one"; return }
                            guard id == FrontendMessageID.bind else { framed.broken = "message type \(id) refused without cause"; return }
                            framed.messages.append(Array("refused \(id) of \(length) bytes".utf8))
                        }
                    }
                    input = ByteBuffer()
                } while retry
                if stream.bufferedBytes > maximumLength + 1 {
                    framed.broken = "\(stream.bufferedBytes) bytes held, over the \(maximumLength)-byte limit"
                }
            }
        } catch {
            framed.error = "\(error)"
        }
        return framed
    }

    private static func declaredLength(_ bytes: [UInt8]) -> Int? {
        ByteBuffer(bytes: bytes.prefix(5)).peekFrameHeader().map { Int($0.1) }
    }

    // MARK: Server frames

    /// The relay captures the bodies of ParameterStatus and ErrorResponse; so does the target.
    static let capturedIDs = [BackendMessageID.parameterStatus, BackendMessageID.errorResponse]

    /// The boundary scanner, in pieces, against a plain decoding of the whole input, message by message.
    static func backendFrames(_ input: [UInt8]) -> String? {
        var splitter = ReadSplitter(input)
        var expected: [Scanned] = []
        var expectedError: String?
        var whole = ByteBuffer(bytes: splitter.data)
        let start = whole.readerIndex
        do {
            while let message = try whole.readWireMessage() {
                guard message.bytes.readableBytes <= maximumLength + 1 else {
                    throw FrameDecodingError.messageTooLarge(length: message.bytes.readableBytes - 1, limit: maximumLength)
                }
                let body = message.body
                let captured = capturedIDs.contains(message.id) && body.readableBytes <= MessageBoundaryScanner.maximumCapturedLength
                expected.append(Scanned(id: message.id, end: whole.readerIndex - start, firstBodyByte: message.firstBodyByte,
                                        body: captured ? Array(body.readableBytesView) : nil))
            }
            if let (_, length) = whole.peekFrameHeader(), Int(length) > maximumLength {
                throw FrameDecodingError.messageTooLarge(length: Int(length), limit: maximumLength)
            }
        } catch {
            expectedError = "\(error)"
        }

        var scanner = MessageBoundaryScanner(maximumLength: maximumLength)
        scanner.capturedIDs = capturedIDs
        var scanned: [Scanned] = []
        var scanError: String?
        var base = 0
        var broken: String?
        do {
            for read in splitter.reads() {
                try scanner.scan(ByteBuffer(bytes: read)) { message in
                    let end = base + message.endOffset
                    if message.startedInThisBuffer != (end - message.length >= base) {
                        broken = "message ending at \(end) (\(message.length) bytes) says startedInThisBuffer \(message.startedInThisBuffer) for a read from \(base)"
                    }
                    scanned.append(Scanned(id: message.id, end: end, firstBodyByte: message.firstBodyByte,
                                           body: message.body.map { Array($0.readableBytesView) }))
                }
                base += read.count
            }
        } catch {
            scanError = "\(error)"
        }
        if let broken { return "backend frames: \(broken)" }
        guard scanned == expected, scanError == expectedError else {
            return "backend frames: scanned \(scanned.count) messages (error \(scanError ?? "none")), "
                + "decoded \(expected.count) (error \(expectedError ?? "none")); first difference at "
                + "\(zip(scanned, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(scanned.count, expected.count))"
        }
        return nil
    }

    private struct Scanned: Equatable {
        var id: UInt8
        /// Offset just past the message in the whole stream.
        var end: Int
        var firstBodyByte: UInt8?
        var body: [UInt8]?
    }

    // MARK: Frontend message bodies

    /// Every frame through every decoder the relay and the console use; what decodes must encode back
    /// to the same bytes, or the relay would forward something other than what the client sent.
    static func frontendMessages(_ input: [UInt8]) -> String? {
        var buffer = ByteBuffer(bytes: input)
        while let message = try? buffer.readWireMessage() {
            let original = Array(message.bytes.readableBytesView)
            _ = ErrorFields(decoding: message.body)
            _ = message.statementText
            if let parse = ParseMessage(message) {
                var encoded = ByteBuffer()
                ParseMessage.encode(statement: parse.statement, definition: parse.definition, into: &encoded)
                if Array(encoded.readableBytesView) != withID(FrontendMessageID.parse, original) {
                    return "Parse of statement \(parse.statement.debugDescription) encodes to other bytes"
                }
                if ParseMessage.namesStatement(WireMessage(id: FrontendMessageID.parse, bytes: encoded)) != !parse.statement.isEmpty {
                    return "namesStatement disagrees with the decoded name \(parse.statement.debugDescription)"
                }
            }
            if let bind = BindMessage(message) {
                var encoded = ByteBuffer()
                bind.encode(statement: bind.statement, into: &encoded)
                if Array(encoded.readableBytesView) != withID(FrontendMessageID.bind, original) {
                    return "Bind of portal \(bind.portal.debugDescription), statement \(bind.statement.debugDescription) encodes to other bytes"
                }
                if let parameters = bind.decodeParameters() {
                    let valueBytes = parameters.values.reduce(0) { $0 + 4 + ($1?.readableBytes ?? 0) }
                    if 2 + 2 * parameters.formats.count + 2 + valueBytes + 2 + 2 * parameters.resultFormats.count != bind.rest.readableBytes {
                        return "Bind parameters decoded from more or fewer bytes than the message holds"
                    }
                }
            }
            if let target = TargetMessage(message) {
                let id = message.id
                var encoded = ByteBuffer()
                target.encode(into: &encoded)
                var reread = encoded
                guard let again = try? reread.readWireMessage(), TargetMessage(again) == target else {
                    return "\(target) does not decode back to itself"
                }
                if Array(encoded.readableBytesView) != withID(id, original) {
                    return "\(target) encodes to other bytes"
                }
            }
            _ = ExecuteMessage(message)
        }
        return nil
    }

    /// The message's bytes with another type byte, for comparing an encoding under that type.
    private static func withID(_ id: UInt8, _ bytes: [UInt8]) -> [UInt8] {
        var bytes = bytes
        if !bytes.isEmpty { bytes[0] = id }
        return bytes
    }
}
