import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

/// MongoDB → NocoDB: capture (change stream) → resolve (conflict policy against the agreed
/// state) → apply (set-based writes to the table) → checkpoint (the resume token, committed in
/// the same transaction as the writes, so a crash neither loses nor double-applies).
public final class ToNocoDBPipeline: Sendable {
    private let configuration: BridgeConfiguration
    private let logger: Logger
    private let stop: StopSignal
    private let mongo: MongoClientPool
    public let statistics: PipelineStatistics

    /// The stored stream position is unusable (history lost, invalid token): streaming from
    /// anywhere else would leave a silent gap, so the bridge stops and asks for a resync.
    public struct HistoryLost: Error, CustomStringConvertible {
        public let code: Int32
        public let message: String
        public var description: String {
            "the stored MongoDB change stream position is no longer usable (error \(code): \(message)); changes may have been missed: run `nocobridge resync`, then start the bridge again"
        }
    }

    public init(configuration: BridgeConfiguration, mongo: MongoClientPool, stop: StopSignal, logger: Logger,
                statistics: PipelineStatistics = PipelineStatistics(direction: "to-nocodb")) {
        self.configuration = configuration
        self.mongo = mongo
        self.stop = stop
        self.logger = logger
        self.statistics = statistics
    }

    public var streamName: String { Self.streamName(database: configuration.mongoDatabase) }

    public static func streamName(database: String) -> String { "mongo:" + database }

    /// Blocks until stopped; reconnects with backoff. Throws only `HistoryLost`.
    public func run() throws {
        try runReconnecting("to-nocodb", configuration: configuration, stop: stop, logger: logger,
                            statistics: statistics, isFatal: { $0 is HistoryLost }, runConnected)
    }

    private func runConnected(onConnected: () -> Void) throws {
        let connection = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-to-nocodb")
        if configuration.capture == .logical {
            try LogicalSlot.useOrigin(try LogicalSlot.name(on: connection) + LogicalSlot.toNocoDBOrigin, on: connection)
        }
        let shapes = try configuration.shapes(on: connection, logger: logger)
        var schema = try SchemaWatch(tables: configuration.tables, interval: configuration.schemaCheckInterval, on: connection)
        let journal = WriteJournal(url: configuration.postgresURL, instanceID: configuration.instanceID)
        let synchronizers = Dictionary(uniqueKeysWithValues: shapes.map {
            ($0.mapping.collection, RecordSynchronizer(shape: $0, policy: configuration.policy, journal: journal,
                                                       nocodbEditTime: configuration.nocodbEditTime))
        })
        let allSynchronizers = Array(synchronizers.values)
        var recovery = IntentRecovery(configuration: configuration, mongo: mongo, logger: logger)
        try recovery.runIfDue(synchronizers: allSynchronizers, connection: connection)
        let token = try PositionStore.load(streamName, on: connection)
        var options = ChangeStreamOptions()
        options.resumeToken = token
        options.fullDocumentBeforeChange = configuration.usePreImages
        options.pipeline = ChangeStreamPipeline.stages(collections: configuration.tables.map(\.collection))
        let stream = try openStream(options: options, resuming: token != nil)
        let queue = ChangeEventQueue(capacity: max(configuration.batchSize * 4, 1000))
        let readerStop = StopSignal()
        let readerDone = DispatchSemaphore(value: 0)
        let reader = StreamReader(stream: stream)
        let readerThread = Thread { [stop] in
            reader.run(into: queue, stop: readerStop, outer: stop)
            readerDone.signal()
        }
        readerThread.name = "nocobridge-stream-reader"
        readerThread.start()
        defer {
            readerStop.stop()
            readerDone.wait()
        }
        onConnected()
        statistics.setConnected(true)
        defer { statistics.setConnected(false) }
        logger.info("to-nocodb pipeline running", metadata: ["resumed": "\(token != nil)"])
        while !stop.isStopped {
            try schema.check(on: connection)
            try recovery.runIfDue(synchronizers: allSynchronizers, connection: connection)
            let items = queue.take(limit: configuration.batchSize, timeoutMilliseconds: configuration.idleSweepMilliseconds, stop: stop)
            guard !items.isEmpty else { continue }
            var changes: [MongoChange] = []
            var lastToken: [UInt8]?
            for item in items {
                switch item {
                case .change(let change):
                    changes.append(change)
                    if let token = change.token { lastToken = token }
                case .idle(let token):
                    lastToken = token
                case .failed(let error):
                    if token != nil, ResumeFailure.isHistoryLost(code: error.code) {
                        throw HistoryLost(code: error.code, message: error.message)
                    }
                    try process(changes, token: lastToken, synchronizers: synchronizers, connection: connection)
                    throw error
                }
            }
            try process(changes, token: lastToken, synchronizers: synchronizers, connection: connection)
        }
    }

