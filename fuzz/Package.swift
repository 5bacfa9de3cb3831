// swift-tools-version:6.2
// Coverage-guided fuzzing of Switchyard's pure decoders and parsers with libFuzzer. A package of its
// own, because it only links with `-sanitize=fuzzer`; `fuzz/run.sh` builds and runs it.
import Foundation
import PackageDescription

/// SwiftPM names a path dependency after its folder, which differs between checkouts.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let rootIdentity = root.lastPathComponent.lowercased()

let package = Package(
    name: "SwitchyardFuzz",
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
    ],
    targets: [
        .executableTarget(
            name: "switchyard-fuzz",
            dependencies: [
                .product(name: "PostgresWire", package: rootIdentity),
                .product(name: "SwitchyardProxy", package: rootIdentity),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
    ]
)
