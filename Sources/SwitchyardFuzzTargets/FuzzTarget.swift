/// The coverage-guided fuzz targets: every decoder that reads bytes a client, a server or an operator
/// controls. Each takes one input and checks invariants beyond "does not crash": decoders that see the
/// same bytes split differently must agree, since a TCP read can end anywhere.
///
/// libFuzzer drives them through `switchyard-fuzz` (deploy/fuzz.sh); unit tests replay the seed
/// corpus and every past finding. A broken invariant is returned, not trapped, so a test can report it;
/// the libFuzzer entry point traps on it, which makes libFuzzer save the input.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// Start-up packets (StartupMessage, SSLRequest, CancelRequest), read whole and in pieces.
    case startupPacket = "startup-packet"
    /// The client message stream as the relay frames it, streaming large messages, whole and in pieces.
    case clientStream = "client-stream"
    /// Server bytes through the boundary scanner the relay uses on every server read, whole and in pieces.
    case backendFrames = "backend-frames"
    /// Parse, Bind (and its parameters), Describe, Close, Execute and ErrorResponse bodies.
    case frontendMessages = "frontend-messages"
    /// The SQL lexer and statement classifier that route every statement.
    case statementClassifier = "statement-classifier"
    /// The configuration file parser and validator (operators' typos, RELOAD).
    case configuration
    /// The server side of a SCRAM-SHA-256 exchange: client-first and client-final messages.
    case scramExchange = "scram-exchange"
    /// An unauthenticated client's bytes through the whole login state machine (SCRAM and md5).
    case clientLogin = "client-login"
    /// The admin console: its command parser and its protocol responder, fed a client's byte stream.
    case adminConsole = "admin-console"

    /// Runs one input. Nil when every invariant held; otherwise what broke.
    public func run(_ input: [UInt8]) -> String? {
        switch self {
        case .startupPacket: WireTargets.startupPacket(input)
        case .clientStream: WireTargets.clientStream(input)
        case .backendFrames: WireTargets.backendFrames(input)
        case .frontendMessages: WireTargets.frontendMessages(input)
        case .statementClassifier: StatementTargets.classifier(input)
        case .configuration: ConfigurationTarget.run(input)
        case .scramExchange: AuthenticationTargets.scramExchange(input)
        case .clientLogin: AuthenticationTargets.clientLogin(input)
        case .adminConsole: AdminTargets.console(input)
        }
    }
}

/// How an input is cut into reads: its first byte seeds the cut points, the rest is the data. The same
/// input always makes the same reads, so a finding replays exactly.
struct ReadSplitter {
    let data: ArraySlice<UInt8>
    private var state: UInt64

    init(_ input: [UInt8]) {
        state = UInt64(input.first ?? 0) &* 0x9E37_79B9_7F4A_7C15 | 1
        data = input.dropFirst()
    }

    /// The data cut into reads of 1 to 16 bytes, mostly short: headers and bodies end mid-read.
    mutating func reads() -> [ArraySlice<UInt8>] {
        var reads: [ArraySlice<UInt8>] = []
        var start = data.startIndex
        while start < data.endIndex {
            let length = min(Int(next() % 16) + 1, data.endIndex - start)
            reads.append(data[start..<(start + length)])
            start += length
        }
        return reads
    }

    /// SplitMix64: a few instructions, and enough spread for cut points.
    private mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
