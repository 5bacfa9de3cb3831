import Foundation
import NIOCore
import PostgresWire
import SwitchyardProxy

/// The code under fuzz, chosen with FUZZ_TARGET (one binary, one corpus folder per target):
/// - `wire`: client and server framing (FrameDecoder, StartupPacketDecoder, ClientMessageStream,
///   MessageBoundaryScanner, ErrorFields) over the input cut at a point the input chooses;
/// - `sql`: the statement classifier, and the invariant that the relay's first-word check never skips a
///   statement with a session effect (it would miss a LISTEN or a CREATE TEMP);
/// - `config`: the INI configuration parser;
/// - `scram`: the server side of a SCRAM exchange fed client messages.
let target = ProcessInfo.processInfo.environment["FUZZ_TARGET"] ?? "wire"
let classifier = StatementClassifier()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    switch target {
    case "wire": fuzzWire(bytes)
    case "sql": fuzzSQL(bytes)
    case "config": _ = try? ProxyConfiguration.parse(String(decoding: bytes, as: UTF8.self), fileName: "fuzz.conf")
    case "scram": fuzzSCRAM(bytes)
    default: fatalError("unknown FUZZ_TARGET \(target): wire, sql, config or scram")
    }
    return 0
}

func fuzzWire(_ bytes: [UInt8]) {
    // The first byte picks where the stream is cut in two reads.
    let cut = bytes.isEmpty ? 0 : Int(bytes[0]) % max(1, bytes.count)
    let parts = [ByteBuffer(bytes: bytes[..<cut]), ByteBuffer(bytes: bytes[cut...])]
    var frames = NIOSingleStepByteToMessageProcessor(FrameDecoder(maximumLength: 1 << 16))
    var startup = NIOSingleStepByteToMessageProcessor(StartupPacketDecoder())
    var stream = ClientMessageStream(maximumLength: 1 << 16, streamingThreshold: 512)
    var scanner = MessageBoundaryScanner(maximumLength: 1 << 16)
    scanner.capturedIDs = [BackendMessageID.parameterStatus, BackendMessageID.errorResponse]
    var framesFailed = false, startupFailed = false, streamFailed = false, scannerFailed = false
    for part in parts {
        if !framesFailed {
            do { try frames.process(buffer: part) { frame in _ = ErrorFields(decoding: frame.body) } } catch { framesFailed = true }
        }
        if !startupFailed {
            do { try startup.process(buffer: part) { _ in } } catch { startupFailed = true }
        }
        if !streamFailed {
            do { try stream.process(part, mayStream: { $0 == FrontendMessageID.copyData }) { _ in } } catch { streamFailed = true }
        }
        if !scannerFailed {
            do {
                try scanner.scan(part) { message in
                    if let body = message.body { _ = ErrorFields(decoding: body); _ = BackendMessage.decodeParameterStatus(body) }
                }
            } catch { scannerFailed = true }
        }
    }
}

func fuzzSQL(_ bytes: [UInt8]) {
    let classification = bytes.withUnsafeBytes { classifier.classify($0) }
    if classification.sessionEffect != nil || classification.pinsServerConnection {
        guard SessionEffect.mayBeginStatement(ByteBuffer(bytes: bytes)) else {
            fatalError("the first-word check skips a statement with a session effect: \(String(decoding: bytes, as: UTF8.self).debugDescription)")
        }
    }
}

func fuzzSCRAM(_ bytes: [UInt8]) {
    let split = bytes.firstIndex(of: 0) ?? bytes.count
    let binding: SCRAMServerExchange.ChannelBinding = [.notOffered, .offered, .selected(tlsServerEndPoint: [1, 2, 3])][bytes.count % 3]
    var exchange = SCRAMServerExchange(secret: nil, serverNonce: "fuzznonce0123456789abcd", channelBinding: binding)
    if case .success = exchange.receiveClientFirst(Array(bytes[..<split])), split < bytes.count {
        _ = exchange.receiveClientFinal(Array(bytes[(split + 1)...]))
    }
}

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

/// SwiftPM links an executable's `main` to this symbol; libFuzzer's own driver takes over from here.
@_cdecl("switchyard_fuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { data, size in fuzzOne(data, size) }
}
