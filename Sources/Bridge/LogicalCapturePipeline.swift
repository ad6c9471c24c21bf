import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

/// NocoDB → MongoDB without triggers: PostgreSQL's own write-ahead log through a logical
/// replication slot (`pgoutput`), decoded by `PgOutput` and applied by the same
/// `NocoDBChangeApplier` as the changelog. The slot's flush position is confirmed only after
/// a batch is committed in MongoDB and its position recorded in PostgreSQL, so a crash
/// re-delivers and never skips. Transactions written by the bridge itself carry a
/// replication origin and are skipped when decoded.
public final class LogicalCapturePipeline: Sendable {
    public static let publication = "nocobridge"

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

    /// Blocks until stopped; reconnects with backoff. Throws only `SlotLost`.
    public func run() throws {
        try runReconnecting("to-mongo", configuration: configuration, stop: stop, logger: logger,
                            statistics: statistics, isFatal: { $0 is SlotLost }, runConnected)
    }

    private var applier: NocoDBChangeApplier { NocoDBChangeApplier(mongo: mongo, logger: logger, statistics: statistics) }

    private func runConnected(onConnected: () -> Void) throws {
        let connection = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-to-mongo")
        let slot = try LogicalSlot.name(on: connection)
        try LogicalSlot.check(slot, on: connection)
        try LogicalSlot.useOrigin(slot + LogicalSlot.toMongoOrigin, on: connection)
        let shapes = try configuration.shapes(on: connection, logger: logger)
        var schema = try SchemaWatch(tables: configuration.tables, interval: configuration.schemaCheckInterval, on: connection)
        let journal = WriteJournal(url: configuration.postgresURL, instanceID: configuration.instanceID)
        let synchronizers = try Dictionary(uniqueKeysWithValues: shapes.map {
            ($0.mapping.qualifiedName, RecordSynchronizer(shape: $0, policy: configuration.policy,
                                                          optimisticInserts: try Installer.hasKeyIndex(collection: $0.mapping.collection, pool: mongo),
                                                          journal: journal, nocodbEditTime: configuration.nocodbEditTime,
                                                          history: configuration.history))
        })
        let allSynchronizers = Array(synchronizers.values)
        var recovery = IntentRecovery(configuration: configuration, mongo: mongo, logger: logger)
        try recovery.runIfDue(synchronizers: allSynchronizers, connection: connection)
        // Changes the triggers captured before the switch to logical capture.
        for shape in shapes {
            let reader = ChangelogReader(shape: shape)
            guard let synchronizer = synchronizers[shape.mapping.qualifiedName] else { continue }
            while try applier.applyChangelogBatch(reader, limit: configuration.batchSize, synchronizer: synchronizer, connection: connection) > 0 {}
        }
        let replication = try ReplicationConnection(url: configuration.postgresURL)
        try replication.startReplication(slot: slot, publication: Self.publication, from: 0)
        onConnected()
        statistics.setConnected(true)
        defer { statistics.setConnected(false) }
        logger.info("to-mongo pipeline running (logical capture)", metadata: ["slot": "\(slot)"])

        var decoder = LogicalChangeCollector(ownOrigins: [slot + LogicalSlot.toMongoOrigin, slot + LogicalSlot.toNocoDBOrigin])
        var confirmed: PgOutput.LSN = 0
        var lastStatus = ContinuousClock.now
        while !stop.isStopped {
            try schema.check(on: connection)
            if decoder.isIdle { try recovery.runIfDue(synchronizers: allSynchronizers, connection: connection) }
            let bytes = try replication.read(timeoutMilliseconds: decoder.pendingCount > 0 ? 0 : configuration.idleSweepMilliseconds,
                                             wakeFD: stop.fileDescriptor)
            var replyRequested = false
            // Asking for a keepalive after a batch or an idle wait lets an idle slot confirm
            // the server's end of WAL (the bridge's own writes included) at once, not only
            // when the server gets round to a keepalive of its own.
            var askServer = bytes == nil && decoder.isIdle
            if let bytes {
                switch try PgOutput.decodeEnvelope(bytes) {
                case .keepalive(let walEnd, let reply):
                    replyRequested = reply
                    // Everything before this keepalive was received; with nothing pending or
                    // open, the server's end of WAL is as good as applied (an idle slot must
                    // not hold WAL).
                    if decoder.isIdle { confirmed = max(confirmed, walEnd) }
                case .xLogData(_, _, let message):
                    if let warning = decoder.add(message) { logger.warning("\(warning)") }
                }
            }
            if decoder.pendingCount > 0 && (bytes == nil || decoder.pendingCount >= configuration.batchSize) {
                confirmed = max(confirmed, try flush(&decoder, synchronizers: synchronizers, connection: connection, slot: slot))
                replyRequested = true
                askServer = true
            }
            if replyRequested || askServer || ContinuousClock.now - lastStatus > .seconds(5) {
                try replication.send(PgOutput.standbyStatus(flushed: confirmed, now: Int64(Date().timeIntervalSince1970 * 1_000_000),
                                                            replyRequested: askServer))
                lastStatus = ContinuousClock.now
            }
        }
    }

