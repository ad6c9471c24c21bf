import Logging
import Mongo
import Postgres
import SyncCore

/// The step both directions share, inside one PostgreSQL transaction: lock the records,
/// read the agreed state and both sides' current state, let the conflict policy decide, write
/// whichever sides differ from the decision, and record the new agreed state, conflicts and
/// `_id` ⇄ key pairs. Comparing states (not replaying changes) is what makes the bridge's own
/// writes invisible when they come back: they equal the agreed state.
public struct RecordSynchronizer: Sendable {
    public let writer: TableWriter
    public let store: SyncStateStore
    public let policy: ConflictPolicy

    /// Insert records the bridge never agreed on without reading MongoDB first; the unique
    /// index refusing a duplicate sends just those keys down the full path. Only safe when the
    /// collection has the bridge's unique index on `externalId`.
    public let optimisticInserts: Bool

    /// Where MongoDB writes are announced before they are made (nil: not announced, for
    /// callers that hold no lasting state, such as tests of the decision alone).
    public let journal: WriteJournal?

    /// Where the time of a NocoDB edit comes from, for `last_write_wins` and tombstones.
    public enum NocoDBEditTime: Sendable {
        /// The capture trigger stamps `updatedAt` on every edit made outside the bridge.
        case updatedAtColumn
        /// Nothing stamps `updatedAt` (logical capture): the latest of `updatedAt`, NocoDB's
        /// own `updated_at`, and the commit time of the change being applied.
        case latestKnown
    }

    public let nocodbEditTime: NocoDBEditTime

    /// Where each batch's decisions are recorded (`History.swift`); nil: no history.
    public let history: HistoryLog?

    public init(shape: TableShape, policy: ConflictPolicy, optimisticInserts: Bool = false, journal: WriteJournal? = nil,
                nocodbEditTime: NocoDBEditTime = .updatedAtColumn, history: HistoryLog? = nil) {
        writer = TableWriter(shape: shape)
        store = SyncStateStore(collection: shape.mapping.collection)
        self.policy = policy
        self.optimisticInserts = optimisticInserts
        self.journal = journal
        self.nocodbEditTime = nocodbEditTime
        self.history = history
    }

    public var collection: String { store.collection }

    /// What is known about a key from the change that named it.
    public struct Hint: Sendable {
        public var key: String
        /// When the change happened, for a side that no longer has the record.
        public var changedAt: Int64
        /// The document as the change stream delivered it, when MongoDB cannot be searched by
        /// key (a document that has no `externalId` yet).
        public var documentWithoutKey: Document?

        public init(key: String, changedAt: Int64, documentWithoutKey: Document? = nil) {
            self.key = key
            self.changedAt = changedAt
            self.documentWithoutKey = documentWithoutKey
        }
    }

    /// How each record is decided.
    public enum Mode: Sendable, Equatable {
        /// The conflict policy, for a change on this side (streaming).
        case change(Side)
        /// The conflict policy, taking as changed whichever side differs from the agreed state
        /// (resync, where either or both sides may have moved). A side `restored` from a
        /// backup did not change: where only it differs from the agreed state, what it lacks
        /// or holds differently is restore loss, and the other side wins.
        case reconcile(restored: Side?)
        /// Make the other side equal to this one, whatever changed (resync with a direction).
        case mirror(from: Side)
    }

    public struct Outcome: Sendable {
        public var nocodbWrites = 0
        public var mongoWrites = 0
        public var conflicts = 0
        /// Conflicts counted by the rule that decided them (policy name or `tombstone`).
        public var conflictsByRule: [String: Int] = [:]
        /// Events recognised as the bridge's own writes coming back.
        public var echoes = 0
        public var rejections: [(key: String, field: String?, reason: String, payload: String?)] = []
        /// Where the batch's time went (ms): locks and PostgreSQL reads, MongoDB reads, the
        /// write intents, MongoDB writes, PostgreSQL writes and state.
        public var timings = StageTimings()
    }

    public struct StageTimings: Sendable {
        public var postgresRead = 0.0, mongoRead = 0.0, journal = 0.0, mongoWrite = 0.0, postgresWrite = 0.0

        public static func += (a: inout StageTimings, b: StageTimings) {
            a.postgresRead += b.postgresRead; a.mongoRead += b.mongoRead; a.journal += b.journal
            a.mongoWrite += b.mongoWrite; a.postgresWrite += b.postgresWrite
        }

