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
                                                       nocodbEditTime: configuration.nocodbEditTime, history: configuration.history))
        })
        let allSynchronizers = Array(synchronizers.values)
        var recovery = IntentRecovery(configuration: configuration, mongo: mongo, logger: logger)
        try recovery.runIfDue(synchronizers: allSynchronizers, connection: connection)
        let token = try PositionStore.load(streamName, on: connection)
        var options = ChangeStreamOptions()
        options.resumeToken = token
        options.fullDocumentBeforeChange = configuration.usePreImages
        options.pipeline = [["$match": .document([
            "ns.coll": .document(["$in": .array(configuration.tables.map { .string($0.collection) })]),
            "operationType": .document(["$in": .array(["insert", "update", "replace", "delete"].map(Value.string))]),
        ])]]
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
            var events: [Document] = []
            var lastToken: [UInt8]?
            for item in items {
                switch item {
                case .event(let box, let token):
                    events.append(box.document)
                    if let token { lastToken = token }
                case .idle(let token):
                    lastToken = token
                case .failed(let error):
                    if token != nil, ResumeFailure.isHistoryLost(code: error.code) {
                        throw HistoryLost(code: error.code, message: error.message)
                    }
                    try process(events, token: lastToken, synchronizers: synchronizers, connection: connection)
                    throw error
                }
            }
            try process(events, token: lastToken, synchronizers: synchronizers, connection: connection)
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

    /// One batch: every event's record resolved and written, then the position, in one
    /// transaction. When PostgreSQL refuses a value the mapper let through, the batch is
    /// applied again one event at a time so only the bad record goes to dead letters.
    func process(_ events: [Document], token: [UInt8]?, synchronizers: [String: RecordSynchronizer],
                 connection: PostgresConnection) throws {
        do {
            try processTogether(events, token: token, synchronizers: synchronizers, connection: connection)
        } catch let error as PostgresError where error.isDataError {
            guard events.count > 1 else {
                try deadLetter(events.first, error: error, token: token, synchronizers: synchronizers, connection: connection)
                return
            }
            logger.warning("PostgreSQL refused a value in the batch; applying its events one by one", metadata: [
                "direction": "to-nocodb", "events": "\(events.count)", "error": "\(error)",
            ])
            for event in events {
                try process([event], token: nil, synchronizers: synchronizers, connection: connection)
            }
            if let token { try PositionStore.save(streamName, position: token, on: connection) }
        }
    }

    /// Records an event PostgreSQL refused, with its key and the server's reason, and moves on.
    private func deadLetter(_ event: Document?, error: PostgresError, token: [UInt8]?,
                            synchronizers: [String: RecordSynchronizer], connection: PostgresConnection) throws {
        var source = "-", key = "-"
        if let event, case .document(let ns)? = event["ns"], case .string(let coll)? = ns["coll"] {
            source = synchronizers[coll]?.writer.shape.mapping.qualifiedName ?? coll
            key = Self.key(of: event) ?? {
                if case .document(let dk)? = event["documentKey"], let id = dk["_id"] { return "_id " + JSON.serialize(id) }
                return "-"
            }()
        }
        let reason = "PostgreSQL refused the record: \(error)"
        logger.error("change sent to dead letters", metadata: [
            "direction": "to-nocodb", "table": "\(source)", "key": "\(key)", "error": "\(reason)",
        ])
        try connection.bridgeTransaction {
            try DeadLetterLog.record(direction: "to-nocodb", source: source, [(key, nil, reason, nil)], on: connection)
            if let token { try PositionStore.save(streamName, position: token, on: connection) }
        }
    }

    private func processTogether(_ events: [Document], token: [UInt8]?, synchronizers: [String: RecordSynchronizer],
                                 connection: PostgresConnection) throws {
        guard !events.isEmpty || token != nil else { return }
        let started = wallClockMilliseconds()
        var byCollection: [String: [Document]] = [:]
        var order: [String] = []
        for event in events {
            guard case .document(let ns)? = event["ns"], case .string(let coll)? = ns["coll"] else { continue }
            if byCollection[coll] == nil { order.append(coll) }
            byCollection[coll, default: []].append(event)
        }
        var totals = RecordSynchronizer.Outcome()
        try connection.bridgeTransaction {
            for coll in order {
                guard let sync = synchronizers[coll], let batch = byCollection[coll] else { continue }
                let collectionStarted = monotonicNanoseconds()
                let outcome = try processCollection(batch, synchronizer: sync, connection: connection)
                totals.mongoWrites += outcome.mongoWrites
                totals.nocodbWrites += outcome.nocodbWrites
                totals.conflicts += outcome.conflicts
                totals.rejections += outcome.rejections
                statistics.record(.init(table: sync.writer.shape.mapping.qualifiedName, changes: batch.count,
                                        writes: outcome.mongoWrites + outcome.nocodbWrites,
                                        rejected: outcome.rejections.count, conflictsByRule: outcome.conflictsByRule,
                                        lagMilliseconds: Self.eventTime(batch.first!).map { started - $0 },
                                        applyNanoseconds: monotonicNanoseconds() - collectionStarted))
            }
            if let token { try PositionStore.save(streamName, position: token, on: connection) }
        }
        if !events.isEmpty {
            logger.info("batch applied", metadata: [
                "direction": "to-nocodb", "events": "\(events.count)", "nocodb_writes": "\(totals.nocodbWrites)",
                "mongo_writes": "\(totals.mongoWrites)", "conflicts": "\(totals.conflicts)",
                "dead_letters": "\(totals.rejections.count)",
                "lag_ms": "\(Self.eventTime(events[0]).map { started - $0 } ?? 0)",
            ])
        }
    }

    private func processCollection(_ events: [Document], synchronizer: RecordSynchronizer,
                                   connection: PostgresConnection) throws -> RecordSynchronizer.Outcome {
        let collection = synchronizer.collection
        // Deletes carry only _id: find their keys (pre-image, else the key map).
        var unknownIDs: [Value] = []
        for event in events where Self.key(of: event) == nil {
            if case .document(let dk)? = event["documentKey"], let id = dk["_id"] { unknownIDs.append(id) }
        }
        // An update may have changed externalId itself: compare with the key known for its _id.
        for event in events where Self.isUpdate(event) && Self.key(of: event) != nil {
            if case .document(let dk)? = event["documentKey"], let id = dk["_id"] { unknownIDs.append(id) }
        }
        let mapped = try synchronizer.store.keys(forMongoIDs: unknownIDs, on: connection)
        var keyChanges: [(key: String, field: String?, reason: String, payload: String?)] = []
        var hints: [String: RecordSynchronizer.Hint] = [:]
        var order: [String] = []
        var writeBacks: [BulkWrite] = []
        var latestDocument: [String: Document] = [:]
        // Keys met earlier in this batch: a document inserted and deleted within one batch has
        // no key-map entry yet when its delete is read.
        var batchKeys: [Value: String] = [:]
        for event in events {
            let at = Self.eventTime(event) ?? wallClockMilliseconds()
            var key = Self.key(of: event)
            var documentWithoutKey: Document?
            let id: Value? = if case .document(let dk)? = event["documentKey"] { dk["_id"] } else { nil }
            if key == nil, let id { key = batchKeys[id] ?? mapped[id] }
            if key == nil, case .document(var full)? = event["fullDocument"], let id {
                // Inserted without externalId: derive one from _id and write it back once.
                let derived = RecordCodec.derivedKey(from: id)
                key = derived
                full[RowMapper.keyField] = .string(derived)
                documentWithoutKey = full
                writeBacks.append(.updateOne(filter: ["_id": id, RowMapper.keyField: .document(["$exists": .bool(false)])],
                                             update: ["$set": .document([RowMapper.keyField: .string(derived)])], upsert: false))
            }
            guard let key else {
                logger.warning("change event for a document the bridge never saw; nothing to apply", metadata: [
                    "collection": "\(collection)", "operation": "\(event["operationType"].map { JSON.serialize($0) } ?? "-")",
                ])
                continue
            }
            if let id, Self.isUpdate(event), let known = batchKeys[id] ?? mapped[id], known != key {
                keyChanges.append((known, RowMapper.keyField, """
                    externalId changed from "\(known)" to "\(key)" on an existing document; NocoDB keeps the \
                    record under "\(known)": set it back in MongoDB, or delete the document and insert it anew
                    """, nil))
                continue
            }
            if let id { batchKeys[id] = key }
            if case .document(let full)? = event["fullDocument"] { latestDocument[key] = full } else { latestDocument[key] = nil }
            if var existing = hints[key] {
                existing.changedAt = max(existing.changedAt, at)
                if documentWithoutKey != nil { existing.documentWithoutKey = documentWithoutKey }
                hints[key] = existing
            } else {
                order.append(key)
                hints[key] = RecordSynchronizer.Hint(key: key, changedAt: at, documentWithoutKey: documentWithoutKey)
            }
        }
        // Echoes of the bridge's own writes are the common case: drop events whose document
        // already equals the agreed state before taking locks or reading MongoDB. (A stale
        // agreed state only sends an event down the full, locked path.)
        let candidates = order.filter { hints[$0]?.documentWithoutKey == nil && latestDocument[$0] != nil }
        let agreed = try synchronizer.store.agreedStates(candidates, on: connection)
        var echoes = 0
        for key in candidates {
            guard let doc = latestDocument[key], let known = agreed[key],
                  let state = try? synchronizer.writer.codec.state(document: doc, fallbackAt: 0),
                  state.sameContent(as: known) else { continue }
            hints[key] = nil
            echoes += 1
        }
        var outcome = try synchronizer.synchronize(changed: .mongo, hints: order.compactMap { hints[$0] },
                                                   extraMongoWrites: writeBacks, connection: connection, mongo: mongo)
        outcome.echoes = echoes
        outcome.rejections += keyChanges
        if !outcome.rejections.isEmpty {
            let name = configuration.mongoDatabase + "." + collection
            for r in outcome.rejections {
                logger.error("change sent to dead letters", metadata: [
                    "collection": "\(name)", "table": "\(synchronizer.writer.shape.mapping.qualifiedName)",
                    "key": "\(r.key)", "field": "\(r.field ?? "-")", "error": "\(r.reason)",
                ])
            }
            try DeadLetterLog.record(direction: "to-nocodb", source: name, outcome.rejections, on: connection)
        }
        return outcome
    }

    static func isUpdate(_ event: Document) -> Bool {
        event["operationType"] == .string("update") || event["operationType"] == .string("replace")
    }

    /// `externalId` from the event's document or pre-image.
    static func key(of event: Document) -> String? {
        for field in ["fullDocument", "fullDocumentBeforeChange"] {
            if case .document(let doc)? = event[field], case .string(let key)? = doc[RowMapper.keyField], !key.isEmpty {
                return key
            }
        }
        return nil
    }

    /// The event's wall time (MongoDB 6+), else its cluster time's seconds.
    static func eventTime(_ event: Document) -> Int64? {
        if case .date(let ms)? = event["wallTime"] { return ms }
        if case .timestamp(let seconds, _)? = event["clusterTime"] { return Int64(seconds) * 1000 }
        return nil
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
                    queue.push(.event(EventBox(document: event), token: stream.resumeToken), stop: stop)
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
