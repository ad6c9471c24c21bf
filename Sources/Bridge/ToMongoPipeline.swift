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
        let synchronizers = try shapes.map {
            RecordSynchronizer(shape: $0, policy: configuration.policy,
                               optimisticInserts: try Installer.hasKeyIndex(collection: $0.mapping.collection, pool: mongo))
        }
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
        let batch = try reader.fetch(limit: configuration.batchSize, on: connection)
        guard !batch.changes.isEmpty else { return 0 }
        let started = monotonicNanoseconds()
        let mapping = reader.shape.mapping
        let groups = ChangeGroups(batch.changes)
        var rejections = groups.rejections
        /// Syncs `keys` and acknowledges `ids` in one transaction.
        func apply(_ keys: [String], acknowledging ids: [Int64], rejections: inout [Rejection]) throws -> RecordSynchronizer.Outcome {
            var found = rejections
            let outcome = try connection.bridgeTransaction {
                let hints = keys.map { RecordSynchronizer.Hint(key: $0, changedAt: groups.latestChange($0)) }
                let outcome = try synchronizer.synchronize(changed: .nocodb, hints: hints, connection: connection, mongo: mongo)
                for r in outcome.rejections { found += groups.reject(r.key, field: r.field, reason: r.reason) }
                try reader.acknowledge(ids, rejections: found, on: connection)
                return outcome
            }
            rejections = found
            return outcome
        }
        var outcome: RecordSynchronizer.Outcome
        do {
            outcome = try apply(groups.keys, acknowledging: groups.changeIDs, rejections: &rejections)
        } catch let error as PostgresError where error.isDataError {
            // PostgreSQL refused something the mapper let through: apply record by record so
            // only the bad one goes to dead letters and the batch does not block the table.
            logger.warning("PostgreSQL refused a value in the batch; applying its records one by one", metadata: [
                "direction": "to-mongo", "table": "\(mapping.qualifiedName)", "error": "\(error)",
            ])
            outcome = RecordSynchronizer.Outcome()
            var done: [Rejection] = []
            if !rejections.isEmpty {
                try connection.bridgeTransaction { try reader.acknowledge(rejections.map(\.changeID), rejections: rejections, on: connection) }
                done = rejections
            }
            for key in groups.keys {
                let ids = (groups.changesByKey[key] ?? []).map(\.id)
                var found: [Rejection] = []
                do {
                    let one = try apply([key], acknowledging: ids, rejections: &found)
                    outcome.mongoWrites += one.mongoWrites
                    outcome.nocodbWrites += one.nocodbWrites
                    outcome.conflicts += one.conflicts
                    outcome.conflictsByRule.merge(one.conflictsByRule, uniquingKeysWith: +)
                } catch let error as PostgresError where error.isDataError {
                    found = groups.reject(key, field: nil, reason: "PostgreSQL refused the record: \(error)")
                    try connection.bridgeTransaction { try reader.acknowledge(ids, rejections: found, on: connection) }
                }
                done += found
            }
            rejections = done
        }
        for rejection in rejections {
            logger.error("change sent to dead letters", metadata: [
                "table": "\(mapping.qualifiedName)", "collection": "\(mapping.collection)",
                "key": "\(rejection.key ?? "-")", "field": "\(rejection.field ?? "-")",
                "error": "\(rejection.reason)",
            ])
        }
        let lag = batch.oldestChangedAtMs.map { wallClockMilliseconds() - $0 }
        statistics.record(.init(table: mapping.qualifiedName, changes: batch.changes.count,
                                writes: outcome.mongoWrites + outcome.nocodbWrites, rejected: rejections.count,
                                conflictsByRule: outcome.conflictsByRule, lagMilliseconds: lag,
                                applyNanoseconds: monotonicNanoseconds() - started))
        logger.info("batch applied", metadata: [
            "direction": "to-mongo", "table": "\(mapping.qualifiedName)", "changes": "\(batch.changes.count)",
            "mongo_writes": "\(outcome.mongoWrites)", "nocodb_writes": "\(outcome.nocodbWrites)",
            "conflicts": "\(outcome.conflicts)", "dead_letters": "\(rejections.count)", "lag_ms": "\(lag ?? 0)",
            "stages_ms": "\(outcome.timings.summary)",
        ])
        return batch.changes.count
    }
}
