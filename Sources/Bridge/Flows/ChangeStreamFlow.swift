import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

/// MongoDB → NocoDB for one collection: its own change stream → decide → write the NocoDB
/// table and the stream position in one transaction, so a crash neither loses nor
/// double-applies. Each collection has its own flow (thread, stream, connection, position),
/// so a bulk change of one collection never holds up another's next change.
///
/// The stream is opened on the collection, not on the database with a `$match` on `ns`: a
/// server may build (and look up, `updateLookup`) every event of the database before a
/// user stage filters it. SecantusDB does (`commands.py`, `_aggregate_change_stream`: the
/// namespace filter is the stream's scope; user stages run on projected events), so three
/// database streams each looked up all 20,000 documents of another collection's
/// `updateMany` before reaching their own next change. mongod pushes such a `$match` down
/// (change stream rewrites, 5.1+), but a collection stream costs it nothing either. A
/// collection stream still sees a rename onto the collection and a dropped database, each
/// followed by `invalidate` (mongod's change stream jstests: "watching a collection which
/// another collection is renamed _to_ causes an invalidate"); the flow reopens after it.
///
/// A collection dropped or renamed (or its database dropped) under the running bridge is how
/// `mongorestore --drop` begins: the documents that follow are older than what NocoDB holds.
/// The flow then holds the table (its changes wait, in this flow and the NocoDB → MongoDB
/// one) until the collection has been quiet for `restoreQuietPeriod`, reconciles the table as
/// `resync --restored mongo` would (NocoDB's newer state wins, deletions stay deleted,
/// records created since the backup come back), recreates the bridge's indexes, and goes on.
final class ChangeStreamFlow: Sendable {
    let mapping: TableMapping
    let environment: FlowEnvironment
    private let logger: Logger

    /// The stream ended (`invalidate`: the collection or its database was dropped, or another
    /// collection renamed onto it): it continues from just after that event on a new stream.
    struct Invalidated: Error, CustomStringConvertible {
        let token: [UInt8]
        let databaseWide: Bool
        var description: String { "the change stream was invalidated (its collection or database was dropped or replaced); reopening after it" }
    }

    init(mapping: TableMapping, environment: FlowEnvironment) {
        self.mapping = mapping
        self.environment = environment
        logger = environment.logger("to-nocodb", table: mapping)
    }

    private var configuration: BridgeConfiguration { environment.configuration }
    private var statistics: PipelineStatistics { environment.toNocoDB }
    private var mongo: MongoClientPool { environment.mongo }

    var streamName: String { Self.streamName(database: configuration.mongoDatabase, collection: mapping.collection) }
    private var databaseScopedName: String { Self.databaseScopedName(database: configuration.mongoDatabase, collection: mapping.collection) }

    /// The position of the collection's own stream.
    static func streamName(database: String, collection: String) -> String { "mongo-collection:" + database + "." + collection }

    /// Where a collection's position was kept while its stream was opened on the database
    /// (filtered to it): a server may refuse such a token for a collection stream
    /// (SecantusDB: "refusing cross-namespace resume"), so the flow resumes it on a database
    /// stream, then moves to its own (`ScopeMove`).
    static func databaseScopedName(database: String, collection: String) -> String { "mongo:" + database + "." + collection }

    /// Where positions were kept while one stream served every collection.
    static func legacyStreamName(database: String) -> String { "mongo:" + database }

    /// The position a collection's flow resumes from, and whether it was kept for a database
    /// stream (its own first, then an earlier release's per-collection one, then the single
    /// stream's): the one place that decides it, for the flow, `install` and `resync`.
    static func storedPosition(database: String, collection: String,
                               on connection: PostgresConnection) throws -> (token: [UInt8], databaseWide: Bool)? {
        if let own = try PositionStore.load(streamName(database: database, collection: collection), on: connection) {
            return (own, false)
        }
        if let older = try PositionStore.load(databaseScopedName(database: database, collection: collection), on: connection)
            ?? PositionStore.load(legacyStreamName(database: database), on: connection) {
            return (older, true)
        }
        return nil
    }