    private func openStream(options: ChangeStreamOptions, resuming: Bool) throws -> ChangeStream {
        do {
            return try mongo.watch(collection: nil, options: options)
        } catch {
            if resuming && ResumeFailure.isHistoryLost(code: error.code) {
                throw HistoryLost(code: error.code, message: error.message)
            }
            throw error
        }
    }

    /// One batch: each collection's records resolved and written in a transaction of their
    /// own (so no NocoDB row stays locked while another collection's MongoDB calls run), then
    /// the position. A crash in between re-delivers events whose records are already decided,
    /// which then change nothing. When PostgreSQL refuses a value the mapper let through, the
    /// collection's events are applied again one at a time so only the bad record goes to
    /// dead letters.
    func process(_ changes: [MongoChange], token: [UInt8]?, synchronizers: [String: RecordSynchronizer],
                 connection: PostgresConnection) throws {
        guard !changes.isEmpty || token != nil else { return }
        let started = wallClockMilliseconds()
        var byCollection: [String: [MongoChange]] = [:]
        var order: [String] = []
        for change in changes where change.isDocumentChange {
            guard let collection = change.collection, synchronizers[collection] != nil else { continue }
            if byCollection[collection] == nil { order.append(collection) }
            byCollection[collection, default: []].append(change)
        }
        var totals = RecordSynchronizer.Outcome()
        for collection in order {
            guard let sync = synchronizers[collection], let batch = byCollection[collection] else { continue }
            let collectionStarted = monotonicNanoseconds()
            let outcome = try applyIsolatingBadRecords(batch, synchronizer: sync, connection: connection)
            totals += outcome
            statistics.record(.init(table: sync.writer.shape.mapping.qualifiedName, changes: batch.count,
                                    writes: outcome.mongoWrites + outcome.nocodbWrites,
                                    rejected: outcome.rejections.count, conflictsByRule: outcome.conflictsByRule,
                                    lagMilliseconds: batch.first?.time.map { started - $0 },
                                    applyNanoseconds: monotonicNanoseconds() - collectionStarted))
        }
        if let token { try connection.bridgeTransaction { try PositionStore.save(streamName, position: token, on: connection) } }
        if !changes.isEmpty {
            logger.info("batch applied", metadata: [
                "direction": "to-nocodb", "events": "\(changes.count)", "nocodb_writes": "\(totals.nocodbWrites)",
                "mongo_writes": "\(totals.mongoWrites)", "conflicts": "\(totals.conflicts)",
                "dead_letters": "\(totals.rejections.count)", "echoes": "\(totals.echoes)",
                "lag_ms": "\(changes.first?.time.map { started - $0 } ?? 0)", "stages_ms": "\(totals.timings.summary)",
            ])
        }
    }

