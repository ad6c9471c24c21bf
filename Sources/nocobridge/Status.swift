import ArgumentParser
import Bridge
import Foundation

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show per-table backlog, dead letters and row counts on both sides, read from the databases.")

    @OptionGroup var options: ConnectionOptions

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        try await runReporting {
            let config = try options.configuration()
            let report = try StatusReport.collect(configuration: config)
            FileHandle.standardOutput.write(Data((json ? report.json() : report.table()).utf8))
        }
    }
}
