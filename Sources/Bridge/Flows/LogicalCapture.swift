import Foundation
import Logging
import Mongo
import Postgres
import Synchronization
import SyncCore

/// NocoDB → MongoDB without triggers: PostgreSQL's own write-ahead log through a logical
/// replication slot (`pgoutput`). One reader per process streams the slot and decodes it
/// (`LogicalChangeCollector`) into a `LogicalBacklog`; one `LogicalTableFlow` per table applies
/// its table's changes with the same `NocoDBChangeApplier` as the changelog. The slot's flush
/// position is confirmed only up to what every table has applied (committed in MongoDB and
/// recorded in PostgreSQL), so a crash re-delivers and never skips. Transactions the bridge
/// itself wrote carry a logical decoding message and are skipped when decoded.
final class LogicalSlotReader: Sendable {
    static let publication = "nocobridge"

    private let environment: FlowEnvironment
    private let backlog: LogicalBacklog
    private let logger: Logger
    /// The position confirmed so far: where a reconnect resumes, and where work decoded after
    /// it begins.
    private let confirmedPosition = Mutex<PgOutput.LSN>(0)

    init(environment: FlowEnvironment, backlog: LogicalBacklog) {
        self.environment = environment
        self.backlog = backlog
        var logger = environment.logger
        logger[metadataKey: "flow"] = "logical-slot"
        self.logger = logger
    }

    /// Blocks until stopped; reconnects with backoff. Throws only `SlotLost`.
    func run() throws {
        try runReconnecting("logical capture", configuration: environment.configuration, stop: environment.stop, logger: logger,
                            statistics: environment.toMongo, isFatal: { $0 is SlotLost }, runConnected)
    }

    private func runConnected(onConnected: () -> Void) throws {
        let configuration = environment.configuration
        let connection = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-logical")
        let slot = try LogicalSlot.name(on: connection)
        try LogicalSlot.check(slot, on: connection)
        let replication = try ReplicationConnection(url: configuration.postgresURL)
        try replication.startReplication(slot: slot, publication: Self.publication, from: 0)
        onConnected()
        logger.info("logical capture running", metadata: ["slot": "\(slot)"])
        var decoder = LogicalChangeCollector()
        var decoded = confirmedPosition.withLock { $0 }
        var confirmed = decoded
        var lastStatus = ContinuousClock.now
        let stop = environment.stop
        while !stop.isStopped {
            let bytes = try replication.read(timeoutMilliseconds: decoder.pendingCount > 0 ? 0 : configuration.idleSweepMilliseconds,
                                             wakeFD: stop.fileDescriptor)
            var replyRequested = false
            // Asking for a keepalive after handing over a batch or after an idle wait lets an
            // idle slot confirm the server's end of WAL (the bridge's own writes included) at
            // once, not only when the server gets round to a keepalive of its own.
            var askServer = bytes == nil && decoder.isIdle
            var serverEnd: PgOutput.LSN?
            if let bytes {
                switch try PgOutput.decodeEnvelope(bytes) {
                case .keepalive(let walEnd, let reply):
                    replyRequested = reply
                    serverEnd = walEnd
                case .xLogData(_, _, let message):
                    if let warning = decoder.add(message) { logger.warning("\(warning)") }
                }
            }
            if decoder.pendingCount > 0 && (bytes == nil || decoder.pendingCount >= configuration.batchSize) {
                let (batches, end) = decoder.take()
                backlog.add(batches, previousEnd: decoded)
                decoded = max(decoded, end)
                replyRequested = true
                askServer = true
            }
            // Everything before a keepalive was received; with nothing open, waiting or being
            // applied, the server's end of WAL is as good as applied (an idle slot must not
            // hold WAL).
            if let serverEnd, decoder.isIdle, backlog.isEmpty { decoded = max(decoded, serverEnd) }
            let confirmable = backlog.confirmable(decoded: decoded)
            if confirmable > confirmed {
                confirmed = confirmable
                confirmedPosition.withLock { $0 = confirmed }
                replyRequested = true
            }
            if replyRequested || askServer || ContinuousClock.now - lastStatus > .seconds(1) {
                try replication.send(PgOutput.standbyStatus(flushed: confirmed, now: Int64(Date().timeIntervalSince1970 * 1_000_000),
                                                            replyRequested: askServer))
                lastStatus = ContinuousClock.now
            }
        }
    }
}

/// Applies one table's changes from the logical slot (`LogicalBacklog`) to MongoDB.
final class LogicalTableFlow: Sendable {
    let mapping: TableMapping
    private let environment: FlowEnvironment
    private let backlog: LogicalBacklog
    private let logger: Logger