    /// The database stream has delivered everything up to after the collection stream's
    /// starting point, and that point is now the flow's position: reopen on the collection.
    private struct MovedToCollectionStream: Error {}

    /// Moving a position kept for a database stream to the collection's own stream without a
    /// gap: the collection stream's starting token is taken first; once the database stream
    /// has answered a batch with no event (asked after that token was taken, so it has
    /// delivered everything before it), the flow stores the token and reopens. Events between
    /// the two are read twice, which changes nothing.
    private struct ScopeMove {
        let token: [UInt8]
        var caughtUp = false
    }

    /// Blocks until stopped; reconnects with backoff. Throws only `MongoHistoryLost`.
    func run() throws {
        var startAfter: Invalidated?
        try runReconnecting("to-nocodb \(mapping.qualifiedName)", configuration: configuration, stop: environment.stop,
                            logger: logger, statistics: statistics, table: mapping.qualifiedName,
                            isFatal: { $0 is MongoHistoryLost }) { onConnected in
            do {
                try runConnected(startAfter: startAfter, onConnected: onConnected)
                startAfter = nil
            } catch is MovedToCollectionStream {
                startAfter = nil
                logger.info("to-nocodb flow moved from the database's change stream to the collection's own")
            } catch let invalidated as Invalidated {
                // Expected after a drop or a rename onto the collection (a restore, `$out`):
                // no failure to count or back off from. Until a later connection fails, events
                // after the invalidate may be read twice, which changes nothing.
                startAfter = invalidated
                logger.info("change stream invalidated (the collection was dropped or replaced); reopening after it")
            }
        }
    }

    private func runConnected(startAfter: Invalidated?, onConnected: () -> Void) throws {
        let connection = try PostgresConnection(url: configuration.postgresURL, applicationName: environment.applicationName("nocobridge-to-nocodb", table: mapping))
        let shape = try configuration.shape(of: mapping, on: connection, logger: logger)
        var schema = try SchemaWatch(tables: [mapping], interval: configuration.schemaCheckInterval, on: connection)
        let synchronizer = environment.synchronizer(shape)
        // What this flow's last connection left unsettled (a transaction that failed after
        // its MongoDB write) is settled before anything is decided again.
        environment.journal.abandonAll(collection: mapping.collection)
        var recovery = IntentRecovery(configuration: configuration, mongo: mongo, logger: logger, fence: environment.fence,
                                      journal: environment.journal)
        try recovery.runIfDue(synchronizers: [synchronizer], connection: connection)
        var hold = try TableHoldStore.reason(mapping.collection, on: connection).map { Hold(reason: $0) }
        // Reopening after an invalidate starts after it: no stored position is needed.
        let stored = startAfter == nil
            ? try Self.storedPosition(database: configuration.mongoDatabase, collection: mapping.collection, on: connection) : nil
        let token = stored?.token
        let databaseWide = startAfter?.databaseWide ?? stored?.databaseWide ?? false
        var options = ChangeStreamOptions()
        options.resumeToken = token
        options.startAfter = startAfter?.token
        options.fullDocumentBeforeChange = configuration.usePreImages
        options.pipeline = ChangeStreamPipeline.stages(collections: [mapping.collection])
        var move = databaseWide ? try Self.startingToken(collection: mapping.collection, pool: mongo).map { ScopeMove(token: $0) } : nil
        let position = databaseWide ? databaseScopedName : streamName
        // Read before the stream's first batch is asked for (see `StreamReader`).
        let stamps = try PostgresConnection(url: configuration.postgresURL,
                                            applicationName: environment.applicationName("nocobridge-stream", table: mapping))
        let firstStamp = try AgreedStateStore.lastSaved(on: stamps)
        let stream = try openStream(options: options, databaseWide: databaseWide, resuming: token != nil || startAfter != nil)
        let queue = ChangeEventQueue(capacity: max(configuration.batchSize * 4, 1000))
        let readerStop = environment.stop.child()
        let readerDone = Completion()
        let reader = StreamReader(stream: stream, stamps: stamps, firstStamp: firstStamp, logger: logger)
        BlockingExecutor.start(name: "nocobridge-stream-\(mapping.collection)") {
            reader.run(into: queue, stop: readerStop)
            readerDone.signal()
        }
        defer {
            readerStop.stop()
            readerDone.wait()
        }
        onConnected()
        statistics.setConnected(true, table: mapping.qualifiedName)
        defer { statistics.setConnected(false, table: mapping.qualifiedName) }
        logger.info("to-nocodb flow running", metadata: ["resumed": "\(token != nil)"])
        let stop = environment.stop
        while !stop.isStopped {
            try schema.check(on: connection)
            try recovery.runIfDue(synchronizers: [synchronizer], connection: connection)
            if let current = hold, current.isQuiet(for: configuration.restoreQuietPeriod) {
                try endHold(current, synchronizer: synchronizer, connection: connection)
                hold = nil
            }
            let items = queue.take(limit: configuration.batchSize, timeoutMilliseconds: configuration.idleSweepMilliseconds, stop: stop)
            guard !items.isEmpty else { continue }
            var changes: [MongoChange] = []
            var lastToken: [UInt8]?
            for item in items {
                switch item {
                case .change(let change):
                    if change.collection == mapping.collection || change.renamedTo == mapping.collection || !change.isDocumentChange {
                        if let reason = Self.holdReason(change, collection: mapping.collection) {
                            try beginHold(reason, changes: &changes, token: change.token, position: position,
                                          synchronizer: synchronizer, connection: connection, hold: &hold)
                            if change.operation == .invalidate, let token = change.token {
                                throw Invalidated(token: token, databaseWide: databaseWide)
                            }
                        } else if hold != nil {
                            hold?.sawActivity()
                        } else {
                            changes.append(change)
                        }
                    }
                    if let token = change.token { lastToken = token }
                case .idle(let token):
                    lastToken = token
                    move?.caughtUp = true
                case .failed(let error):
                    try process(changes, token: lastToken, position: position, synchronizer: synchronizer, connection: connection)
                    if error.isHistoryLost {
                        throw MongoHistoryLost(code: error.code, message: error.message)
                    }
                    throw error
                }
            }
            try process(changes, token: lastToken, position: position, synchronizer: synchronizer, connection: connection)
            if let ready = move, ready.caughtUp, hold == nil {
                try connection.bridgeTransaction(fence: environment.fence) {
                    try PositionStore.save(streamName, position: ready.token, on: connection)
                    try PositionStore.delete(databaseScopedName, on: connection)
                }
                move = nil
                throw MovedToCollectionStream()
            }
        }
    }

