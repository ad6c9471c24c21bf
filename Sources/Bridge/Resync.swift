import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

public struct ResyncOptions: Sendable {
    public var dryRun = false
    /// `both`: the conflict policy against the agreed state and tombstones; `to-mongo` /
    /// `to-nocodb`: make that side equal to the other.
    public var direction: BridgeConfiguration.Direction = .both
    /// Keys listed per category in the report.
    public var sampleSize = 10
    /// Store a MongoDB stream position taken before the scan even if the stored one still works.
    public var resetStreamPosition = false
    /// The side restored from a backup, if known: its differences from the agreed state are
    /// restore loss, not edits.
    public var restored: Side?

    public init() {}
}

/// What a resync found and did, per table; also written as JSON for scripts.
public struct ResyncReport: Sendable, Codable {
    public struct Table: Sendable, Codable {
        public var table: String
        public var collection: String
        public var onlyNocoDB = 0
        public var onlyMongo = 0
        public var equal = 0
        public var different = 0
        public var mongoWithoutKey = 0
        public var duplicateKeysNocoDB: [String] = []
        public var duplicateKeysMongo: [String] = []
        public var unmappable = 0
        public var samples: [String: [String]] = [:]
        public var nocodbWrites = 0
        public var mongoWrites = 0
        public var conflicts = 0
        public var rejected = 0
        public var seconds = 0.0
        /// Milliseconds spent per stage of applying (PostgreSQL reads, MongoDB reads/writes, PostgreSQL writes).
        public var stages: [String: Double] = [:]

        var scanned: Int { onlyNocoDB + onlyMongo + equal + different + unmappable }
    }

