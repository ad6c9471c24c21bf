import ArgumentParser
import Bridge
import Foundation
import Logging
import NocoDBMeta

struct Provision: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the seed's tables, fields and manager views in NocoDB through its meta API, install the triggers, and apply a staff access plan.",
        discussion: """
            Idempotent: what exists (by title) is left alone, so a second run changes nothing. Fields
            are created through the API because NocoDB does not register columns added with DDL on
            its default base. Needs NOCODB_URL, NOCODB_TOKEN and NOCODB_BASE.
            --access FILE (deploy/access.example.yaml) invites people with a base role, hides views
            from roles and shares views as links; passwords come from the environment variables the
            plan names and are never printed. Links use NOCODB_PUBLIC_URL when NocoDB is reached at
            another address than staff use (as from inside a Compose network).
            """)

    @OptionGroup var options: ConnectionOptions

    @Flag(help: "Print the calls it would make and change nothing.")
    var dryRun = false

    @Option(name: .customLong("access"), help: "An access plan (YAML): people and roles, views per role, shared links.")
    var accessFile: String?

    @Flag(help: "With --access: set every planned share password again. NocoDB releases that keep only a hash of it cannot show whether it is the planned one, so without this flag such a password is left as it is.")
    var resetSharePasswords = false

    func run() async throws {
        try await runReporting {
            // Without a plan there is no password to set: accepted, the flag would look done.
            if resetSharePasswords && accessFile == nil {
                throw ConfigurationError(setting: "--reset-share-passwords",
                                         message: "needs --access FILE: it sets again the share passwords an access plan names")
            }
            let env = ProcessInfo.processInfo.environment
            guard let client = try NocoDBSettings.client(env) else {
                throw ConfigurationError(setting: "NOCODB_URL", message: "provision needs NOCODB_URL, NOCODB_TOKEN and NOCODB_BASE")
            }
            // Every mistake in the plan is found before anything changes.
            var access: AccessPlan?
            if let path = accessFile {
                do { access = try AccessPlan.load(path: path) } catch let error as AccessPlanError {
                    throw ConfigurationError(setting: "--access", message: error.message)
                }
            }
            let passwords = AccessCommand.passwords(for: access, env)
            let linkBase = try NocoDBSettings.publicURL(env) ?? client.configuration.displayURL
            let logger = makeLogger("nocobridge.provision")
            let settings = try options.configuration(requireMongo: !dryRun, discover: false)
            let titles = Set(settings.tables.map(\.table))
            let wanted = SeedModel.tables.filter { titles.contains($0.title) }
            let base = try Discovery(client: client).base()
            let provisioner = Provisioner(client: client, logger: logger)
            let plan = ProvisionPlanner.plan(wanted, current: try provisioner.snapshot(base: base.id, wanted: wanted))
            let accessRun = try access.map { accessPlan in
                try AccessCommand(client: client, logger: logger, base: base, plan: accessPlan, passwords: passwords,
                                  resetSharePasswords: resetSharePasswords, linkBase: linkBase,
                                  pendingViews: AccessCommand.pending(plan: plan))
            }
            var out: [String] = []
            if plan.isEmpty {
                out.append("NocoDB base \"\(base.title)\" (\(base.id)) already has every table, field and view; nothing to change.")
            } else {
                out.append("\(dryRun ? "Would make" : "Making") \(plan.count) change(s) in NocoDB base \"\(base.title)\" (\(base.id)):")
                out += plan.map { "  \($0)" }
            }
            if dryRun {
                out.append("Then: nocobridge install (triggers on \(wanted.map(\.title).joined(separator: ", "))).")
                if let accessRun { out += accessRun.report(dryRun: true) }
                write(out)
                return
            }
            write(out)
            try provisioner.apply(plan, base: base.id)
            let config = try options.configuration()
            try Installer(configuration: config, logger: logger).install()
            write(["Installed the triggers on \(config.tables.map(\.qualifiedName).joined(separator: ", "))."])
            if let accessRun { write(try accessRun.applied()) }
        }
    }

    private func write(_ lines: [String]) {
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    }
}

/// The access part of `provision --access`: planned against what NocoDB has (plus the views
/// this run creates), applied after the tables and views exist, reported with its links.
struct AccessCommand {
    let client: NocoDBMetaClient
    let logger: Logger
    let base: MetaBase
    let plan: AccessPlan
    let passwords: [String: String]
    let resetSharePasswords: Bool
    /// Where staff reach NocoDB (`NOCODB_PUBLIC_URL`, else `NOCODB_URL`), for the links.
    let linkBase: String
    let provisioner: AccessProvisioner
    let initial: AccessPlanner.Result
    let snapshot: AccessSnapshot

