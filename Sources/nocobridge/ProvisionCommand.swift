import ArgumentParser
import Bridge
import Foundation
import NocoDBMeta

struct Provision: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the seed's tables, fields and manager views in NocoDB through its meta API, then install the triggers.",
        discussion: """
            Idempotent: what exists (by title) is left alone, so a second run changes nothing. Fields
            are created through the API because NocoDB does not register columns added with DDL on
            its default base. Needs NOCODB_URL, NOCODB_TOKEN and NOCODB_BASE.
            """)

    @OptionGroup var options: ConnectionOptions

    @Flag(help: "Print the calls it would make and change nothing.")
    var dryRun = false

    func run() async throws {
        try await runReporting {
            let env = ProcessInfo.processInfo.environment
            guard let client = try NocoDBSettings.client(env) else {
                throw ConfigurationError(setting: "NOCODB_URL", message: "provision needs NOCODB_URL, NOCODB_TOKEN and NOCODB_BASE")
            }
            let logger = makeLogger("nocobridge.provision")
            let settings = try options.configuration(requireMongo: !dryRun, discover: false)
            let titles = Set(settings.tables.map(\.table))
            let wanted = SeedModel.tables.filter { titles.contains($0.title) }
            let base = try Discovery(client: client).base()
            let provisioner = Provisioner(client: client, logger: logger)
            let plan = ProvisionPlanner.plan(wanted, current: try provisioner.snapshot(base: base.id, wanted: wanted))
            var out: [String] = []
            if plan.isEmpty {
                out.append("NocoDB base \"\(base.title)\" (\(base.id)) already has every table, field and view; nothing to change.")
            } else {
                out.append("\(dryRun ? "Would make" : "Making") \(plan.count) change(s) in NocoDB base \"\(base.title)\" (\(base.id)):")
                out += plan.map { "  \($0)" }
            }
            if dryRun {
                out.append("Then: nocobridge install (triggers on \(wanted.map(\.title).joined(separator: ", "))).")
                FileHandle.standardOutput.write(Data((out.joined(separator: "\n") + "\n").utf8))
                return
            }
            FileHandle.standardOutput.write(Data((out.joined(separator: "\n") + "\n").utf8))
            try provisioner.apply(plan, base: base.id)
            let config = try options.configuration()
            try Installer(configuration: config, logger: logger).install()
            FileHandle.standardOutput.write(Data("Installed the triggers on \(config.tables.map(\.qualifiedName).joined(separator: ", ")).\n".utf8))
        }
    }
}
