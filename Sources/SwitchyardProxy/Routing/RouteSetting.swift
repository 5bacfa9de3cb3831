/// A session's routing mode: `auto` sends provably read-only statements to replicas,
/// `primary` and `replica` force every statement to one side.
public enum RouteSetting: String, Sendable, Equatable, CaseIterable { case primary, replica, auto }
