import Logging
import Mongo
import Postgres
import SyncCore

/// Applies captured NocoDB changes of one table to MongoDB, whatever captured them (the
/// trigger changelog or logical replication): resolve each record through the policy, write,
/// and acknowledge in the same PostgreSQL transaction. If PostgreSQL refuses a value the
/// mapper let through, the batch is applied record by record so only the bad record goes to
/// dead letters and the table is not blocked.
struct NocoDBChangeApplier {
    let mongo: MongoClientPool
    let logger: Logger
    let statistics: PipelineStatistics
    /// Checked before each commit (`bridgeTransaction(fence:)`).
    var fence: Fence? = nil

    /// One batch from the trigger changelog, acknowledged by deleting its rows; returns how
    /// many changes it read (0: the changelog is empty).
    @discardableResult
    func applyChangelogBatch(_ reader: ChangelogReader, limit: Int, synchronizer: RecordSynchronizer,
                             connection: PostgresConnection) throws -> Int {
        let batch = try reader.fetch(limit: limit, on: connection)
        guard !batch.changes.isEmpty else { return 0 }
        try apply(batch.changes, oldestChangedAtMs: batch.oldestChangedAtMs, synchronizer: synchronizer, connection: connection) {
            ids, rejections in try reader.acknowledge(ids, rejections: rejections, on: connection)
        }
        return batch.changes.count
    }

    /// - Parameter acknowledge: marks `ids` done and records `rejections` as dead letters,
    ///   inside the transaction that wrote them.
    func apply(_ changes: [CapturedChange], oldestChangedAtMs: Int64?, synchronizer: RecordSynchronizer,
               connection: PostgresConnection,
               acknowledge: (_ ids: [Int64], _ rejections: [Rejection]) throws -> Void) throws {
        let started = monotonicNanoseconds()
        let mapping = synchronizer.writer.shape.mapping
        let groups = ChangeGroups(changes)
        var rejections = groups.rejections
        /// Syncs `keys` and acknowledges `ids` in one transaction.
        func apply(_ keys: [String], acknowledging ids: [Int64], rejections: inout [Rejection]) throws -> RecordSynchronizer.Outcome {
            var found = rejections
            let outcome = try connection.bridgeTransaction(fence: fence) {
                let hints = keys.map { RecordSynchronizer.Hint(key: $0, changedAt: groups.latestChange($0)) }
                let outcome = try synchronizer.synchronize(mode: .change(.nocodb), hints: hints, connection: connection, mongo: mongo)
                for r in outcome.rejections { found += groups.reject(r.key ?? "", field: r.field, reason: r.reason) }
                try acknowledge(ids, found)
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
                try connection.bridgeTransaction(fence: fence) { try acknowledge(rejections.compactMap(\.changeID), rejections) }
                done = rejections
            }
            for key in groups.keys {
                let ids = (groups.changesByKey[key] ?? []).map(\.id)
                var found: [Rejection] = []
                do {
                    outcome += try apply([key], acknowledging: ids, rejections: &found)
                } catch let error as PostgresError where error.isDataError {
                    found = groups.reject(key, field: nil, reason: "PostgreSQL refused the record: \(error)")
                    try connection.bridgeTransaction(fence: fence) { try acknowledge(ids, found) }
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
        let lag = oldestChangedAtMs.map { wallClockMilliseconds() - $0 }
        statistics.record(.init(table: mapping.qualifiedName, changes: changes.count,
                                writes: outcome.mongoWrites + outcome.nocodbWrites, rejected: rejections.count,
                                conflictsByRule: outcome.conflictsByRule, lagMilliseconds: lag,
                                applyNanoseconds: monotonicNanoseconds() - started))
        logger.info("batch applied", metadata: [
            "direction": "to-mongo", "table": "\(mapping.qualifiedName)", "changes": "\(changes.count)",
            "mongo_writes": "\(outcome.mongoWrites)", "nocodb_writes": "\(outcome.nocodbWrites)",
            "conflicts": "\(outcome.conflicts)", "dead_letters": "\(rejections.count)", "lag_ms": "\(lag ?? 0)",
            "stages_ms": "\(outcome.timings.summary)",
        ])
    }
}
