import ArgumentParser
import Bridge
import BuildInfo
import Foundation
import Logging
import NocoDBMeta
import ServiceLifecycle
import StatusServer

@main
struct NocoBridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nocobridge",
        abstract: "Keeps NocoDB (PostgreSQL) and MongoDB in sync, both ways.",
        version: BuildInfo.description,
        subcommands: [Run.self, Install.self, Provision.self, Uninstall.self, ResyncCommand.self, DLQCommand.self,
                      ConflictsCommand.self, HistoryCommand.self, SQL.self, Status.self]
    )
}

/// Runs a subcommand body, turning failures into one clear line and an exit code:
/// 2 for configuration mistakes, 1 for everything else. No stack traces.
func runReporting(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ConfigurationError {
        FileHandle.standardError.write(Data("nocobridge: \(error)\n".utf8))
        throw ExitCode(2)
    } catch let error as NocoDBError {
        FileHandle.standardError.write(Data("nocobridge: \(error)\n".utf8))
        switch error {
        case .unauthorized, .notFound: throw ExitCode(2)
        default: throw ExitCode(1)
        }
    } catch let error as TableCatalog.Problem {
        // A configured table that does not exist or lacks the common fields: fix the settings
        // or the base, not the servers.
        FileHandle.standardError.write(Data("nocobridge: \(error)\n".utf8))
        throw ExitCode(2)
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("nocobridge: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

func makeLogger(_ label: String) -> Logger {
    var logger: Logger
    if ProcessInfo.processInfo.environment["LOG_FORMAT"]?.lowercased() == "json" {
        logger = Logger(label: label, factory: { JSONLogHandler(label: $0) })
    } else {
        logger = Logger(label: label)
    }
    let level = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) }
    logger.logLevel = level ?? .info
    return logger
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the bridge until SIGINT/SIGTERM.")

    @OptionGroup var options: ConnectionOptions

    @Option(help: "What to do when the stored MongoDB position or the logical replication slot is no longer usable: stop (default) or resync.")
    var onHistoryLost: HistoryLostAction = .stop

    @Option(help: "Seconds SIGTERM may take to finish the batch in flight before the bridge is cancelled.")
    var shutdownTimeout: Int = 10

    enum HistoryLostAction: String, ExpressibleByArgument {
        case stop, resync
    }

    func run() async throws {
        try await runReporting {
            let config = try options.configuration()
            let logger = makeLogger("nocobridge")
            let metrics = MetricsExport()
            while true {
                let bridge = BridgeService(configuration: config, logger: logger, metrics: metrics.factory)
                let env = ProcessInfo.processInfo.environment
                var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: bridge)]
                let address = env["STATUS_ADDR"] ?? "127.0.0.1:8787"
                if address != "off" {
                    var status = try StatusServerConfiguration(address: address, token: env["STATUS_TOKEN"])
                    if let raw = env["STATUS_SAMPLE_SECONDS"], !raw.isEmpty {
                        guard let seconds = Double(raw), seconds >= 0.1, seconds <= 3600 else {
                            throw ConfigurationError(setting: "STATUS_SAMPLE_SECONDS", message: "\"\(raw)\" is not a number of seconds between 0.1 and 3600")
                        }
                        status.sampleInterval = .milliseconds(Int(seconds * 1000))
                    }
                    let http = StatusServer.application(configuration: status, bridge: bridge, metrics: metrics, logger: logger)
                    services.append(.init(service: NonFatalService(http, name: "status endpoint", logger: logger)))
                }
                if config.historyDays > 0 {
                    services.append(.init(service: HistoryPruneService(postgresURL: config.postgresURL, days: config.historyDays, logger: logger)))
                }
                var groupConfiguration = ServiceGroupConfiguration(services: services, logger: logger)
                groupConfiguration.gracefulShutdownSignals = [.sigterm, .sigint]
                groupConfiguration.maximumGracefulShutdownDuration = .seconds(shutdownTimeout)
                groupConfiguration.maximumCancellationDuration = .seconds(2)
                let group = ServiceGroup(configuration: groupConfiguration)
                do {
                    try bridge.preflightWaitingForServers()
                    try SchemaCheck.requireCurrent(configuration: config)
                    try await group.run()
                    return
                } catch let lost as SlotLost where onHistoryLost == .resync {
                    logger.warning("logical replication slot lost; resyncing before streaming again", metadata: ["error": "\(lost)"])
                    let report = try Resync(configuration: config, options: ResyncOptions(), logger: logger, progress: progressPrinter()).run()
                    FileHandle.standardError.write(Data(report.text().utf8))
                } catch let lost as MongoHistoryLost where onHistoryLost == .resync {
                    logger.warning("MongoDB history lost; resyncing before streaming again", metadata: ["error": "\(lost)"])
                    var resync = ResyncOptions()
                    resync.resetStreamPosition = true
                    let report = try Resync(configuration: config, options: resync, logger: logger, progress: progressPrinter()).run()
                    FileHandle.standardError.write(Data(report.text().utf8))
                }
            }
        }
    }
}

struct Install: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Install the nocobridge schema, attach triggers to the synced tables, create MongoDB indexes.")

    @OptionGroup var options: ConnectionOptions

    @Flag(help: "Do not create the MongoDB key index.")
    var noMongoIndex = false

    @Option(help: "Grant this existing login role exactly what `nocobridge run` needs (run the bridge as it, not as an owner).")
    var grantTo: String?

    @Flag(help: "SYNC_CAPTURE=logical: set REPLICA IDENTITY FULL on the synced tables, so updates and deletes carry the old row (a hard delete needs its externalId). Costs some WAL per update.")
    var replicaIdentityFull = false

    @Flag(help: "SYNC_CAPTURE=logical: leave no trigger at all on the synced tables (and no unique index on externalId, so INSERT … ON CONFLICT (\"externalId\") has nothing to arbitrate on, as without the bridge).")
    var noKeyTrigger = false

    func run() async throws {
        try await runReporting {
            var config = try options.configuration(requireMongo: !noMongoIndex)
            config.logicalKeyTrigger = !noKeyTrigger
            let logger = makeLogger("nocobridge.install")
            let retired = try Installer(configuration: config, logger: logger)
                .install(createMongoIndexes: !noMongoIndex, grantTo: grantTo, replicaIdentityFull: replicaIdentityFull)
            if retired {
                // Switched back from logical capture: what the slot had not delivered is found
                // by comparing both sides.
                let report = try Resync(configuration: config, options: ResyncOptions(), logger: logger, progress: progressPrinter()).run()
                FileHandle.standardError.write(Data(report.text().utf8))
            }
        }
    }
}

struct Uninstall: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove everything install added, and nothing else.")

    @OptionGroup var options: ConnectionOptions

    @Flag(help: "Leave the MongoDB key index in place.")
    var keepMongoIndex = false

    func run() async throws {
        try await runReporting {
            let config = try options.configuration(requireMongo: !keepMongoIndex)
            try Installer(configuration: config, logger: makeLogger("nocobridge.install")).uninstall(dropMongoIndexes: !keepMongoIndex)
        }
    }
}

struct SQL: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the install SQL (what sql/install.sql holds).")

    @Flag(help: "Print the uninstall SQL instead.")
    var uninstall = false

    func run() {
        FileHandle.standardOutput.write(Data((uninstall ? InstallSQL.uninstall : InstallSQL.install).utf8))
    }
}