    init(mapping: TableMapping, environment: FlowEnvironment, backlog: LogicalBacklog) {
        self.mapping = mapping
        self.environment = environment
        self.backlog = backlog
        logger = environment.logger("to-mongo", table: mapping)
    }

    private var configuration: BridgeConfiguration { environment.configuration }
    private var statistics: PipelineStatistics { environment.toMongo }

    func run() throws {
        try runReconnecting("to-mongo \(mapping.qualifiedName)", configuration: configuration, stop: environment.stop, logger: logger,
                            statistics: statistics, table: mapping.qualifiedName, runConnected)
    }

    private func runConnected(onConnected: () -> Void) throws {
        let connection = try PostgresConnection(url: configuration.postgresURL, applicationName: environment.applicationName("nocobridge-to-mongo", table: mapping))
        let shape = try configuration.shape(of: mapping, on: connection, logger: logger)
        var schema = try SchemaWatch(tables: [mapping], interval: configuration.schemaCheckInterval, on: connection)
        let synchronizer = environment.synchronizer(
            shape, optimisticInserts: try Installer.hasKeyIndex(collection: mapping.collection, pool: environment.mongo))
        // What this flow's last connection left unsettled (a transaction that failed after
        // its MongoDB write) is settled before anything is decided again.
        environment.journal.abandonAll(collection: mapping.collection)
        var recovery = IntentRecovery(configuration: configuration, mongo: environment.mongo, logger: logger, fence: environment.fence,
                                      journal: environment.journal)
        try recovery.runIfDue(synchronizers: [synchronizer], connection: connection)
        let applier = NocoDBChangeApplier(mongo: environment.mongo, logger: logger, statistics: statistics, fence: environment.fence)
        // The slot decodes row ids as text; compared in the `id` column's own type (as the
        // catalog spells it in the shape), the primary key's index finds them.
        guard let rowIDType = shape.column(named: "id")?.postgresType else {
            throw ConfigurationError(setting: "SYNC_CAPTURE", message: "\(mapping.qualifiedName) has no \"id\" column, which logical capture keys rows by")
        }
        // Changes the triggers captured before the switch to logical capture.
        let reader = ChangelogReader(shape: shape)
        while try applier.applyChangelogBatch(reader, limit: configuration.batchSize, synchronizer: synchronizer, connection: connection) > 0 {}
        onConnected()
        statistics.setConnected(true, table: mapping.qualifiedName)
        defer { statistics.setConnected(false, table: mapping.qualifiedName) }
        let stop = environment.stop
        let table = mapping.qualifiedName
        var hold = HoldWatch(collection: mapping.collection)
        while !stop.isStopped {
            try schema.check(on: connection)
            try recovery.runIfDue(synchronizers: [synchronizer], connection: connection)
            if try hold.isHeld(on: connection) {
                stop.sleep(milliseconds: 1000)
                continue
            }
            guard let work = backlog.take(table) else {
                WakePipe.wait(for: [backlog.wakeFD(table) ?? stop.fileDescriptor, stop.fileDescriptor],
                              milliseconds: configuration.idleSweepMilliseconds)
                continue
            }
            do {
                try apply(work, rowIDType: rowIDType, applier: applier, synchronizer: synchronizer, connection: connection)
                backlog.finished(table)
            } catch {
                backlog.giveBack(table)
                throw error
            }
        }
    }