    init(client: NocoDBMetaClient, logger: Logger, base: MetaBase, plan: AccessPlan, passwords: [String: String],
         resetSharePasswords: Bool, linkBase: String, pendingViews: [AccessSnapshot.View]) throws {
        self.client = client
        self.logger = logger
        self.base = base
        self.plan = plan
        self.passwords = passwords
        self.resetSharePasswords = resetSharePasswords
        self.linkBase = linkBase
        provisioner = AccessProvisioner(client: client, logger: logger)
        var snapshot = try provisioner.snapshot(base: base.id)
        // Provisioning creates only what its table lacks, so none of these exists yet, even
        // where another table has a view of the same title.
        snapshot.views += pendingViews
        self.snapshot = snapshot
        do { initial = try AccessPlanner.plan(plan, current: snapshot, passwords: passwords, resetSharePasswords: resetSharePasswords) } catch {
            throw ConfigurationError(setting: "--access", message: error.message)
        }
    }

    /// Views (and the tables' default grids) that this run's provisioning creates.
    static func pending(plan: [ProvisionStep]) -> [AccessSnapshot.View] {
        var views: [AccessSnapshot.View] = []
        for step in plan {
            switch step {
            case .createTable(let t): views.append(.init(title: t.title, id: nil, type: MetaView.grid, tableID: nil))
            case .createView(_, let v): views.append(.init(title: v.title, id: nil, type: v.kind, tableID: nil))
            default: break
            }
        }
        return views
    }

    static func passwords(for plan: AccessPlan?, _ env: [String: String]) -> [String: String] {
        var values: [String: String] = [:]
        for share in plan?.shares ?? [] {
            if let name = share.passwordEnv, let value = env[name] { values[name] = value }
        }
        return values
    }

    func report(dryRun: Bool) -> [String] {
        var out: [String] = []
        if initial.steps.isEmpty {
            out.append("Access: people, roles, view visibility and shares already as planned; nothing to change.")
        } else {
            out.append("Access: \(dryRun ? "would make" : "making") \(initial.calls.count) call(s):")
            out += initial.calls.map { "  \($0)" }
        }
        out += initial.notes.map { "Note: \($0)" }
        if dryRun {
            out += links(snapshot).map { "  \($0)" }
        }
        return out
    }

    /// Re-plans against what NocoDB has now (its views exist by then), applies, and reports
    /// the people invited and every planned share's link.
    func applied() throws -> [String] {
        let now = try provisioner.snapshot(base: base.id)
        let result: AccessPlanner.Result
        do { result = try AccessPlanner.plan(plan, current: now, passwords: passwords, resetSharePasswords: resetSharePasswords) } catch {
            throw ConfigurationError(setting: "--access", message: error.message)
        }
        var out: [String] = []
        if result.steps.isEmpty {
            out.append("Access: people, roles, view visibility and shares already as planned; nothing to change.")
        } else {
            out.append("Access: making \(result.calls.count) call(s):")
            out += result.calls.map { "  \($0)" }
        }
        out += result.notes.map { "Note: \($0)" }
        try provisioner.apply(result.steps, base: base.id, passwords: passwords)
        for step in result.steps {
            guard case .invite(let email, let role) = step else { continue }
            if now.users[email] != nil {
                out.append("Added \(email), already a user of this NocoDB, to the base as \(role).")
            } else {
                out.append("Invited \(email) as \(role) (NocoDB e-mails the invitation when it has an e-mail plugin; otherwise copy it from Team & Settings).")
            }
        }
        out += links(try provisioner.snapshot(base: base.id))
        return out
    }

    private func links(_ snapshot: AccessSnapshot) -> [String] {
        guard !plan.shares.isEmpty else { return [] }
        var out = ["Shared links:"]
        for share in plan.shares {
            let view = snapshot.views.first { $0.title == share.view }
            let lock = share.passwordEnv.map { " (password from $\($0))" } ?? ""
            if let uuid = view?.shareUUID, let view {
                out.append("  \(share.view): \(AccessPlanner.link(base: linkBase, type: view.type, uuid: uuid))\(lock)")
            } else {
                out.append("  \(share.view): (link once shared)\(lock)")
            }
        }
        return out
    }
}
