import Foundation
import SwitchyardFuzzTargets

// libFuzzer's entry point, built only with SWITCHYARD_FUZZ=1 (deploy/fuzz.sh). One binary serves every
// target; SWITCHYARD_FUZZ_TARGET names the one to run.

private let target: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["SWITCHYARD_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        fatalError("SWITCHYARD_FUZZ_TARGET must be one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")); got \"\(name)\"")
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    if let broken = target.run(input) {
        // A trap makes libFuzzer save the input as a crash artifact.
        fatalError("\(target.rawValue): \(broken)")
    }
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// SwiftPM links an executable's `main` to `<module>_main`; libFuzzer's driver takes over from there.
@_cdecl("switchyard_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { data, size in fuzzOneInput(data, size) }
}

