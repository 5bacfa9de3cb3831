import Testing

/// Every integration test hangs off this suite: it is skipped without SWITCHYARD_INTEGRATION,
/// serialized (the tests share one cluster, and some measure this process's memory), and each
/// test is bounded in time.
@Suite(.integration, .serialized, .timeLimit(.minutes(3)))
struct IntegrationTests {
    /// With SWITCHYARD_INTEGRATION set, a missing cluster fails here (and in every proxy start), never skips.
    @Test func clusterIsReachable() throws {
        try TestEnvironment.requirePostgres()
    }
}