    private func applyIsolatingBadRecords(_ changes: [MongoChange], synchronizer: RecordSynchronizer,
                                          connection: PostgresConnection) throws -> RecordSynchronizer.Outcome {
        do {
            return try connection.bridgeTransaction { try apply(changes, synchronizer: synchronizer, connection: connection) }
        } catch let error as PostgresError where error.isDataError {
            guard changes.count > 1 else {
                try deadLetter(changes[0], error: error, synchronizer: synchronizer, connection: connection)
                return RecordSynchronizer.Outcome()
            }
            logger.warning("PostgreSQL refused a value in the batch; applying its events one by one", metadata: [
                "direction": "to-nocodb", "table": "\(synchronizer.writer.shape.mapping.qualifiedName)",
                "events": "\(changes.count)", "error": "\(error)",
            ])
            var outcome = RecordSynchronizer.Outcome()
            for change in changes {
                outcome += try applyIsolatingBadRecords([change], synchronizer: synchronizer, connection: connection)
            }
            return outcome
        }
    }

    /// Records an event PostgreSQL refused, with its key and the server's reason, and moves on.
    private func deadLetter(_ change: MongoChange, error: PostgresError, synchronizer: RecordSynchronizer,
                            connection: PostgresConnection) throws {
        let table = synchronizer.writer.shape.mapping.qualifiedName
        let key = change.key ?? change.documentID.map { "_id " + JSON.serialize($0) } ?? "-"
        let reason = "PostgreSQL refused the record: \(error)"
        logger.error("change sent to dead letters", metadata: [
            "direction": "to-nocodb", "table": "\(table)", "key": "\(key)", "error": "\(reason)",
        ])
        try connection.bridgeTransaction {
            try DeadLetterStore.record(.toNocoDB, source: table, [Rejection(key: key, field: nil, reason: reason,
                                                                              payload: change.document.map { JSON.serialize(.document($0)) })],
                                       on: connection)
        }
    }

    /// The records one collection's events name, decided inside the caller's transaction.
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
            if key == nil, change.document != nil, let id {
                // Inserted without externalId: derive one from _id and write it back first,
                // so the decision reads the document by key like any other.
                let derived = RecordCodec.derivedKey(from: id)
                key = derived
                eventDocument = nil
                writeBacks.append(.updateOne(filter: ["_id": id, RowMapper.keyField: .document(["$exists": .bool(false)])],
                                             update: ["$set": .document([RowMapper.keyField: .string(derived)])], upsert: false))
            }
            guard let key else {
                logger.warning("change event for a document the bridge never saw; nothing to apply", metadata: [
                    "collection": "\(synchronizer.collection)", "operation": "\(change.operation.rawValue)",
                ])
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
            if var existing = hints[key] {
                existing.changedAt = max(existing.changedAt, at)
                existing.eventDocument = eventDocument
                hints[key] = existing
            } else {
                order.append(key)
                hints[key] = RecordSynchronizer.Hint(key: key, changedAt: at, eventDocument: eventDocument)
            }
        }
        var outcome = try synchronizer.synchronize(mode: .change(.mongo), hints: order.compactMap { hints[$0] },
                                                   writeBacks: writeBacks, connection: connection, mongo: mongo)
        outcome.rejections += keyChanges
        if !outcome.rejections.isEmpty {
            let table = synchronizer.writer.shape.mapping.qualifiedName
            for r in outcome.rejections {
                logger.error("change sent to dead letters", metadata: [
                    "collection": "\(configuration.mongoDatabase).\(synchronizer.collection)", "table": "\(table)",
                    "key": "\(r.key ?? "-")", "field": "\(r.field ?? "-")", "error": "\(r.reason)",
                ])
            }
            try DeadLetterStore.record(.toNocoDB, source: table, outcome.rejections, on: connection)
        }
        return outcome
    }
}

/// Owns the change stream on the reader thread (libmongoc clients are single-threaded).
final class StreamReader: @unchecked Sendable {
    // @unchecked: the stream is touched only by the reader thread after construction; the
    // constructing thread hands it over and never uses it again.
    private let stream: ChangeStream

    init(stream: ChangeStream) {
        self.stream = stream
    }

    func run(into queue: ChangeEventQueue, stop: StopSignal, outer: StopSignal) {
        var lastIdleToken: [UInt8]?
        while !stop.isStopped && !outer.isStopped {
            do {
                if let event = try stream.next() {
                    queue.push(.change(MongoChange(event: event, token: stream.resumeToken)), stop: stop)
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
