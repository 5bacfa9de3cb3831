// swift-tools-version:6.2
import PackageDescription

/// `SWITCHYARD_FUZZ=1` (deploy/fuzz.sh, into its own `.build-fuzz`) adds the libFuzzer executable and
/// builds the project's own modules with coverage instrumentation and AddressSanitizer. Dependencies
/// stay uninstrumented: coverage should steer the fuzzer through our code, not SwiftNIO's.
let fuzzing = Context.environment["SWITCHYARD_FUZZ"] != nil
let fuzzFlags: [SwiftSetting] = fuzzing ? [.unsafeFlags(["-sanitize=fuzzer,address"])] : []

let package = Package(
    name: "Switchyard",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "switchyard", targets: ["switchyard"]),
        .library(name: "SwitchyardProxy", targets: ["SwitchyardProxy"]),
        .library(name: "PostgresWire", targets: ["PostgresWire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        // The Postgres wire protocol: framing and messages. Knows nothing about routing or pooling.
        .target(
            name: "PostgresWire",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: fuzzFlags
        ),
        // The proxy engine: sessions, backends, pooling, authentication, configuration.
        .target(
            name: "SwitchyardProxy",
            dependencies: [
                "PostgresWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                // Health and lag probes of the servers: a control-plane client, never on the relay path.
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: fuzzFlags
        ),
        // One harness per input-facing decoder, each checking its invariants; a plain library, so unit
        // tests replay the seed corpus and every past finding on each run (deploy/fuzz.sh drives libFuzzer).
        .target(
            name: "SwitchyardFuzzTargets",
            dependencies: [
                "SwitchyardProxy",
                "PostgresWire",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: fuzzFlags
        ),
        // Records the git commit for `switchyard --version`.
        .plugin(name: "BuildInfoPlugin", capability: .buildTool()),
        // Thin executable: CLI, config loading, lifecycle.
        .executableTarget(
            name: "switchyard",
            dependencies: [
                "SwitchyardProxy",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                // The CLI's status/pause/resume/reload talk to the admin console as an ordinary client.
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            plugins: ["BuildInfoPlugin"]
        ),
        .testTarget(
            name: "PostgresWireTests",
            dependencies: [
                "PostgresWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "SwitchyardProxyTests",
            dependencies: [
                "SwitchyardProxy",
                "PostgresWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "SwitchyardFuzzTargetsTests",
            dependencies: ["SwitchyardFuzzTargets"],
            exclude: ["Corpus"]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "SwitchyardProxy",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)

if fuzzing {
    package.targets.append(.executableTarget(
        name: "switchyard-fuzz",
        dependencies: ["SwitchyardFuzzTargets"],
        // No top-level code: the entry point below hands main over to libFuzzer's driver.
        swiftSettings: fuzzFlags + [.unsafeFlags(["-parse-as-library"])],
        linkerSettings: [.unsafeFlags(["-sanitize=fuzzer,address"])]
    ))
}
