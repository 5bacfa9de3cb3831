import Foundation
import SwitchyardFuzzTargets
import Testing

/// Every fuzz target over its seed corpus (captured from psql, pgbench and psycopg traffic) and over
/// every input a fuzzing run ever found (kept beside the seeds, named `finding-*`): each is a
/// regression test that runs on every CI run, without libFuzzer.
@Suite struct CorpusReplayTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Corpus")

    static func inputs(_ target: FuzzTarget) throws -> [(name: String, bytes: [UInt8])] {
        let directory = corpus.appendingPathComponent(target.rawValue)
        return try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted().map { name in
            (name, Array(try Data(contentsOf: directory.appendingPathComponent(name))))
        }
    }

    @Test(arguments: FuzzTarget.allCases)
    func everySeedAndFindingHoldsTheInvariants(_ target: FuzzTarget) throws {
        let inputs = try Self.inputs(target)
        #expect(inputs.count >= 3, "\(target.rawValue) has a seed corpus")
        for input in inputs {
            #expect(target.run(input.bytes) == nil, "\(target.rawValue)/\(input.name)")
        }
    }
}