        public var summary: String {
            func ms(_ v: Double) -> String { String(format: "%.2f", v) }
            return "pg_read=\(ms(postgresRead)) mongo_read=\(ms(mongoRead)) journal=\(ms(journal)) mongo_write=\(ms(mongoWrite)) pg_write=\(ms(postgresWrite))"
        }
    }

    /// Runs inside the caller's transaction, which must have marked itself as the bridge
    /// (`PostgresConnection.bridgeTransaction`).
    public func synchronize(changed: Side, hints: [Hint], extraMongoWrites: [BulkWrite] = [],
                            connection: PostgresConnection, mongo: MongoClientPool) throws -> Outcome {
        try synchronize(mode: .change(changed), hints: hints, extraMongoWrites: extraMongoWrites, connection: connection, mongo: mongo)
    }

    /// - Parameter contiguous: the hints are every key in a sorted key range (a resync batch),
    ///   so MongoDB is read with one range query (`$in` over many keys is far slower on some servers).
    public func synchronize(mode: Mode, hints: [Hint], extraMongoWrites: [BulkWrite] = [], contiguous: Bool = false,
                            connection: PostgresConnection, mongo: MongoClientPool) throws -> Outcome {
        try synchronize(mode: mode, hints: hints, extraMongoWrites: extraMongoWrites, contiguous: contiguous,
                        optimistic: optimisticInserts, connection: connection, mongo: mongo)
    }

