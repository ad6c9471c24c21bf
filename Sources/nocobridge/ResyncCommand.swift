import ArgumentParser
import Bridge
import Foundation
import SyncCore

struct ResyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resync",
        abstract: "Reconcile both sides by externalId (after a restore, or any time); safe beside `run`.")

    @OptionGroup var options: ConnectionOptions

    @Flag(help: "Print the plan (counts and sample keys per category) and change nothing.")
    var dryRun = false

    @Option(help: "Also write the report as JSON to this file.")
    var json: String?

    @Option(help: "The side restored from a backup (nocodb or mongo): its differences from the last agreed state are restore loss, not edits.")
    var restored: String?

    @Flag(help: "Store a MongoDB stream position taken before the scan even if the stored one still works.")
    var resetStreamPosition = false

    func run() async throws {
        try await runReporting {
            let config = try options.configuration()
            var resyncOptions = ResyncOptions()
            resyncOptions.dryRun = dryRun
            resyncOptions.direction = config.direction
            resyncOptions.resetStreamPosition = resetStreamPosition
            if let restored {
                guard let side = Side(rawValue: restored) else {
                    throw ConfigurationError(setting: "--restored", message: "\"\(restored)\" is not nocodb or mongo")
                }
                resyncOptions.restored = side
            }
            let report = try Resync(configuration: config, options: resyncOptions, logger: makeLogger("nocobridge.resync"),
                                    progress: progressPrinter()).run()
            FileHandle.standardOutput.write(Data(report.text().utf8))
            if let json { try Data(report.json().utf8).write(to: URL(fileURLWithPath: json)) }
        }
    }
}

/// A progress bar on a terminal, plain periodic lines otherwise (logs, CI).
func progressPrinter() -> @Sendable (String) -> Void {
    let terminal = isatty(STDERR_FILENO) == 1
    return { line in
        FileHandle.standardError.write(Data((terminal ? "\r\u{1B}[K" + line : line + "\n").utf8))
    }
}