    /// Where the collection's own stream starts now, or nil if the server gives no token.
    static func startingToken(collection: String, pool: MongoClientPool) throws(MongoError) -> [UInt8]? {
        var options = ChangeStreamOptions()
        options.maxAwaitMilliseconds = 50
        let stream = try pool.watch(collection: collection, options: options)
        if let token = stream.resumeToken { return token }
        _ = try stream.next()
        return stream.resumeToken
    }

    private func openStream(options: ChangeStreamOptions, databaseWide: Bool, resuming: Bool) throws -> ChangeStream {
        do {
            return try mongo.watch(collection: databaseWide ? nil : mapping.collection, options: options)
        } catch {
            if resuming && error.isHistoryLost {
                throw MongoHistoryLost(code: error.code, message: error.message)
            }
            throw error
        }
    }

    // MARK: Restores under the running bridge

    /// A restore in progress: its changes are skipped (the reconcile reads the result) until
    /// the collection is quiet.
    struct Hold {
        let reason: String
        private(set) var lastActivity = ContinuousClock.now

        init(reason: String) { self.reason = reason }

        mutating func sawActivity() { lastActivity = .now }

        func isQuiet(for period: Duration) -> Bool { ContinuousClock.now - lastActivity >= period }
    }

    /// Why an event begins a hold of `collection`, or nil.
    static func holdReason(_ change: MongoChange, collection: String) -> String? {
        switch change.operation {
        case .drop where change.collection == collection: "the collection was dropped"
        case .rename where change.collection == collection: "the collection was renamed to \(change.renamedTo ?? "?")"
        case .rename where change.renamedTo == collection: "another collection (\(change.collection ?? "?")) was renamed onto it"
        case .dropDatabase: "the database was dropped"
        case .invalidate: "the change stream was invalidated"
        default: nil
        }
    }

