import NIOCore

/// The untyped packets a client may send before (and instead of) its StartupMessage.
public enum StartupPacket: Sendable, Equatable {
    case startup(StartupMessage)
    case sslRequest
    case gssEncryptionRequest
    case cancel(CancelRequest)
}

public struct StartupMessage: Sendable, Equatable {
    public static let protocolVersion3: Int32 = 196_608 // 3.0

    /// Parameters in the order the client sent them (`user`, `database`, `options`, GUCs…).
    public var parameters: [(String, String)]

    public init(parameters: [(String, String)]) {
        self.parameters = parameters
    }

    public subscript(name: String) -> String? {
        parameters.first(where: { $0.0 == name })?.1
    }

    public static func == (lhs: StartupMessage, rhs: StartupMessage) -> Bool {
        lhs.parameters.elementsEqual(rhs.parameters, by: { $0 == $1 })
    }

    /// Encodes the message as a client (Switchyard) sends it to a backend.
    public func encode(into buffer: inout ByteBuffer) {
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(Int32(0))
        buffer.writeInteger(Self.protocolVersion3)
        for (name, value) in parameters {
            buffer.writeNullTerminatedString(name)
            buffer.writeNullTerminatedString(value)
        }
        buffer.writeInteger(UInt8(0))
        buffer.setInteger(Int32(buffer.writerIndex - lengthIndex), at: lengthIndex)
    }
}

/// A CancelRequest: the process ID and secret key that identify the session to cancel.
public struct CancelRequest: Sendable, Equatable, Hashable {
    public static let code: Int32 = 80_877_102
    public var processID: Int32
    public var secretKey: Int32

    public init(processID: Int32, secretKey: Int32) {
        self.processID = processID
        self.secretKey = secretKey
    }

    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeInteger(Int32(16))
        buffer.writeInteger(Self.code)
        buffer.writeInteger(processID)
        buffer.writeInteger(secretKey)
    }
}

public enum StartupPacketError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidLength(Int32)
    case unsupportedProtocolVersion(major: Int, minor: Int)
    case malformedStartupMessage
    /// Bytes followed an SSLRequest or GSSENCRequest in the same read: they were sent in
    /// plaintext before the handshake and must not be trusted (CVE-2021-23214).
    case unexpectedDataAfterEncryptionRequest

    public var description: String {
        switch self {
        case .invalidLength(let length): return "invalid startup packet length \(length)"
        case .unsupportedProtocolVersion(let major, let minor):
            return "unsupported frontend protocol \(major).\(minor): server supports 3.0 to 3.0"
        case .malformedStartupMessage: return "invalid startup packet layout: expected terminator as last byte"
        case .unexpectedDataAfterEncryptionRequest: return "received unencrypted data after SSL request"
        }
    }
}

/// Decodes the untyped start-up packets (`Int32 length`, `Int32 code`, payload).
public struct StartupPacketDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = StartupPacket
    static let sslRequestCode: Int32 = 80_877_103
    static let gssEncryptionRequestCode: Int32 = 80_877_104
    /// Postgres' own limit on a start-up packet.
    public static let maximumLength = 10_000

    public init() {}

    public mutating func decode(buffer: inout ByteBuffer) throws -> StartupPacket? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return nil }
        guard length >= 8, length <= Self.maximumLength else { throw StartupPacketError.invalidLength(length) }
        guard buffer.readableBytes >= Int(length) else { return nil }
        var packet = buffer.readSlice(length: Int(length))!
        packet.moveReaderIndex(forwardBy: 4)
        let code = packet.readInteger(as: Int32.self)!
        switch code {
        case Self.sslRequestCode, Self.gssEncryptionRequestCode:
            guard buffer.readableBytes == 0 else { throw StartupPacketError.unexpectedDataAfterEncryptionRequest }
            return code == Self.sslRequestCode ? .sslRequest : .gssEncryptionRequest
        case CancelRequest.code:
            guard let pid = packet.readInteger(as: Int32.self), let key = packet.readInteger(as: Int32.self) else {
                throw StartupPacketError.invalidLength(length)
            }
            return .cancel(CancelRequest(processID: pid, secretKey: key))
        default:
            let major = Int(code >> 16), minor = Int(code & 0xFFFF)
            guard major == 3, minor == 0 else {
                throw StartupPacketError.unsupportedProtocolVersion(major: major, minor: minor)
            }
            var parameters: [(String, String)] = []
            while true {
                guard let name = packet.readNullTerminatedString() else { throw StartupPacketError.malformedStartupMessage }
                if name.isEmpty { break }
                guard let value = packet.readNullTerminatedString() else { throw StartupPacketError.malformedStartupMessage }
                parameters.append((name, value))
            }
            guard packet.readableBytes == 0 else { throw StartupPacketError.malformedStartupMessage }
            return .startup(StartupMessage(parameters: parameters))
        }
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> StartupPacket? {
        try decode(buffer: &buffer)
    }
}
