import Logging
import Mongo
import Postgres
import SyncCore

/// NocoDB → MongoDB: capture (changelog) → resolve (plan) → apply (bulk write) → checkpoint
/// (delete from the changelog). The checkpoint happens only after MongoDB acknowledged the
/// writes, so a crash in between re-applies (idempotent upserts by `externalId`) and never loses.
public final class ToMongoPipeline: Sendable {
    public static let channel = "nocobridge"

    private let configuration: BridgeConfiguration
    private let logger: Logger
    private let stop: StopSignal
    private let mongo: MongoClientPool
    public let statistics: PipelineStatistics

    public init(configuration: BridgeConfiguration, mongo: MongoClientPool, stop: StopSignal, logger: Logger,
                statistics: PipelineStatistics = PipelineStatistics(direction: "to-mongo")) {
        self.configuration = configuration
        self.mongo = mongo
        self.stop = stop
        self.logger = logger
        self.statistics = statistics
    }

    /// Blocks until stopped; reconnects with backoff after connection failures.
    public func run() {
        try? runReconnecting("to-mongo", configuration: configuration, stop: stop, logger: logger,
                             statistics: statistics, runConnected)
    }

    private func runConnected(onConnected: () -> Void) throws {
        let connection = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-to-mongo")
        // LISTEN before the first read: a change committed after it is either in that read or
        // announced by a notification we will see.
        try connection.listen(Self.channel)
        let shapes = try configuration.shapes(on: connection, logger: logger)
        var schema = try SchemaWatch(tables: configuration.tables, interval: configuration.schemaCheckInterval, on: connection)
        let readers = shapes.map(ChangelogReader.init(shape:))
        let journal = WriteJournal(url: configuration.postgresURL, instanceID: configuration.instanceID)
        let synchronizers = try shapes.map {
            RecordSynchronizer(shape: $0, policy: configuration.policy,
                               optimisticInserts: try Installer.hasKeyIndex(collection: $0.mapping.collection, pool: mongo),
                               journal: journal, history: configuration.history)
        }
        var recovery = IntentRecovery(configuration: configuration, mongo: mongo, logger: logger)
        try recovery.runIfDue(synchronizers: synchronizers, connection: connection)
        let byName = Dictionary(uniqueKeysWithValues: readers.enumerated().map { ($1.shape.mapping.qualifiedName, $0) })
        onConnected()
        statistics.setConnected(true)
        defer { statistics.setConnected(false) }
        logger.info("to-mongo pipeline running", metadata: ["tables": "\(configuration.tables.map(\.qualifiedName))"])
        var dirty = Set(readers.indices)
        var lastGeneration = ContinuousClock.now
        while !stop.isStopped {
            // Advance the restore markers now and then, so a backup taken a while ago is
            // recognised as behind.
            if ContinuousClock.now - lastGeneration > configuration.generationInterval {
                lastGeneration = ContinuousClock.now
                try GenerationMarker().realign(connection: connection, mongo: mongo)
            }
            try schema.check(on: connection)
            try recovery.runIfDue(synchronizers: synchronizers, connection: connection)
            var again = Set<Int>()
            for index in dirty.sorted() where !stop.isStopped {
                let count = try processBatch(readers[index], synchronizer: synchronizers[index], connection: connection)
                if count >= configuration.batchSize { again.insert(index) }
            }
            if !again.isEmpty {
                dirty = again
                continue
            }
            let notes = try connection.waitForNotifications(timeoutMilliseconds: configuration.idleSweepMilliseconds,
                                                             wakeFD: stop.fileDescriptor)
            if notes.isEmpty {
                dirty = Set(readers.indices)
            } else {
                dirty = Set(notes.compactMap { byName[$0.payload] })
            }
        }
    }

    /// One batch of one table; returns how many changes it read.
    @discardableResult
    func processBatch(_ reader: ChangelogReader, synchronizer: RecordSynchronizer, connection: PostgresConnection) throws -> Int {
        try applier.applyChangelogBatch(reader, limit: configuration.batchSize, synchronizer: synchronizer, connection: connection)
    }

    var applier: NocoDBChangeApplier {
        NocoDBChangeApplier(mongo: mongo, logger: logger, statistics: statistics)
    }
}