    private func beginHold(_ reason: String, changes: inout [MongoChange], token: [UInt8]?, position: String,
                           synchronizer: RecordSynchronizer, connection: PostgresConnection, hold: inout Hold?) throws {
        try process(changes, token: nil, position: position, synchronizer: synchronizer, connection: connection)
        changes.removeAll()
        try connection.bridgeTransaction(fence: environment.fence) {
            try TableHoldStore.hold(mapping.collection, reason: reason, on: connection)
            if let token { try PositionStore.save(position, position: token, on: connection) }
        }
        if hold == nil {
            logger.warning("MongoDB collection replaced under the bridge (a restore?); holding its changes until it is quiet, then reconciling it as after a restore of MongoDB",
                           metadata: ["reason": "\(reason)", "collection": "\(configuration.mongoDatabase).\(mapping.collection)"])
        }
        hold = Hold(reason: reason)
    }

    private func endHold(_ hold: Hold, synchronizer: RecordSynchronizer, connection: PostgresConnection) throws {
        logger.warning("reconciling the table after its collection was replaced", metadata: ["reason": "\(hold.reason)"])
        var options = ResyncOptions()
        options.restored = .mongo
        var single = configuration
        single.tables = [mapping]
        var resync = Resync(configuration: single, options: options, logger: logger)
        resync.fence = environment.fence
        let report = try resync.reconcileTables()
        try Installer.createKeyIndex(collection: mapping.collection, pool: mongo)
        try connection.bridgeTransaction(fence: environment.fence) { try TableHoldStore.release(mapping.collection, on: connection) }
        logger.warning("table reconciled after the collection was replaced; syncing again",
                       metadata: ["report": "\(report.text().trimmingCharacters(in: .whitespacesAndNewlines))"])
    }

    // MARK: Applying

    /// One batch: its records decided and written, and the position, in one transaction. When
    /// PostgreSQL refuses a value the mapper let through, the events are applied again one at
    /// a time so only the bad record goes to dead letters.
    func process(_ changes: [MongoChange], token: [UInt8]?, position: String, synchronizer: RecordSynchronizer,
                 connection: PostgresConnection) throws {
        guard !changes.isEmpty || token != nil else { return }
        let started = wallClockMilliseconds()
        let begun = monotonicNanoseconds()
        let outcome = try applyIsolatingBadRecords(changes, token: token, position: position, synchronizer: synchronizer,
                                                   connection: connection)
        guard !changes.isEmpty else { return }
        statistics.record(.init(table: mapping.qualifiedName, changes: changes.count,
                                writes: outcome.mongoWrites + outcome.nocodbWrites,
                                rejected: outcome.rejections.count, conflictsByRule: outcome.conflictsByRule,
                                lagMilliseconds: changes.first?.time.map { started - $0 },
                                applyNanoseconds: monotonicNanoseconds() - begun, documentsNotRead: outcome.unreadDocuments))
        logger.info("batch applied", metadata: [
            "direction": "to-nocodb", "events": "\(changes.count)", "nocodb_writes": "\(outcome.nocodbWrites)",
            "mongo_writes": "\(outcome.mongoWrites)", "conflicts": "\(outcome.conflicts)",
            "dead_letters": "\(outcome.rejections.count)", "echoes": "\(outcome.echoes)",
            "lag_ms": "\(changes.first?.time.map { started - $0 } ?? 0)", "stages_ms": "\(outcome.timings.summary)",
        ])
    }

    private func applyIsolatingBadRecords(_ changes: [MongoChange], token: [UInt8]?, position: String,
                                          synchronizer: RecordSynchronizer,
                                          connection: PostgresConnection) throws -> RecordSynchronizer.Outcome {
        do {
            return try connection.bridgeTransaction(fence: environment.fence) {
                let outcome = try apply(changes, synchronizer: synchronizer, connection: connection)
                if let token { try PositionStore.save(position, position: token, on: connection) }
                return outcome
            }
        } catch let error as PostgresError where error.isDataError {
            guard changes.count > 1 else {
                try deadLetter(changes.first, error: error, token: token, position: position, connection: connection)
                return RecordSynchronizer.Outcome()
            }
            logger.warning("PostgreSQL refused a value in the batch; applying its events one by one", metadata: [
                "events": "\(changes.count)", "error": "\(error)",
            ])
            var outcome = RecordSynchronizer.Outcome()
            for change in changes {
                outcome += try applyIsolatingBadRecords([change], token: nil, position: position, synchronizer: synchronizer,
                                                        connection: connection)
            }
            if let token { try connection.bridgeTransaction(fence: environment.fence) { try PositionStore.save(position, position: token, on: connection) } }
            return outcome
        }
    }