    /// A decoded commit can arrive before its transaction is visible to other sessions (the
    /// commit record is written before the transaction leaves the process array): reading the
    /// rows then would see them missing. Waits until none of `xids` is still in progress.
    private func waitUntilVisible(_ xids: Set<UInt32>, on connection: PostgresConnection) throws {
        guard !xids.isEmpty else { return }
        let list = PostgresConnection.arrayLiteral(xids.map { String($0) })
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            // 32-bit xids to xid8 with the epoch of the current one.
            let rows = try connection.query(cached: """
                WITH c AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS v)
                SELECT count(*) FROM c, unnest($1::bigint[]) AS x
                WHERE pg_xact_status((CASE WHEN x <= (c.v & 4294967295) THEN ((c.v >> 32) << 32) | x
                                           ELSE (((c.v >> 32) - 1) << 32) | x END)::text::xid8) = 'in progress'
                """, [list])
            if rows.rows.first?.first.flatMap({ $0 }) == "0" { return }
            guard ContinuousClock.now < deadline else {
                throw PostgresError(kind: .timedOut, message: "decoded transactions did not become visible within 30 s")
            }
            usleep(500)
        }
    }

    /// Rows written without `externalId`, and inserted rows whose key an older row already
    /// has (NocoDB's "duplicate row", a paste, a CSV import copy keys), get a new UUID, as the
    /// trigger would have given them: one statement per batch, in a transaction with the
    /// bridge's origin (so not captured again); each row is then synced under its key. A row
    /// that meanwhile got a key keeps it; a deleted one is skipped.
    private func assignKeys(_ batch: LogicalChangeCollector.Batch, table: TableMapping, connection: PostgresConnection) throws -> [CapturedChange] {
        guard !batch.keylessRows.isEmpty || !batch.insertedRows.isEmpty else { return batch.changes }
        let qualified = PostgresConnection.quoteIdentifier(table.schema) + "." + PostgresConnection.quoteIdentifier(table.table)
        let keyless = Array(Set(batch.keylessRows.values))
        let inserted = Array(Set(batch.insertedRows.values))
        // The final SELECT sees the table as before the UPDATE: a new key comes from RETURNING.
        let rows = try connection.query(cached: """
            WITH keyless AS (SELECT unnest($1::text[]) AS id),
            inserted AS (SELECT unnest($2::text[]) AS id),
            renew AS (
                SELECT t."id" FROM \(qualified) AS t JOIN keyless k ON t."id"::text = k.id
                WHERE coalesce(t."externalId", '') = ''
                UNION
                SELECT t."id" FROM \(qualified) AS t JOIN inserted i ON t."id"::text = i.id
                WHERE EXISTS (SELECT 1 FROM \(qualified) AS o WHERE o."externalId" = t."externalId" AND o."id" < t."id")
            ),
            assigned AS (
                UPDATE \(qualified) AS t SET "externalId" = gen_random_uuid()::text FROM renew
                WHERE t."id" = renew."id"
                RETURNING t."id"::text AS id, t."externalId" AS key
            )
            SELECT w.id, coalesce(a.key, t."externalId") FROM (SELECT id FROM keyless UNION SELECT id FROM inserted) w
            LEFT JOIN assigned a ON a.id = w.id
            LEFT JOIN \(qualified) AS t ON t."id"::text = w.id
            """, [PostgresConnection.arrayLiteral(keyless), PostgresConnection.arrayLiteral(inserted)]).rows
        var keys: [String: String] = [:]
        for row in rows { if let id = row[0], let key = row[1], !key.isEmpty { keys[id] = key } }
        return batch.changes.compactMap { change in
            guard let row = batch.keylessRows[change.id] ?? batch.insertedRows[change.id] else { return change }
            guard let key = keys[row] else {
                // A row inserted with a key and deleted since: its own delete carries the key.
                return batch.insertedRows[change.id] != nil ? change : nil
            }
            if key == change.key { return change }
            return CapturedChange(id: change.id, operation: change.operation, key: key, oldKey: key, changedAt: change.changedAt)
        }
    }

    /// Applies the committed transactions collected so far, records the position, and
    /// returns the end of the last one: the position that may now be confirmed.
    private func flush(_ decoder: inout LogicalChangeCollector, synchronizers: [String: RecordSynchronizer],
                       connection: PostgresConnection, slot: String) throws -> PgOutput.LSN {
        let (byTable, end) = decoder.take()
        try waitUntilVisible(byTable.values.reduce(into: Set<UInt32>()) { $0.formUnion($1.transactionIDs) }, on: connection)
        for (table, batch) in byTable {
            guard let synchronizer = synchronizers[table] else { continue }
            let changes = try assignKeys(batch, table: synchronizer.writer.shape.mapping, connection: connection)
            // A large transaction (a bulk UPDATE) is applied in batches of the usual size:
            // MongoDB's reads and writes by key slow down per key in larger batches.
            for start in stride(from: 0, to: changes.count, by: configuration.batchSize) {
                let chunk = Array(changes[start..<min(start + configuration.batchSize, changes.count)])
                try applier.apply(chunk, oldestChangedAtMs: batch.oldest, synchronizer: synchronizer, connection: connection) { _, rejections in
                    try DeadLetterLog.record(direction: "to-mongo", source: table,
                                             rejections.map { ($0.key ?? "-", $0.field, $0.reason, nil) }, on: connection)
                }
            }
        }
        try connection.bridgeTransaction {
            try PositionStore.save(slot, position: withUnsafeBytes(of: end.bigEndian) { Array($0) }, on: connection)
        }
        return end
    }
}

