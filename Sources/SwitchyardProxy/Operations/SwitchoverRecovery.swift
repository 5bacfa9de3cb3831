import Logging
import PostgresNIO

/// A switchover this process did not live to finish: `state_file` still names the server it was
/// switching to. Before any client is served, the target's own state decides: promoted, the switch
/// completes forward; still a standby and never asked to promote, the old primary is un-fenced; anything
/// else is left for an operator, with the old primary (read-only while fenced) in force, so no write
/// ever reaches two primaries.
enum SwitchoverRecovery {
    enum Decision: Equatable {
        case completeForward
        case rollBack
        case undecided(String)
    }

    /// `targetInRecovery`: what the target answered, or why it could not be asked.
    static func decide(step: SwitchoverStateFile.Step, targetInRecovery: Result<Bool, ProbeFailure>) -> Decision {
        switch (targetInRecovery, step) {
        case (.success(false), _): .completeForward
        case (.success(true), .fencing): .rollBack
        case (.success(true), .promoting):
            .undecided("promotion was requested but the target is still in recovery; it may yet become a primary")
        case (.failure(let failure), _): .undecided("the target cannot be asked: \(failure.description)")
        }
    }

    struct ProbeFailure: Error, CustomStringConvertible, Equatable { var description: String }

    static func resolve(_ runtime: ProxyRuntime, logger: Logger) async {
        let configuration = runtime.configuration
        guard let path = configuration.switchover.stateFile, let state = try? SwitchoverStateFile.read(path),
              let targetName = state.switchingTo, let step = state.step else { return }
        let topology = runtime.topology
        guard let target = topology.server(named: targetName), let user = configuration.switchoverUser else {
            logger.critical("state_file records an unfinished switchover that cannot be checked (target or switchover_user missing); the old primary stays in force and may be fenced (read-only)",
                            metadata: ["state_file": "\(path)", "target": "\(targetName)"])
            return
        }
        var logger = logger
        logger[metadataKey: "switchover_target"] = "\(targetName)"
        logger[metadataKey: "old_primary"] = "\(state.primary)"
        let eventLoop = runtime.allShards[0].eventLoop
        let answer: Result<Bool, ProbeFailure>
        do {
            let inRecovery = try await ControlConnection.with(target, as: user, configuration: configuration, on: eventLoop, logger: logger) { connection in
                var inRecovery: Bool?
                for try await value in try await connection.query("select pg_is_in_recovery()", logger: logger).decode(Bool.self) { inRecovery = value }
                return inRecovery
            }
            answer = inRecovery.map { .success($0) } ?? .failure(ProbeFailure(description: "no answer"))
        } catch {
            answer = .failure(ProbeFailure(description: ReplicaMonitor.describe(error)))
        }
        switch decide(step: step, targetInRecovery: answer) {
        case .completeForward:
            let switched = runtime.changeTopology { $0.switchedOver(to: targetName) ?? $0 }
            do {
                try SwitchoverStateFile(primary: targetName, fenced: switched.fenced.sorted()).write(to: path)
            } catch {
                logger.error("the completed switchover could not be recorded", metadata: ["error": "\(error)"])
            }
            logger.notice("an interrupted switchover is completed: the target was promoted, so it is the primary")
        case .rollBack:
            do {
                try await ControlConnection.with(topology.primary, as: user, configuration: configuration, on: eventLoop, logger: logger) { old in
                    try await Switchover.unfence(old, logger: logger)
                }
                try SwitchoverStateFile(primary: state.primary, fenced: state.fenced).write(to: path)
                logger.notice("an interrupted switchover is rolled back: the target was never promoted, the old primary is un-fenced")
            } catch {
                logger.critical("an interrupted switchover could not be rolled back; the old primary may be fenced (read-only)",
                                metadata: ["error": "\(error)",
                                           "fix": "on the old primary: \(Switchover.unfenceByHand) then restart or retry"])
            }
        case .undecided(let why):
            logger.critical("an interrupted switchover is left undecided; the old primary stays in force and may be fenced (read-only)", metadata: [
                "reason": "\(why)", "state_file": "\(path)",
                "fix": "if the target is a primary now, write its name as primary in state_file (and drop switching_to); otherwise un-fence the old primary (\(Switchover.unfenceByHand)) and drop switching_to",
            ])
        }
    }
}