    public var dryRun: Bool
    public var direction: String
    public var tables: [Table] = []
    public var streamPositionReset = false
    public var slotRecreated = false

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self) + "\n"
    }

    public func text() -> String {
        var lines = [dryRun ? "resync plan (dry run: nothing changed)" : "resync done (direction \(direction))"]
        for entry in tables {
            lines.append("\(entry.table) ⇄ \(entry.collection): only in NocoDB \(entry.onlyNocoDB), only in MongoDB \(entry.onlyMongo), equal \(entry.equal), different \(entry.different)"
                + (entry.unmappable > 0 ? ", unmappable \(entry.unmappable)" : "")
                + (entry.mongoWithoutKey > 0 ? ", MongoDB documents without externalId \(entry.mongoWithoutKey)" : ""))
            for category in ["onlyNocoDB", "onlyMongo", "different", "unmappable"] {
                if let keys = entry.samples[category], !keys.isEmpty { lines.append("  \(category): \(keys.joined(separator: ", "))") }
            }
            if !entry.duplicateKeysNocoDB.isEmpty { lines.append("  DUPLICATE externalId in NocoDB (skipped): \(entry.duplicateKeysNocoDB.joined(separator: ", "))") }
            if !entry.duplicateKeysMongo.isEmpty { lines.append("  DUPLICATE externalId in MongoDB (skipped): \(entry.duplicateKeysMongo.joined(separator: ", "))") }
            if !dryRun {
                lines.append("  wrote \(entry.nocodbWrites) to NocoDB, \(entry.mongoWrites) to MongoDB; \(entry.conflicts) conflicts, \(entry.rejected) dead letters; \(String(format: "%.1f", entry.seconds)) s")
            }
        }
        if streamPositionReset { lines.append("MongoDB change stream position reset to the start of this resync") }
        if slotRecreated { lines.append("logical replication slot recreated before the scan") }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Brings both sides to one agreed state after a restore (or at any time), keyed by
/// `externalId`, with memory bounded by the batch size: both sides are read as sorted streams
/// (a PostgreSQL cursor in one REPEATABLE READ snapshot, a MongoDB cursor sorted by key) and
/// merged. Every key goes through the same locked decision as streaming, so a resync can run
/// beside `nocobridge run`, be interrupted, and be run again.
public struct Resync: Sendable {
    public let configuration: BridgeConfiguration
    public let options: ResyncOptions
    public let logger: Logger
    /// Receives progress lines (a bar on a terminal, plain lines otherwise).
    public let progress: @Sendable (String) -> Void
    /// The lease a running bridge reconciles under (a collection replaced under it): every
    /// commit and MongoDB write is fenced as the flows' are. Nil for the CLI's resync.
    var fence: Fence?

    public init(configuration: BridgeConfiguration, options: ResyncOptions, logger: Logger,
                progress: @escaping @Sendable (String) -> Void = { _ in }) {
        self.configuration = configuration
        self.options = options
        self.logger = logger
        self.progress = progress
    }

    public struct AlreadyRunning: Error, CustomStringConvertible {
        public var description: String { "another resync is running on this database" }
    }

    public func run() throws -> ResyncReport {
        let control = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-resync")
        try lock(control)
        let mongo = try MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase,
                                        instance: configuration.instanceID)
        // The stream positions are taken before any scan: every MongoDB write after them is
        // delivered by the streams later, every write before them is in the scan.
        var startTokens: [String: [UInt8]] = [:]
        for mapping in configuration.tables {
            startTokens[mapping.collection] = try ChangeStreamFlow.startingToken(collection: mapping.collection, pool: mongo)
        }

        var slotRecreated = false
        // Logical capture: a lost slot is replaced before the scan, for the same reason.
        if configuration.capture == .logical && !options.dryRun {
            slotRecreated = try LogicalSlot.recreateIfUnusable(on: control, logger: logger)
        }
        var report = try reconcile(control: control, mongo: mongo)
        report.slotRecreated = slotRecreated
        if !options.dryRun {
            let database = configuration.mongoDatabase
            for mapping in configuration.tables {
                guard let startToken = startTokens[mapping.collection] else { continue }
                let stream = ChangeStreamFlow.streamName(database: database, collection: mapping.collection)
                // A position kept for a database stream is resumed on one (the flow moves it).
                let stored = try ChangeStreamFlow.storedPosition(database: database, collection: mapping.collection, on: control)
                let usable = try stored.map {
                    try positionUsable($0.token, collection: $0.databaseWide ? nil : mapping.collection, mongo: mongo)
                } ?? false
                if options.resetStreamPosition || !usable {
                    try PositionStore.save(stream, position: startToken, on: control)
                    report.streamPositionReset = true
                }
            }
        }
        if !options.dryRun { try GenerationMarker().realign(connection: control, mongo: mongo) }
        try unlock(control)
        return report
    }

    /// Only the tables' reconciliation, without touching stream positions, the slot or the
    /// restore markers: for a collection replaced under the running bridge, whose flow keeps
    /// its own position.
    public func reconcileTables() throws -> ResyncReport {
        let control = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-resync")
        try lock(control)
        let mongo = try MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase,
                                        instance: configuration.instanceID)
        let report = try reconcile(control: control, mongo: mongo)
        try unlock(control)
        return report
    }

    /// One resync at a time per database (a session lock, gone with the session).
    private func lock(_ control: PostgresConnection) throws {
        guard try control.query("SELECT pg_try_advisory_lock(hashtext('nocobridge.resync')) AS locked").named.first?["locked"] == "t" else {
            throw AlreadyRunning()
        }
    }

    private func unlock(_ control: PostgresConnection) throws {
        try control.query("SELECT pg_advisory_unlock(hashtext('nocobridge.resync'))")
    }

    private func reconcile(control: PostgresConnection, mongo: MongoClientPool) throws -> ResyncReport {
        let mode: SyncMode = switch options.direction {
        case .both: .reconcile(restored: options.restored)
        case .toMongo: .mirror(from: .nocodb)
        case .toNocoDB: .mirror(from: .mongo)
        }
        var report = ResyncReport(dryRun: options.dryRun, direction: options.direction.rawValue)
        let journal = WriteJournal(url: configuration.postgresURL, instanceID: configuration.instanceID)
        let synchronizers = try configuration.tables.map { mapping in
            RecordSynchronizer(shape: try TableCatalog.shape(of: mapping, on: control, columnKinds: configuration.columnKinds,
                                                             fieldNames: configuration.fieldNames),
                               policy: configuration.policy, capture: configuration.capture, journal: journal, history: configuration.history,
                               fence: fence)
        }
        if !options.dryRun {
            try IntentRecovery(configuration: configuration, mongo: mongo, logger: logger, fence: fence).run(synchronizers: synchronizers, connection: control)
        }
        for sync in synchronizers {
            report.tables.append(try resyncTable(sync: sync, mode: mode, mongo: mongo, control: control))
        }
        return report
    }

    private func positionUsable(_ token: [UInt8], collection: String?, mongo: MongoClientPool) throws -> Bool {
        var o = ChangeStreamOptions()
        o.resumeToken = token
        o.maxAwaitMilliseconds = 10
        do {
            let s = try mongo.watch(collection: collection, options: o)
            _ = try s.next()
            return true
        } catch {
            if error.isHistoryLost { return false }
            throw error
        }
    }

    private func resyncTable(sync: RecordSynchronizer, mode: SyncMode, mongo: MongoClientPool,
                             control: PostgresConnection) throws -> ResyncReport.Table {
        let started = Date()
        let shape = sync.writer.shape
        let mapping = shape.mapping
        var entry = ResyncReport.Table(table: mapping.qualifiedName, collection: mapping.collection)
        let writer = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-resync")
        let batchSize = configuration.batchSize

        // Documents an app inserted without a key get one first (as streaming would), so
        // they take part in the sorted merge.
        let unkeyedFilter: Document = [RowMapper.keyField: .document(["$not": .document(["$type": .string("string")])])]
        entry.mongoWithoutKey = try mongo.withClient { (client: MongoClient) throws(MongoError) in try client.count(unkeyedFilter, collection: mapping.collection) }
        if !options.dryRun && entry.mongoWithoutKey > 0 {
            let cursor = try MongoCursor(pool: mongo, collection: mapping.collection, filter: unkeyedFilter, options: ["projection": .document(["_id": .int32(1)])])
            var writes: [BulkWrite] = []
            while let doc = try cursor.next() {
                guard let id = doc["_id"] else { continue }
                writes.append(.updateOne(filter: ["_id": id], update: ["$set": .document([RowMapper.keyField: .string(RecordCodec.derivedKey(from: id))])], upsert: false))
                if writes.count >= batchSize { try flushWriteBacks(&writes, mongo: mongo, collection: mapping.collection) }
            }
            try flushWriteBacks(&writes, mongo: mongo, collection: mapping.collection)
        }

        let pgTotal = Int(try control.query("SELECT count(*) FROM \(PostgresConnection.quoteIdentifier(mapping.schema)).\(PostgresConnection.quoteIdentifier(mapping.table))").rows[0][0] ?? "0") ?? 0
        let mongoTotal = try mongo.withClient { (client: MongoClient) throws(MongoError) in try client.count(collection: mapping.collection) }
        let estimate = max(pgTotal, mongoTotal)

        let scan = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-resync-scan")
        try scan.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        let q = PostgresConnection.quoteIdentifier
        let deleted = shape.hasSoftDelete ? "coalesce(\"__nc_deleted\", false)" : "false"
        try scan.query("""
            DECLARE nb_resync NO SCROLL CURSOR FOR
            SELECT "externalId", \(deleted), \(shape.mapper.columns.map { q($0.name) }.joined(separator: ", "))
            FROM \(q(mapping.schema)).\(q(mapping.table))
            WHERE "externalId" IS NOT NULL AND "externalId" <> ''
            ORDER BY "externalId" COLLATE "C"
            """)
        var pgRows: [[String?]] = []
        var pgIndex = 0
        var pgDone = false
        func nextRow() throws -> [String?]? {
            if pgIndex >= pgRows.count {
                guard !pgDone else { return nil }
                pgRows = try scan.query("FETCH \(batchSize) FROM nb_resync").rows
                pgIndex = 0
                if pgRows.isEmpty { pgDone = true; return nil }
            }
            defer { pgIndex += 1 }
            return pgRows[pgIndex]
        }
        let cursor = try MongoCursor(pool: mongo, collection: mapping.collection,
                                     filter: [RowMapper.keyField: .document(["$type": .string("string")])],
                                     options: ["sort": .document([RowMapper.keyField: .int32(1)]), "batchSize": .int32(Int32(batchSize)), "allowDiskUse": .bool(true)])
        var row = try nextRow()
        var doc = try cursor.next()
        var hints: [RecordSynchronizer.Hint] = []
        var lastReport = Date()
        func rowKey(_ row: [String?]?) -> String? { row?[0] ?? nil }
        func documentKey(_ document: Document?) -> String? {
            if case .string(let key)? = document?[RowMapper.keyField] { return key }
            return nil
        }
        func sample(_ category: String, _ key: String) {
            if entry.samples[category, default: []].count < options.sampleSize { entry.samples[category, default: []].append(key) }
        }

        while row != nil || doc != nil {
            let nextRowKey = rowKey(row), nextDocumentKey = documentKey(doc)
            let key: String
            if let nextRowKey, let nextDocumentKey {
                key = KeyOrder.utf8Less(nextRowKey, nextDocumentKey) ? nextRowKey : nextDocumentKey
            } else {
                key = nextRowKey ?? nextDocumentKey!
            }
            var rowsForKey: [[String?]] = []
            var docsForKey: [Document] = []
            while let current = row, rowKey(current) == key { rowsForKey.append(current); row = try nextRow() }
            while let current = doc, documentKey(current) == key { docsForKey.append(current); doc = try cursor.next() }
            if rowsForKey.count > 1 { entry.duplicateKeysNocoDB.append(key); continue }
            if docsForKey.count > 1 { entry.duplicateKeysMongo.append(key); continue }
            let live = rowsForKey.first.map { LiveRow(values: Array($0[2...]), deleted: $0[1] == "t") }
            do {
                let nocodb = try sync.planner.nocodbState(RecordSnapshot(key: key, row: live, changedAt: 0), changed: nil)
                let mongoState = try docsForKey.first.map { try sync.writer.codec.state(document: $0, fallbackAt: 0) } ?? .absent(at: nil)
                switch (nocodb.isPresent, mongoState.isPresent) {
                case (true, false): entry.onlyNocoDB += 1; sample("onlyNocoDB", key)
                case (false, true): entry.onlyMongo += 1; sample("onlyMongo", key)
                case (false, false): entry.equal += 1
                case (true, true):
                    if nocodb.sameContent(as: mongoState) { entry.equal += 1 } else { entry.different += 1; sample("different", key) }
                }
            } catch {
                entry.unmappable += 1
                sample("unmappable", key)
            }
            if !options.dryRun {
                hints.append(RecordSynchronizer.Hint(key: key, changedAt: wallClockMilliseconds()))
                if hints.count >= batchSize { try apply(&hints, sync: sync, mode: mode, writer: writer, mongo: mongo, into: &entry) }
            }
            if Date().timeIntervalSince(lastReport) >= 1 {
                lastReport = Date()
                let done = entry.scanned
                let rate = Double(done) / max(Date().timeIntervalSince(started), 0.001)
                let eta = rate > 0 ? Double(max(estimate - done, 0)) / rate : 0
                progress("\(mapping.table): \(done)/\(estimate) keys, \(Int(rate))/s, ETA \(Int(eta)) s")
                // For consoles (ResyncProgress); never fails the resync.
                try? ResyncProgress.report(table: mapping.qualifiedName, collection: mapping.collection, done: done, estimate: estimate,
                                           elapsedSeconds: Date().timeIntervalSince(started), dryRun: options.dryRun, finished: false, on: control)
            }
        }
        if !options.dryRun { try apply(&hints, sync: sync, mode: mode, writer: writer, mongo: mongo, into: &entry) }
        try scan.query("COMMIT")
        entry.seconds = Date().timeIntervalSince(started)
        try? ResyncProgress.report(table: mapping.qualifiedName, collection: mapping.collection, done: entry.scanned, estimate: estimate,
                                   elapsedSeconds: entry.seconds, dryRun: options.dryRun, finished: true, on: control)
        logger.info("resync table done", metadata: [
            "table": "\(mapping.qualifiedName)", "only_nocodb": "\(entry.onlyNocoDB)", "only_mongo": "\(entry.onlyMongo)",
            "equal": "\(entry.equal)", "different": "\(entry.different)", "seconds": "\(String(format: "%.1f", entry.seconds))",
            "stages_ms": "\(entry.stages.mapValues { Int($0) })",
        ])
        return entry
    }

    private func apply(_ hints: inout [RecordSynchronizer.Hint], sync: RecordSynchronizer, mode: SyncMode,
                       writer: PostgresConnection, mongo: MongoClientPool, into entry: inout ResyncReport.Table) throws {
        guard !hints.isEmpty else { return }
        let batch = hints
        hints.removeAll(keepingCapacity: true)
        let outcome = try writer.bridgeTransaction(fence: fence) {
            let outcome = try sync.synchronize(mode: mode, hints: batch, contiguous: true, connection: writer, mongo: mongo)
            try DeadLetterStore.record(.resync, source: sync.writer.shape.mapping.qualifiedName, outcome.rejections, on: writer)
            return outcome
        }
        entry.nocodbWrites += outcome.nocodbWrites
        entry.mongoWrites += outcome.mongoWrites
        entry.conflicts += outcome.conflicts
        entry.rejected += outcome.rejections.count
        entry.stages.merge(outcome.timings.milliseconds, uniquingKeysWith: +)
    }

    private func flushWriteBacks(_ writes: inout [BulkWrite], mongo: MongoClientPool, collection: String) throws {
        guard !writes.isEmpty else { return }
        let batch = writes
        writes.removeAll(keepingCapacity: true)
        try fence?.checkValid()
        _ = try mongo.withClient { (client: MongoClient) throws(MongoError) in try client.bulkWrite(batch, collection: collection) }
    }
}