    private func synchronize(mode: Mode, hints: [Hint], extraMongoWrites: [BulkWrite], contiguous: Bool, optimistic: Bool,
                             connection: PostgresConnection, mongo: MongoClientPool) throws -> Outcome {
        let changed: Side? = if case .change(let side) = mode { side } else { nil }
        var outcome = Outcome()
        let keys = hints.map(\.key)
        guard !keys.isEmpty else { return outcome }
        var clock = ContinuousClock.now
        func lap() -> Double {
            let now = ContinuousClock.now
            defer { clock = now }
            let d = now - clock
            return Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        }
        try store.lock(keys, on: connection)
        let agreed = try store.agreedStates(keys, on: connection)
        let rows = try writer.rows(for: keys, on: connection)
        let deleteTimes = changed == .nocodb ? [:] : try writer.pendingDeleteTimes(for: keys.filter { rows[$0] == nil }, on: connection)
        outcome.timings.postgresRead = lap()
        var documents: [String: Document] = [:]
        let filter: Document
        if contiguous, keys.count > 1, let low = keys.min(by: Resync.utf8Less), let high = keys.max(by: Resync.utf8Less) {
            filter = [RowMapper.keyField: .document(["$gte": .string(low), "$lte": .string(high)])]
        } else {
            filter = [RowMapper.keyField: .document(["$in": .array(keys.map(Value.string))])]
        }
        // NocoDB-side changes to records never agreed on are new records: MongoDB is not read.
        let unread: Set<String> = optimistic && mode == .change(.nocodb) ? Set(keys.filter { agreed[$0] == nil }) : []
        let wanted = Set(keys).subtracting(unread)
        let found = wanted.isEmpty ? [] : try mongo.withClient { (client: MongoClient) throws(MongoError) in
            try client.find(filter, collection: collection)
        }.filter { if case .string(let k)? = $0[RowMapper.keyField] { wanted.contains(k) } else { false } }
        for doc in found { if case .string(let k)? = doc[RowMapper.keyField] { documents[k] = doc } }
        var seenIDs: [(id: Value, key: String)] = []
        var retry: [Hint] = []
        outcome.timings.mongoRead = lap()

        var mongoWrites = extraMongoWrites
        var mongoWriteKeys: [String?] = Array(repeating: nil, count: extraMongoWrites.count)
        var intents: [(key: String, state: RecordState)] = []
        var nocodbUpserts: [(key: String, fields: [String: String?], at: Int64)] = []
        var nocodbDeletes: [(key: String, at: Int64)] = []
        var newAgreed: [String: RecordState] = [:]
        var conflicts: [(key: String, nocodb: RecordState, mongo: RecordState, conflict: Resolution.Conflict)] = []
        let now = wallClockMilliseconds()

        for hint in hints {
            let key = hint.key
            let doc = documents[key] ?? hint.documentWithoutKey
            if let id = doc?["_id"] { seenIDs.append((id, key)) }
            let row = rows[key]
            var nocodb: RecordState, mongoState: RecordState
            do {
                nocodb = try writer.state(of: row, fallbackAt: changed == .mongo ? deleteTimes[key] ?? 0 : hint.changedAt)
                if nocodbEditTime == .latestKnown {
                    nocodb = nocodb.notBefore(max(row?.editedAt ?? 0, changed == .nocodb ? hint.changedAt : 0))
                }
            } catch {
                outcome.rejections.append((key, error.field, "NocoDB row: \(error.reason)", nil))
                continue
            }
            do {
                if let doc {
                    mongoState = try writer.codec.state(document: doc, fallbackAt: changed == .nocodb ? now : hint.changedAt)
                } else {
                    mongoState = .absent(at: changed == .nocodb ? nil : hint.changedAt)
                }
            } catch {
                outcome.rejections.append((key, error.field, "MongoDB document: \(error.reason)", doc.map { JSON.serialize(.document($0)) }))
                continue
            }
            let resolution: Resolution
            switch mode {
            case .change(let side):
                resolution = ConflictResolver.resolve(changed: side, nocodb: nocodb, mongo: mongoState, agreed: agreed[key], policy: policy)
            case .reconcile(let restored):
                let base = agreed[key] ?? .absent(at: nil)
                let restoredState = restored == .nocodb ? nocodb : mongoState
                let otherState = restored == .nocodb ? mongoState : nocodb
                if let restored, agreed[key] != nil, !restoredState.sameContent(as: base), otherState.sameContent(as: base) {
                    var r = Resolution(agreed: otherState)
                    if restored == .nocodb { r.writeNocoDB = otherState } else { r.writeMongo = otherState }
                    resolution = r
                } else {
                    let side: Side = nocodb.sameContent(as: base) ? .mongo : .nocodb
                    resolution = ConflictResolver.resolve(changed: side, nocodb: nocodb, mongo: mongoState, agreed: agreed[key], policy: policy)
                }
            case .mirror(let source):
                let truth = source == .nocodb ? nocodb : mongoState
                let other = source == .nocodb ? mongoState : nocodb
                var r = Resolution()
                if !other.sameContent(as: truth) {
                    if source == .nocodb { r.writeMongo = truth } else { r.writeNocoDB = truth }
                }
                r.agreed = truth
                resolution = r
            }
            if let write = resolution.writeMongo {
                switch write {
                case .present(let fields, let at):
                    do {
                        let set = try writer.codec.mongoFields(key: key, fields: fields, at: at, source: .nocodb, version: row?.version)
                        // A record MongoDB does not have is inserted (about twice as fast as an
                        // upsert); an existing one gets `$set`, so fields only MongoDB has survive.
                        if doc == nil {
                            var inserted = Document([("_id", .objectId(.generate()))])
                            inserted.fields += set.fields
                            mongoWrites.append(.insertOne(inserted))
                        } else if let existing = doc, let id = existing["_id"] {
                            // Only what differs, by `_id`: smaller writes, smaller change events.
                            let changedFields = set.fields.filter { existing[$0.key] != $0.value }
                            mongoWrites.append(.updateOne(filter: ["_id": id], update: ["$set": .document(Document(changedFields))], upsert: false))
                        } else {
                            mongoWrites.append(.updateOne(filter: [RowMapper.keyField: .string(key)], update: ["$set": .document(set)], upsert: true))
                        }
                    } catch {
                        outcome.rejections.append((key, error.field, error.reason, nil))
                        continue
                    }
                case .absent:
                    mongoWrites.append(.deleteOne(filter: [RowMapper.keyField: .string(key)]))
                }
                mongoWriteKeys.append(key)
                intents.append((key, write))
            }
            if let write = resolution.writeNocoDB {
                switch write {
                case .present(let fields, let at): nocodbUpserts.append((key, fields, at))
                case .absent(let at): nocodbDeletes.append((key, at ?? now))
                }
            }
            if let state = resolution.agreed { newAgreed[key] = state.dated(deletedAt: now) }
            if let conflict = resolution.conflict { conflicts.append((key, nocodb, mongoState, conflict)) }
        }

        _ = lap()
        var batch: WriteJournal.Batch?
        if let journal, !intents.isEmpty {
            batch = try journal.record(intents, collection: collection)
        }
        outcome.timings.journal = lap()
        if !mongoWrites.isEmpty {
            var result = try mongo.withClient { (client: MongoClient) throws(MongoError) in
                try client.bulkWrite(mongoWrites, collection: collection)
            }
            let failedIndexes = Set(result.writeErrors.map(\.index))
            // Keys inserted without a read that MongoDB already has: decide them properly below.
            let unreadDuplicates = result.writeErrors.filter { error in
                guard error.code == 11000, let key = mongoWriteKeys[error.index] else { return false }
                return unread.contains(key)
            }
            if !unreadDuplicates.isEmpty {
                let keysAgain = Set(unreadDuplicates.compactMap { mongoWriteKeys[$0.index] })
                let indexes = Set(unreadDuplicates.map(\.index))
                result.writeErrors.removeAll { indexes.contains($0.index) }
                for key in keysAgain { newAgreed[key] = nil }
                retry = hints.filter { keysAgain.contains($0.key) }
            }
            // An app inserted the same key between our read and our insert: update it instead.
            let raced = result.writeErrors.filter { error in
                if error.code == 11000, case .insertOne = mongoWrites[error.index] { return true }
                return false
            }
            if !raced.isEmpty {
                let retries: [BulkWrite] = raced.map { error in
                    guard case .insertOne(let doc) = mongoWrites[error.index], case .string(let key)? = doc[RowMapper.keyField] else {
                        return mongoWrites[error.index]
                    }
                    return .updateOne(filter: [RowMapper.keyField: .string(key)], update: ["$set": .document(doc)], upsert: true)
                }
                let retried = try mongo.withClient { (client: MongoClient) throws(MongoError) in
                    try client.bulkWrite(retries, collection: collection)
                }
                let racedIndexes = Set(raced.map(\.index))
                result.writeErrors.removeAll { racedIndexes.contains($0.index) }
                for e in retried.writeErrors { result.writeErrors.append((raced[e.index].index, e.code, e.message)) }
            }
            for (index, write) in mongoWrites.enumerated() where !failedIndexes.contains(index) {
                if case .insertOne(let doc) = write, let id = doc["_id"], let key = mongoWriteKeys[index] { seenIDs.append((id, key)) }
            }
            if !retry.isEmpty {
                let again = Set(retry.map(\.key))
                seenIDs.removeAll { again.contains($0.key) }
                conflicts.removeAll { again.contains($0.key) }
            }
            for error in result.writeErrors {
                guard let key = mongoWriteKeys[error.index] else {
                    outcome.rejections.append(("-", RowMapper.keyField, "MongoDB refused writing externalId (code \(error.code)): \(error.message)", nil))
                    continue
                }
                outcome.rejections.append((key, nil, "MongoDB refused the write (code \(error.code)): \(error.message)", nil))
                newAgreed[key] = nil
                nocodbUpserts.removeAll { $0.key == key }
                nocodbDeletes.removeAll { $0.key == key }
            }
            for upserted in result.upsertedIDs {
                if let key = mongoWriteKeys[upserted.index] { seenIDs.append((upserted.id, key)) }
            }
            outcome.mongoWrites = mongoWrites.count - result.writeErrors.count - retry.count
        }
        outcome.timings.mongoWrite = lap()
        try writer.upsert(nocodbUpserts, source: .mongo, on: connection)
        try writer.delete(nocodbDeletes, source: .mongo, on: connection)
        outcome.nocodbWrites = nocodbUpserts.count + nocodbDeletes.count
        try store.saveAgreed(hints.compactMap { h in newAgreed[h.key].map { (h.key, $0) } }, settling: batch, on: connection)
        try store.logConflicts(conflicts, on: connection)
        try store.saveKeys(seenIDs, on: connection)
        // Record history in the same transaction (History.swift): one INSERT for the batch.
        try history?.record(.init(mode: mode, keys: keys, before: agreed, after: newAgreed, mongoWritten: intents.map(\.key),
                                  nocodbWritten: nocodbUpserts.map(\.key) + nocodbDeletes.map(\.key), conflicts: conflicts,
                                  editors: rows.compactMapValues(\.editedBy), rejections: outcome.rejections, retried: retry.map(\.key)),
                            collection: collection, on: connection)
        outcome.conflicts = conflicts.count
        for c in conflicts { outcome.conflictsByRule[c.conflict.rule, default: 0] += 1 }
        outcome.timings.postgresWrite = lap()
        if !retry.isEmpty {
            let second = try synchronize(mode: mode, hints: retry, extraMongoWrites: [], contiguous: false, optimistic: false,
                                         connection: connection, mongo: mongo)
            outcome.mongoWrites += second.mongoWrites
            outcome.nocodbWrites += second.nocodbWrites
            outcome.conflicts += second.conflicts
            outcome.conflictsByRule.merge(second.conflictsByRule, uniquingKeysWith: +)
            outcome.rejections += second.rejections
        }
        return outcome
    }
}
