import Logging
import Mongo
import Postgres
import SyncCore

/// NocoDB → MongoDB for one table, trigger capture: changelog → decide → MongoDB → delete from
/// the changelog in the transaction that records the decision. Each table has its own flow
/// (thread, connection), so a bulk edit of one table never holds up another's next change.
/// The changelog is only deleted from after MongoDB acknowledged, so a crash re-applies
/// (state-based, so harmlessly) and never loses.
final class ChangelogFlow: Sendable {
    static let channel = "nocobridge"

    let mapping: TableMapping
    let environment: FlowEnvironment
    private let logger: Logger

    init(mapping: TableMapping, environment: FlowEnvironment) {
        self.mapping = mapping
        self.environment = environment
        logger = environment.logger("to-mongo", table: mapping)
    }

    private var configuration: BridgeConfiguration { environment.configuration }
    private var statistics: PipelineStatistics { environment.toMongo }

    /// Blocks until stopped; reconnects with backoff after failures.
    func run() throws {
        try runReconnecting("to-mongo \(mapping.qualifiedName)", configuration: configuration, stop: environment.stop,
                            logger: logger, statistics: statistics, table: mapping.qualifiedName, runConnected)
    }

    private func runConnected(onConnected: () -> Void) throws {
        let connection = try PostgresConnection(url: configuration.postgresURL, applicationName: environment.applicationName("nocobridge-to-mongo", table: mapping))
        // LISTEN before the first read: a change committed after it is either in that read or
        // announced by a notification that will be seen.
        try connection.listen(Self.channel)
        let shape = try configuration.shape(of: mapping, on: connection, logger: logger)
        var schema = try SchemaWatch(tables: [mapping], interval: configuration.schemaCheckInterval, on: connection)
        let reader = ChangelogReader(shape: shape)
        let synchronizer = environment.synchronizer(
            shape, optimisticInserts: try Installer.hasKeyIndex(collection: mapping.collection, pool: environment.mongo))
        // What this flow's last connection left unsettled (a transaction that failed after
        // its MongoDB write) is settled before anything is decided again.
        environment.journal.abandonAll(collection: mapping.collection)
        var recovery = IntentRecovery(configuration: configuration, mongo: environment.mongo, logger: logger, fence: environment.fence,
                                      journal: environment.journal)
        try recovery.runIfDue(synchronizers: [synchronizer], connection: connection)
        let applier = NocoDBChangeApplier(mongo: environment.mongo, logger: logger, statistics: statistics, fence: environment.fence)
        onConnected()
        statistics.setConnected(true, table: mapping.qualifiedName)
        defer { statistics.setConnected(false, table: mapping.qualifiedName) }
        logger.info("to-mongo flow running")
        var pending = true
        var hold = HoldWatch(collection: mapping.collection)
        let stop = environment.stop
        while !stop.isStopped {
            try schema.check(on: connection)
            try recovery.runIfDue(synchronizers: [synchronizer], connection: connection)
            if try hold.isHeld(on: connection) {
                stop.sleep(milliseconds: 1000)
                continue
            }
            if pending {
                let read = try applier.applyChangelogBatch(reader, limit: configuration.batchSize, synchronizer: synchronizer,
                                                           connection: connection)
                pending = read >= configuration.batchSize
                if pending { continue }
            }
            let notes = try connection.waitForNotifications(timeoutMilliseconds: configuration.idleSweepMilliseconds,
                                                             wakeFD: stop.fileDescriptor)
            // No notification within the sweep interval: look anyway (a notification is lost
            // when its sender's session ends before delivery; the changelog is the truth).
            pending = notes.isEmpty || notes.contains { $0.payload == mapping.qualifiedName }
        }
    }
}