/// The slot of this database, its origins, and its health.
public enum LogicalSlot {
    static let toMongoOrigin = "_to_mongo"
    static let toNocoDBOrigin = "_to_nocodb"

    public static func name(on connection: PostgresConnection) throws -> String {
        try connection.query("SELECT nocobridge.slot_name()").rows.first?.first.flatMap { $0 } ?? "nocobridge"
    }

    /// The slot's `wal_status`, or nil when there is no such slot.
    static func walStatus(_ slot: String, on connection: PostgresConnection) throws -> String? {
        try connection.query("SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1", [slot])
            .rows.first?.first.flatMap { $0 }
    }

    /// Throws `SlotLost` when the slot is missing or PostgreSQL invalidated it.
    static func check(_ slot: String, on connection: PostgresConnection) throws {
        guard let status = try walStatus(slot, on: connection) else { throw SlotLost(slot: slot, reason: "it does not exist") }
        if status == "lost" { throw SlotLost(slot: slot, reason: "PostgreSQL invalidated it (max_slot_wal_keep_size) and removed the WAL it held") }
    }

    /// What a role without superuser needs for logical capture, checked at start so a
    /// missing grant is one clear line rather than a retry loop.
    static func checkPrivileges(on connection: PostgresConnection) throws {
        let row = try connection.query("""
            SELECT current_user, rolsuper OR rolreplication,
                   has_function_privilege('pg_catalog.pg_replication_origin_session_setup(text)', 'EXECUTE')
            FROM pg_roles WHERE rolname = current_user
            """).rows.first
        let role = row?[0] ?? "?"
        guard row?[1] == "t" else {
            throw ConfigurationError(setting: "PG_URL", message: "logical capture streams a replication slot, which needs the REPLICATION attribute: as a superuser, ALTER ROLE \(PostgresConnection.quoteIdentifier(role)) REPLICATION")
        }
        guard row?[2] == "t" else {
            throw ConfigurationError(setting: "PG_URL", message: "role \(role) may not mark its writes with a replication origin: as a superuser, run `nocobridge install --grant-to \(role)` or GRANT EXECUTE ON FUNCTION pg_replication_origin_session_setup(text) TO \(PostgresConnection.quoteIdentifier(role))")
        }
    }

    /// Marks this session's writes with `origin`, so logical capture skips them.
    static func useOrigin(_ origin: String, on connection: PostgresConnection) throws {
        try connection.query("SELECT pg_replication_origin_session_setup($1)", [origin])
    }

    /// Recreates the slot when it is missing or invalidated; called by resync before its scan,
    /// so every change after the new slot's consistent point is streamed and every one before
    /// it is in the scan. Returns whether it did.
    public static func recreateIfUnusable(on connection: PostgresConnection, logger: Logger) throws -> Bool {
        let slot = try name(on: connection)
        let status = try walStatus(slot, on: connection)
        if let status, status != "lost" { return false }
        if status != nil { try connection.query("SELECT pg_drop_replication_slot($1)", [slot]) }
        try connection.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot])
        logger.warning("recreated the logical replication slot", metadata: ["slot": "\(slot)"])
        return true
    }

    /// Bytes of WAL the slot keeps and its `wal_status`, for status and metrics.
    public static func retained(on connection: PostgresConnection) throws -> (bytes: Int64, status: String)? {
        let rows = try connection.query("""
            SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, coalesce(wal_status, '')
            FROM pg_replication_slots WHERE slot_name = nocobridge.slot_name()
            """).rows
        guard let row = rows.first else { return nil }
        return (Int64(row[0] ?? "0") ?? 0, row[1] ?? "")
    }
}

/// The logical slot cannot continue: changes it should have kept are gone.
public struct SlotLost: Error, CustomStringConvertible {
    public let slot: String
    public let reason: String
    public var description: String {
        "the logical replication slot \(slot) cannot be used: \(reason). NocoDB changes made since may be missing: "
            + "run `nocobridge resync` (it recreates the slot before comparing both sides), or start with --on-history-lost=resync"
    }
}