    /// Records an event PostgreSQL refused, with its key and the server's reason, and moves on.
    private func deadLetter(_ change: MongoChange?, error: PostgresError, token: [UInt8]?, position: String,
                            connection: PostgresConnection) throws {
        let key = change?.key ?? change?.documentID.map { "_id " + JSON.serialize($0) } ?? "-"
        let reason = "PostgreSQL refused the record: \(error)"
        logger.error("change sent to dead letters", metadata: ["key": "\(key)", "error": "\(reason)"])
        try connection.bridgeTransaction(fence: environment.fence) {
            try DeadLetterStore.record(.toNocoDB, source: mapping.qualifiedName,
                                       [Rejection(key: key, field: nil, reason: reason, payload: change?.document.map { JSON.serialize(.document($0)) })],
                                       on: connection)
            if let token { try PositionStore.save(position, position: token, on: connection) }
        }
    }

    /// The records the events name, decided inside the caller's transaction.
    private func apply(_ changes: [MongoChange], synchronizer: RecordSynchronizer,
                       connection: PostgresConnection) throws -> RecordSynchronizer.Outcome {
        // Deletes carry only _id: find their keys (pre-image, else the key map). An update may
        // have changed externalId itself: compare with the key known for its _id.
        let unknownIDs = changes.compactMap { change in change.key == nil || change.isUpdate ? change.documentID : nil }
        let mapped = try synchronizer.keyMap.keys(forMongoIDs: unknownIDs, on: connection)
        var keyChanges: [Rejection] = []
        var hints: [String: RecordSynchronizer.Hint] = [:]
        var order: [String] = []
        var writeBacks: [BulkWrite] = []
        // Keys met earlier in this batch: a document inserted and deleted within one batch has
        // no key-map entry yet when its delete is read.
        var batchKeys: [Value: String] = [:]
        for change in changes {
            let at = change.time ?? wallClockMilliseconds()
            var key = change.key
            let id = change.documentID
            if key == nil, let id { key = batchKeys[id] ?? mapped[id] }
            var eventDocument = change.documentTooLarge ? nil : change.document
            var derived = false
            if key == nil, change.document != nil, let id {
                derived = true
                // Inserted without externalId: derive one from _id and write it back first, so
                // the decision reads the document by key like any other.
                let derived = RecordCodec.derivedKey(from: id)
                key = derived
                eventDocument = nil
                writeBacks.append(.updateOne(filter: ["_id": id, RowMapper.keyField: .document(["$exists": .bool(false)])],
                                             update: ["$set": .document([RowMapper.keyField: .string(derived)])], upsert: false))
            }
            guard let key else {
                logger.warning("change event for a document the bridge never saw; nothing to apply",
                               metadata: ["operation": "\(change.operation.rawValue)"])
                continue
            }
            if let id, change.isUpdate, let known = batchKeys[id] ?? mapped[id], known != key {
                keyChanges.append(Rejection(key: known, field: RowMapper.keyField, reason: """
                    externalId changed from "\(known)" to "\(key)" on an existing document; NocoDB keeps the \
                    record under "\(known)": set it back in MongoDB, or delete the document and insert it anew
                    """))
                continue
            }
            if let id { batchKeys[id] = key }
            // What the event shows of MongoDB, unless the document must be read anyway (too
            // large to travel, or keyed just now by a write-back).
            let streamed: RecordSynchronizer.Hint.Streamed? = switch change.operation {
            case _ where change.documentTooLarge || derived: nil
            case .update: .init(document: eventDocument, savedBefore: change.savedBefore)
            case .insert, .replace: eventDocument.map { .init(document: $0, savedBefore: nil) }
            default: nil
            }
            let showedDocument = [.insert, .update, .replace].contains(change.operation)
            if var existing = hints[key] {
                existing.changedAt = max(existing.changedAt, at)
                existing.eventDocument = eventDocument
                existing.streamed = streamed
                existing.eventShowedDocument = showedDocument
                hints[key] = existing
            } else {
                order.append(key)
                hints[key] = RecordSynchronizer.Hint(key: key, changedAt: at, eventDocument: eventDocument, streamed: streamed,
                                                     eventShowedDocument: showedDocument)
            }
        }
        var outcome = try synchronizer.synchronize(mode: .change(.mongo), hints: order.compactMap { hints[$0] },
                                                   writeBacks: writeBacks, connection: connection, mongo: mongo)
        outcome.rejections += keyChanges
        if !outcome.rejections.isEmpty {
            for r in outcome.rejections {
                logger.error("change sent to dead letters", metadata: [
                    "collection": "\(configuration.mongoDatabase).\(mapping.collection)",
                    "key": "\(r.key ?? "-")", "field": "\(r.field ?? "-")", "error": "\(r.reason)",
                ])
            }
            try DeadLetterStore.record(.toNocoDB, source: mapping.qualifiedName, outcome.rejections, on: connection)
        }
        return outcome
    }
}

