import Logging
import Synchronization

/// The log level in force, shared by every logger of the process, so RELOAD can change
/// `log_level` without a restart (swift-log's bootstrap happens once).
public final class LogLevelSwitch: Sendable {
    private let index: Atomic<Int>

    public init(_ level: Logger.Level) {
        index = Atomic(Logger.Level.allCases.firstIndex(of: level) ?? 0)
    }

    public var level: Logger.Level {
        get { Logger.Level.allCases[index.load(ordering: .relaxed)] }
        set { index.store(Logger.Level.allCases.firstIndex(of: newValue) ?? 0, ordering: .relaxed) }
    }
}

/// A log handler whose level follows a ``LogLevelSwitch``; the lines themselves are written by
/// the wrapped handler (standard error in the executable).
public struct SwitchedLevelLogHandler<Wrapped: LogHandler>: LogHandler {
    private var wrapped: Wrapped
    private let levelSwitch: LogLevelSwitch

    public init(_ wrapped: Wrapped, levelSwitch: LogLevelSwitch) {
        self.wrapped = wrapped
        self.levelSwitch = levelSwitch
        self.wrapped.logLevel = .trace
    }

    public var logLevel: Logger.Level {
        get { levelSwitch.level }
        // Per-logger levels are not used; the process-wide switch decides.
        set {}
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { wrapped.metadataProvider }
        set { wrapped.metadataProvider = newValue }
    }

    public var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue }
    }

    public func log(event: LogEvent) {
        wrapped.log(event: event)
    }
}
