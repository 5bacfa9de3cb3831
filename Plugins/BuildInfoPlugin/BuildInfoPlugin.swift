import Foundation
import PackagePlugin

/// Writes `BuildInfo.swift` with the git commit the executable is built from, for
/// `switchyard --version`. A prebuild command: it runs on every build, and rewrites the file only
/// when the commit (or the dirty mark) changed, so an unchanged tree recompiles nothing.
@main
struct BuildInfoPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let directory = context.pluginWorkDirectoryURL
        let output = directory.appending(path: "BuildInfo.swift")
        let script = #"""
            commit=$(git -C "$1" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
            if [ "$commit" != unknown ] && ! git -C "$1" diff --quiet HEAD -- Sources Package.swift 2>/dev/null; then commit="$commit-dirty"; fi
            printf 'let switchyardBuildCommit = "%s"\n' "$commit" > "$2.tmp"
            if cmp -s "$2.tmp" "$2"; then rm -f "$2.tmp"; else mv "$2.tmp" "$2"; fi
            """#
        return [.prebuildCommand(
            displayName: "Recording the build commit",
            executable: URL(fileURLWithPath: "/bin/sh"),
            arguments: ["-c", script, "sh", context.package.directoryURL.path, output.path],
            outputFilesDirectory: directory)]
    }
}