/// The stored stream position is unusable (history lost, invalid token): streaming from
/// anywhere else would leave a silent gap, so the bridge stops and asks for a resync.
public struct MongoHistoryLost: Error, CustomStringConvertible {
    public let code: Int32
    public let message: String
    public var description: String {
        "the stored MongoDB change stream position is no longer usable (error \(code): \(message)); changes may have been missed: run `nocobridge resync`, then start the bridge again"
    }
}

/// Owns the change stream on the reader thread (libmongoc clients are single-threaded), and
/// a PostgreSQL connection of its own on which it reads `AgreedStateStore.lastSaved` before
/// each batch is asked for: an update event's document is MongoDB's as the server looked it up
/// for that batch, so it stands for a read of any record whose agreed state was saved no later
/// (`RecordSynchronizer.Hint.Streamed`).
final class StreamReader: @unchecked Sendable {
    // @unchecked: the stream and the connection are touched only by the reader thread after
    // construction; the constructing thread hands them over and never uses them again.
    private let stream: ChangeStream
    private let stamps: PostgresConnection
    private let firstStamp: Int64
    private let logger: Logger

    init(stream: ChangeStream, stamps: PostgresConnection, firstStamp: Int64, logger: Logger) {
        self.stream = stream
        self.stamps = stamps
        self.firstStamp = firstStamp
        self.logger = logger
    }

    private var stampFailing = false

    /// nil when the number cannot be read: every record of the batch is then read again.
    private func stamp() -> Int64? {
        do {
            let value = try AgreedStateStore.lastSaved(on: stamps)
            stampFailing = false
            return value
        } catch {
            if !stampFailing {
                logger.warning("cannot read the agreed-state number; changed documents are read again until it can",
                               metadata: ["error": "\(error)"])
            }
            stampFailing = true
            return nil
        }
    }

    func run(into queue: ChangeEventQueue, stop: StopSignal) {
        var lastIdleToken: [UInt8]?
        var stamp: Int64? = firstStamp
        var first = true
        while !stop.isStopped {
            do {
                // The next call asks the server for a batch: read the number first. A failed
                // read gives no number, and every record of the batch is read again.
                if stream.endedBatch && !first { stamp = self.stamp() }
                first = false
                if let event = try stream.next() {
                    var change = MongoChange(event: event, token: stream.resumeToken)
                    change.savedBefore = stamp
                    queue.push(.change(change), stop: stop)
                    // Nothing follows an invalidate on this stream.
                    if change.operation == .invalidate { return }
                } else if let token = stream.resumeToken, token != lastIdleToken {
                    lastIdleToken = token
                    queue.push(.idle(token: token), stop: stop)
                }
            } catch {
                queue.push(.failed(error), stop: stop)
                return
            }
        }
    }
}