    private func apply(_ work: LogicalBacklog.Work, rowIDType: String, applier: NocoDBChangeApplier, synchronizer: RecordSynchronizer,
                       connection: PostgresConnection) throws {
        try waitUntilVisible(work.transactionIDs, on: connection)
        let changes = try assignKeys(work, table: mapping, rowIDType: rowIDType, connection: connection)
        // A large transaction (a bulk UPDATE) is applied in batches of the usual size.
        for start in stride(from: 0, to: changes.count, by: configuration.batchSize) {
            let chunk = Array(changes[start..<min(start + configuration.batchSize, changes.count)])
            try applier.apply(chunk, oldestChangedAtMs: work.oldest, synchronizer: synchronizer, connection: connection) { _, rejections in
                try DeadLetterStore.record(.toMongo, source: mapping.qualifiedName, rejections, on: connection)
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
            // A 32-bit xid at or after the snapshot's xmax (compared modulo 2^32) has not
            // completed as far as other sessions can tell: it is still waited for. One before
            // it becomes an xid8 counted back from xmax, for `pg_xact_status`. (Giving such an
            // xid the epoch before xmax's asked about a transaction "in the future" after a
            // restart, and the flow failed and started over.)
            let rows = try connection.query(cached: """
                WITH c AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS v),
                x AS (SELECT c.v, ((unnest($1::bigint[]) - (c.v & 4294967295)) % 4294967296 + 4294967296) % 4294967296 AS ahead FROM c)
                SELECT count(*) FROM x
                WHERE CASE WHEN x.ahead < 2147483648 THEN true
                           WHEN x.v - (4294967296 - x.ahead) < 3 THEN false
                           ELSE pg_xact_status((x.v - (4294967296 - x.ahead))::text::xid8) = 'in progress' END
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
    /// that meanwhile got a key keeps it; a deleted one is skipped. Usually no row needs one
    /// (the key trigger gave each a key, and the unique index keeps them apart), so the rows
    /// are first read: the writing transaction, with its commit's WAL flush, cost every
    /// inserted row about a millisecond on its way to MongoDB.
    private func assignKeys(_ batch: LogicalBacklog.Work, table: TableMapping, rowIDType: String,
                            connection: PostgresConnection) throws -> [CapturedChange] {
        guard !batch.keylessRows.isEmpty || !batch.insertedRows.isEmpty else { return batch.changes }
        let qualified = PostgresConnection.quoteIdentifier(table.schema) + "." + PostgresConnection.quoteIdentifier(table.table)
        let keyless = Array(Set(batch.keylessRows.values))
        let inserted = Array(Set(batch.insertedRows.values))
        let ids = [PostgresConnection.arrayLiteral(keyless), PostgresConnection.arrayLiteral(inserted)]
        // Ids are compared in the column's own type, so the primary key's index finds them.
        let lists = """
            keyless AS (SELECT unnest($1::\(rowIDType)[]) AS id),
            inserted AS (SELECT unnest($2::\(rowIDType)[]) AS id),
            renew AS (
                SELECT t."id" FROM \(qualified) AS t JOIN keyless k ON t."id" = k.id
                WHERE coalesce(t."externalId", '') = ''
                UNION
                SELECT t."id" FROM \(qualified) AS t JOIN inserted i ON t."id" = i.id
                WHERE EXISTS (SELECT 1 FROM \(qualified) AS o WHERE o."externalId" = t."externalId" AND o."id" < t."id")
            )
            """
        let read = try connection.query(cached: """
            WITH \(lists)
            SELECT w.id::text, t."externalId", EXISTS (SELECT 1 FROM renew) FROM (SELECT id FROM keyless UNION SELECT id FROM inserted) w
            LEFT JOIN \(qualified) AS t ON t."id" = w.id
            """, ids).rows
        var rows = read
        if read.first?[2] == "t" {
            // The final SELECT sees the table as before the UPDATE: a new key comes from RETURNING.
            // Written as the bridge (not captured again).
            rows = try connection.bridgeTransaction(fence: environment.fence) { try connection.query(BridgeOrigin.logicalMessage); return try connection.query(cached: """
                WITH \(lists),
                assigned AS (
                    UPDATE \(qualified) AS t SET "externalId" = gen_random_uuid()::text FROM renew
                    WHERE t."id" = renew."id"
                    RETURNING t."id" AS id, t."externalId" AS key
                )
                SELECT w.id::text, coalesce(a.key, t."externalId") FROM (SELECT id FROM keyless UNION SELECT id FROM inserted) w
                LEFT JOIN assigned a ON a.id = w.id
                LEFT JOIN \(qualified) AS t ON t."id" = w.id
                """, ids).rows }
        }
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

}

/// The slot of this database and its health.
public enum LogicalSlot {
    /// Replication origins of older versions, which marked the bridge's writes before the
    /// logical decoding message did (one origin serves one session at a time); retired.
    static let retiredOrigins = ["_to_mongo", "_to_nocodb"]

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
    /// missing attribute is one clear line rather than a retry loop.
    static func checkPrivileges(on connection: PostgresConnection) throws {
        let row = try connection.query("""
            SELECT current_user AS role, rolsuper OR rolreplication AS replication FROM pg_roles WHERE rolname = current_user
            """).named.first
        let role = row?["role"] ?? "?"
        guard row?["replication"] == "t" else {
            throw ConfigurationError(setting: "PG_URL", message: "logical capture streams a replication slot, which needs the REPLICATION attribute: as a superuser, ALTER ROLE \(PostgresConnection.quoteIdentifier(role)) REPLICATION")
        }
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

