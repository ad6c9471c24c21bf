import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

/// Carries out `SyncPlanner`'s decisions for a batch of records of one table, inside the
/// caller's transaction: lock the records, read the agreed state and both sides, plan, write
/// MongoDB, write NocoDB, record the new agreed state, conflicts and `_id` ⇄ key pairs.
///
/// No NocoDB row is locked while MongoDB is asked anything: NocoDB's own edits never wait on
/// MongoDB, not even on a frozen server. Writes on both sides are conditional on what the
/// decision read instead (a row's version, a document's values), and a record either side
/// changed meanwhile is read and decided again (up to `rounds` times; after that the change
/// that moved it brings it back).
public struct RecordSynchronizer: Sendable {
    public let writer: TableWriter
    public let planner: SyncPlanner
    let agreedStore: AgreedStateStore
    let keyMap: KeyMapStore
    let conflictLog: ConflictLog

    /// Insert records the bridge never agreed on without reading MongoDB first; the unique
    /// index refusing a duplicate sends just those keys round again with a read. Only safe
    /// when the collection has the bridge's unique index on `externalId`.
    public let optimisticInserts: Bool

    /// Where MongoDB writes are announced before they are made (nil: not announced, for
    /// callers that hold no lasting state, such as tests of the decision alone).
    public let journal: WriteJournal?

    /// Where each batch's decisions are recorded (`HistoryLog`); nil: no history.
    public let history: HistoryLog?

    /// The lease this table is decided under (nil: the CLI, which holds none). MongoDB
    /// cannot check a token, so each bulk write is preceded by a local validity check.
    let fence: Fence?

    /// How many times a record that keeps changing while it is decided is read again.
    static let rounds = 3

    /// The `_id` of a document the bridge inserts; a test sets it to stand for an insert
    /// whose first attempt already landed.
    var newDocumentID: @Sendable () -> Value = { .objectId(.generate()) }

    /// Called after the intents' check has read MongoDB; a test lands a write there to stand
    /// for one that arrives between that read and the decision.
    var afterIntentCheck: @Sendable () -> Void = {}

    /// - Parameter capture: how NocoDB's changes are captured: with logical capture nothing
    ///   stamps NocoDB edits' times, and the bridge's own NocoDB writes are marked in the WAL.
    public init(shape: TableShape, policy: ConflictPolicy, capture: BridgeConfiguration.Capture = .triggers,
                optimisticInserts: Bool = false, journal: WriteJournal? = nil, history: HistoryLog? = nil, fence: Fence? = nil) {
        self.history = history
        self.fence = fence
        writer = TableWriter(shape: shape, marksLogicalDecoding: capture == .logical)
        planner = SyncPlanner(codec: writer.codec, policy: policy, editTime: capture == .logical ? .latestKnown : .updatedAtColumn)
        agreedStore = AgreedStateStore(collection: shape.mapping.collection)
        keyMap = KeyMapStore(collection: shape.mapping.collection)
        conflictLog = ConflictLog(collection: shape.mapping.collection)
        self.optimisticInserts = optimisticInserts
        self.journal = journal
    }

    public var collection: String { agreedStore.collection }

    /// What is known about a key from the change that named it.
    public struct Hint: Sendable {
        public var key: String
        /// When the change happened, for a side that no longer has the record.
        public var changedAt: Int64
        /// The document as the change event carried it: when it already equals the agreed
        /// state the event is the bridge's own write coming back, and nothing is read. It is
        /// taken as MongoDB's state for a decision only through `streamed`: an event read late
        /// can be older than what a bridge has written and agreed on since.
        public var eventDocument: Document?
        /// MongoDB's state as the change stream showed it, when it may stand for a read.
        public var streamed: Streamed?
        /// The key's last event was an insert, update or replace (`RecordSnapshot.eventShowedDocument`).
        public var eventShowedDocument = false

        public init(key: String, changedAt: Int64, eventDocument: Document? = nil, streamed: Streamed? = nil,
                    eventShowedDocument: Bool = false) {
            self.eventShowedDocument = eventShowedDocument
            self.key = key
            self.changedAt = changedAt
            self.eventDocument = eventDocument
            self.streamed = streamed
        }

        /// Reading every changed document again by key was most of the cost of a MongoDB
        /// bulk edit or backlog towards NocoDB. An event's document can stand for that read
        /// unless a bridge wrote the record to MongoDB after the server produced it: such a
        /// write is recorded by an agreed-state save after the write (numbered by
        /// `nocobridge.agreed_seq`), and the record's lock orders it before this decision.
        /// - An update's document is looked up when the server answers the batch
        ///   (`fullDocument: updateLookup`), so it stands for a read of a record whose state
        ///   was agreed no later than `savedBefore`, read before that batch was asked for.
        /// - An insert's or a replace's document is as of the event, which may be older than
        ///   any number read since: it stands for a read only of a record never agreed on.
        /// - A delete, or a record with write intents, is always read.
        public struct Streamed: Sendable {
            public var document: Document?
            public var savedBefore: Int64?

            public init(document: Document?, savedBefore: Int64?) {
                self.document = document
                self.savedBefore = savedBefore
            }

            /// Whether this stands for a read of a record agreed as `agreed`, saved as `saved`.
            func standsForRead(agreed: RecordState?, saved: Int64?) -> Bool {
                guard agreed != nil else { return true }
                guard let savedBefore, let saved else { return false }
                return saved <= savedBefore
            }
        }
    }

    public struct Outcome: Sendable {
        public var nocodbWrites = 0
        public var mongoWrites = 0
        public var conflicts = 0
        /// Conflicts counted by the rule that decided them.
        public var conflictsByRule: [Resolution.DecidingRule: Int] = [:]
        /// Events recognised as the bridge's own writes coming back.
        public var echoes = 0
        /// Changes that left the record as agreed (re-read after a crash, or undone).
        public var unchanged = 0
        /// Records decided without reading MongoDB: new records, and records presumed to hold
        /// the agreed state (checked by a conditional write).
        public var unreadDocuments = 0
        /// Records that kept changing while decided; their next change brings them back.
        public var undecided = 0
        public var rejections: [Rejection] = []
        /// Where the batch's time went (ms).
        public var timings = StageTimings()

        public init() {}

        public static func += (a: inout Outcome, b: Outcome) {
            a.nocodbWrites += b.nocodbWrites
            a.mongoWrites += b.mongoWrites
            a.conflicts += b.conflicts
            a.conflictsByRule.merge(b.conflictsByRule, uniquingKeysWith: +)
            a.echoes += b.echoes
            a.unchanged += b.unchanged
            a.unreadDocuments += b.unreadDocuments
            a.undecided += b.undecided
            a.rejections += b.rejections
            a.timings += b.timings
        }
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

        public var milliseconds: [String: Double] {
            ["postgres_read": postgresRead, "mongo_read": mongoRead, "journal": journal, "mongo_write": mongoWrite, "postgres_write": postgresWrite]
        }
    }

    /// Runs inside the caller's transaction, which must have marked itself as the bridge
    /// (`PostgresConnection.bridgeTransaction`).
    /// - Parameters:
    ///   - writeBacks: MongoDB writes made first, e.g. keys derived for documents inserted
    ///     without one, so that the decision then reads them by key.
    ///   - contiguous: the hints are every key in a sorted key range (a resync batch), so
    ///     MongoDB is read with one range query (`$in` over many keys is far slower on some servers).
    public func synchronize(mode: SyncMode, hints: [Hint], writeBacks: [BulkWrite] = [], contiguous: Bool = false,
                            connection: PostgresConnection, mongo: MongoClientPool) throws -> Outcome {
        var outcome = Outcome()
        guard !hints.isEmpty || !writeBacks.isEmpty else { return outcome }
        if !writeBacks.isEmpty {
            try fence?.checkValid()
            _ = try mongo.withClient { (client: MongoClient) throws(MongoError) in try client.bulkWrite(writeBacks, collection: collection) }
        }
        var pending = hints
        var optimistic = optimisticInserts && mode == .change(.nocodb)
        var round = 0
        while !pending.isEmpty {
            round += 1
            guard round <= Self.rounds else {
                outcome.undecided += pending.count
                break
            }
            let again = try decide(pending, mode: mode, contiguous: contiguous && round == 1, optimistic: optimistic,
                                   into: &outcome, connection: connection, mongo: mongo)
            pending = pending.filter { again.contains($0.key) }.map { var h = $0; h.eventDocument = nil; h.streamed = nil; return h }
            optimistic = false
        }
        return outcome
    }

    /// One round: returns the keys to decide again.
    private func decide(_ hints: [Hint], mode: SyncMode, contiguous: Bool, optimistic: Bool, into outcome: inout Outcome,
                        connection: PostgresConnection, mongo: MongoClientPool) throws -> Set<String> {
        var clock = ContinuousClock.now
        func lap() -> Double {
            let now = ContinuousClock.now
            defer { clock = now }
            let d = now - clock
            return Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        }
        try agreedStore.lock(hints.map(\.key), on: connection)
        var (agreed, intents, saved) = try agreedStore.statesAndIntents(hints.map(\.key), on: connection)
        outcome.timings.postgresRead += lap()
        var hints = hints
        let (adopted, intentDocuments) = try adoptLandedIntents(intents, agreed: &agreed, connection: connection, mongo: mongo)
        outcome.timings.mongoRead += lap()
        afterIntentCheck()
        if !adopted.isEmpty, mode.changedSide != nil {
            // The adopted state was never weighed against NocoDB: as after a crash, the
            // record is reconciled (NocoDB deleted it meanwhile: the late write is undone).
            let reconciled = hints.filter { adopted.contains($0.key) }.map { var h = $0; h.eventDocument = nil; h.streamed = nil; return h }
            outcome += try synchronize(mode: .reconcile(restored: nil), hints: reconciled, connection: connection, mongo: mongo)
            hints.removeAll { adopted.contains($0.key) }
            guard !hints.isEmpty else { return [] }
        }
        // The bridge's own MongoDB writes come back as events equal to the agreed state:
        // nothing to read or decide for them.
        var live: [Hint] = []
        for hint in hints {
            if let document = hint.eventDocument, let known = agreed[hint.key],
               let state = try? writer.codec.state(document: document, fallbackAt: 0), state.sameContent(as: known) {
                outcome.echoes += 1
            } else {
                live.append(hint)
            }
        }
        guard !live.isEmpty else { return [] }
        let changed = mode.changedSide
        let rows = try writer.rows(for: live.map(\.key), on: connection)
        if changed == .nocodb {
            // A NocoDB change whose row equals the agreed state has nothing to cross (applied
            // before a crash, or undone): no MongoDB read for it.
            live.removeAll { hint in
                guard let known = agreed[hint.key],
                      let state = try? planner.nocodbState(RecordSnapshot(key: hint.key, row: rows[hint.key], changedAt: hint.changedAt), changed: .nocodb),
                      state.sameContent(as: known) else { return false }
                outcome.unchanged += 1
                return true
            }
            guard !live.isEmpty else { return [] }
        }
        let keys = live.map(\.key)
        let deleteTimes = changed == .nocodb ? [:] : try writer.pendingDeleteTimes(for: keys.filter { rows[$0] == nil }, on: connection)
        outcome.timings.postgresRead += lap()

        // What MongoDB holds, without reading it where a NocoDB change lets the decision
        // presume: a record never agreed on is new (inserted; a duplicate key sends it round
        // again); a record agreed on holds the agreed state unless an app changed it (the
        // conditional write finds out, and sends it round again). Only the first round
        // presumes: a record sent round again is read.
        // A record with intents is decided from the read that checked them. A second read could
        // meet a late write that landed in between, and take it for an app's change: the check
        // saw it missing, so it was not adopted.
        let checked = Set(intents.keys)
        var documents = intentDocuments
        var unread = Set<String>()
        // Records whose change event stands for a read (`Hint.Streamed`).
        var streamedKeys = Set<String>()
        if optimistic {
            let ids = try keyMap.ids(forKeys: keys.filter { agreed[$0]?.isPresent == true }, on: connection)
            for key in keys where !checked.contains(key) {
                if agreed[key] == nil {
                    unread.insert(key)
                } else if let known = agreed[key], let id = ids[key], let presumed = planner.presumedDocument(key: key, agreed: known, id: id) {
                    documents[key] = presumed
                    unread.insert(key)
                }
            }
        }
        if changed == .mongo {
            for hint in live where !unread.contains(hint.key) && intents[hint.key] == nil {
                guard let streamed = hint.streamed, streamed.standsForRead(agreed: agreed[hint.key], saved: saved[hint.key]) else { continue }
                if let document = streamed.document { documents[hint.key] = document }
                streamedKeys.insert(hint.key)
            }
        }
        outcome.unreadDocuments += unread.count + streamedKeys.count
        for (key, document) in try read(keys.filter { !unread.contains($0) && !streamedKeys.contains($0) && !checked.contains($0) },
                                        contiguous: contiguous, mongo: mongo) {
            documents[key] = document
        }
        outcome.timings.mongoRead += lap()

        let snapshots = live.map { hint in
            RecordSnapshot(key: hint.key, agreed: agreed[hint.key], row: rows[hint.key], document: documents[hint.key],
                           documentUnread: unread.contains(hint.key) && documents[hint.key] == nil, changedAt: hint.changedAt,
                           deletedAt: deleteTimes[hint.key], eventShowedDocument: hint.eventShowedDocument)
        }
        let plan = planner.plan(snapshots, mode: mode, now: wallClockMilliseconds(), newDocumentID: newDocumentID)
        _ = lap()
        // A holder that lost its lease journals nothing more (nor writes).
        if !plan.mongoWrites.isEmpty { try fence?.checkValid() }
        let batch = try journal.flatMap { journal in
            plan.mongoWrites.isEmpty ? nil : try journal.record(plan.mongoWrites.map { ($0.key, $0.state) }, collection: collection)
        }
        outcome.timings.journal += lap()
        do {
            return try settle(plan, batch: batch, keys: keys, agreed: agreed, rows: rows, mode: mode, lap: lap,
                              into: &outcome, connection: connection, mongo: mongo)
        } catch {
            if let batch { journal?.abandon(batch) }
            throw error
        }
    }

    /// Another writer's MongoDB write may have landed without the commit that records it: a
    /// batch that failed after its write, or a holder fenced out while its write was on the
    /// way (frozen past its lease, or stuck in server selection, and resumed after the next
    /// holder took over). Deciding such a record from the agreed state alone would take that
    /// write for an app's change (a record NocoDB deleted meanwhile would come back). So when
    /// MongoDB holds an intent's state, that state becomes the agreed one first. No intent is
    /// deleted here: its write may still be on the way even when MongoDB already holds the
    /// same state, and only `IntentRecovery` knows when a writer is gone and its operations
    /// are over. Usually there are none (they come with the agreed states, in one query).
    /// - Parameter intents: per key, newest first.
    /// - Returns: the keys whose agreed state was replaced, and the documents read.
    private func adoptLandedIntents(_ intents: [String: [RecordState]], agreed: inout [String: RecordState],
                                    connection: PostgresConnection,
                                    mongo: MongoClientPool) throws -> (adopted: Set<String>, documents: [String: Document]) {
        guard !intents.isEmpty else { return ([], [:]) }
        let documents = try read(Array(intents.keys), contiguous: false, mongo: mongo)
        let now = wallClockMilliseconds()
        var adopted: [(key: String, state: RecordState)] = []
        for (key, candidates) in intents {
            let current = documents[key].flatMap { try? writer.codec.state(document: $0, fallbackAt: 0) } ?? .absent(at: nil)
            guard let landed = candidates.first(where: { current.sameContent(as: $0) }) else { continue }
            if let known = agreed[key], known.sameContent(as: landed) { continue }
            let state = landed.dated(deletedAt: now)
            adopted.append((key, state))
            agreed[key] = state
        }
        try awaitMajority(adopted, mongo: mongo)
        try agreedStore.save(adopted, on: connection)
        return (Set(adopted.map(\.key)), documents)
    }

    /// The planned writes and the bookkeeping that records them, in the caller's transaction.
    private func settle(_ plan: SyncPlan, batch: WriteJournal.Batch?, keys: [String], agreed: [String: RecordState],
                        rows: [String: LiveRow], mode: SyncMode, lap: () -> Double, into outcome: inout Outcome,
                        connection: PostgresConnection, mongo: MongoClientPool) throws -> Set<String> {
        if !plan.mongoWrites.isEmpty { try fence?.checkValid() }
        let report: SyncPlan.MongoReport
        if let batch, let journal {
            report = try journal.whileWriting(batch) { try write(plan.mongoWrites, mongo: mongo) }
        } else {
            report = try write(plan.mongoWrites, mongo: mongo)
        }
        var (settled, again) = plan.settled(by: report)
        outcome.timings.mongoWrite += lap()
        let unapplied = try writer.apply(settled.nocodbWrites, source: .mongo, on: connection)
        settled = settled.settled(nocodbUnapplied: unapplied)
        again += unapplied
        try agreedStore.save(settled.agreed, settling: batch, on: connection)
        try conflictLog.record(settled.conflicts, on: connection)
        try keyMap.save(settled.documentIDs, on: connection)
        let mongoWritten = plan.mongoWrites.indices.filter { report.errors[$0] == nil && !report.movedOn.contains(plan.mongoWrites[$0].key) }
            .map { plan.mongoWrites[$0].key }
        // History in the same transaction, one INSERT for the round (HistoryLog).
        try history?.record(.init(mode: mode, keys: keys, before: agreed, after: Dictionary(settled.agreed, uniquingKeysWith: { _, last in last }),
                                  mongoWritten: mongoWritten, nocodbWritten: settled.nocodbWrites.map(\.key), conflicts: settled.conflicts,
                                  editors: rows.compactMapValues(\.editedBy), rejections: settled.rejections, retried: again),
                            collection: collection, on: connection)
        outcome.timings.postgresWrite += lap()

        outcome.mongoWrites += mongoWritten.count
        outcome.nocodbWrites += settled.nocodbWrites.count
        outcome.conflicts += settled.conflicts.count
        for conflict in settled.conflicts { outcome.conflictsByRule[conflict.resolution.rule, default: 0] += 1 }
        outcome.rejections += settled.rejections
        return Set(again)
    }

    /// How long a landed intent is waited for at majority before it is taken as landed.
    static let majorityWait: Duration = .seconds(2)

    /// A landed intent becomes the agreed state once a majority holds it: a write a failover
    /// can still roll back has not landed. It is *found* on the primary, though, by the read
    /// the decision then uses too: a majority read lags the primary, and a check that missed
    /// a landed write would leave it to be decided as an app's
    /// (`aLateInsertOfAFencedOutWriterIsUndoneNotTakenForAnApps` failed so under load when the
    /// check read with majority). So each one found on the
    /// primary is waited for at majority, for at most `majorityWait`; one that a majority
    /// still lacks by then is taken as the primary shows it (its writer asked for majority).
    func awaitMajority(_ landed: [(key: String, state: RecordState)], mongo: MongoClientPool) throws {
        var waiting = Dictionary(landed.map { ($0.key, $0.state) }, uniquingKeysWith: { _, last in last })
        let deadline = ContinuousClock.now + Self.majorityWait
        while !waiting.isEmpty {
            let documents = try read(Array(waiting.keys), contiguous: false, readConcern: .majority, mongo: mongo)
            waiting = waiting.filter { key, state in
                let held = documents[key].flatMap { try? writer.codec.state(document: $0, fallbackAt: 0) } ?? .absent(at: nil)
                return !held.sameContent(as: state)
            }
            if waiting.isEmpty || ContinuousClock.now >= deadline { return }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    /// Documents by key, read from the primary whatever the URL's read preference says:
    /// decisions must see the latest write.
    private func read(_ keys: [String], contiguous: Bool, readConcern: ReadConcern? = nil,
                      mongo: MongoClientPool) throws -> [String: Document] {
        guard !keys.isEmpty else { return [:] }
        let filter: Document
        if contiguous, keys.count > 1, let low = keys.min(by: KeyOrder.utf8Less), let high = keys.max(by: KeyOrder.utf8Less) {
            filter = [RowMapper.keyField: .document(["$gte": .string(low), "$lte": .string(high)])]
        } else {
            filter = [RowMapper.keyField: .document(["$in": .array(keys.map(Value.string))])]
        }
        let wanted = Set(keys)
        var out: [String: Document] = [:]
        for document in try mongo.withClient({ (client: MongoClient) throws(MongoError) in try client.find(filter, readConcern: readConcern, collection: collection) }) {
            if case .string(let key)? = document[RowMapper.keyField], wanted.contains(key) { out[key] = document }
        }
        return out
    }

    /// Makes the planned MongoDB writes and finds out which conditional ones met a document
    /// that had changed since it was read (or presumed): when fewer matched than were sent,
    /// the records are read again by key, and those not holding the planned state were moved
    /// on by someone else (a document replaced under the same key included).
    private func write(_ writes: [SyncPlan.MongoWrite], mongo: MongoClientPool) throws -> SyncPlan.MongoReport {
        guard !writes.isEmpty else { return .init() }
        let result = try mongo.withClient { (client: MongoClient) throws(MongoError) in
            try client.bulkWrite(writes.map(Self.bulkWrite), collection: collection)
        }
        var report = SyncPlan.MongoReport()
        for error in result.writeErrors { report.errors[error.index] = (error.code, error.message) }
        // An insert refused as a duplicate key may have met the bridge's own document: the
        // driver retried the command (a reply lost to a restart, or one carrying a retryable
        // error), and the server ran the whole batch again instead of answering from its
        // record of the first attempt, which it keeps only in memory and only for batches
        // with no document refused (SecantusDB; mongod keeps it per statement, replicated).
        // Taken for an app's record, the key went round again with its intent deleted by the
        // round's save, and a NocoDB delete meanwhile left the document in MongoDB with no
        // agreed state: the change stream later copied it back as an app's insert (a chaos
        // run with MongoDB restarts found five such records back on both sides). A document
        // holding the `_id` this insert generated is this insert, landed.
        let duplicates = writes.indices.filter { index in
            guard report.errors[index]?.code == SyncPlan.duplicateKeyCode, case .insert = writes[index].action else { return false }
            return true
        }
        let conditional = result.updatesMatchingNothing > 0 || result.deletesMatchingNothing > 0
            ? writes.indices.filter { index in
                if report.errors[index] != nil { return false }
                if case .insert = writes[index].action { return false }
                return true
            }
            : []
        guard !duplicates.isEmpty || !conditional.isEmpty else { return report }
        let current = try read((duplicates + conditional).map { writes[$0].key }, contiguous: false, mongo: mongo)
        for index in duplicates {
            guard case .insert(let document) = writes[index].action, let id = document["_id"],
                  current[writes[index].key]?["_id"] == id else { continue }
            report.errors[index] = nil
        }
        for index in conditional {
            let write = writes[index]
            let state = current[write.key].flatMap { try? writer.codec.state(document: $0, fallbackAt: 0) } ?? .absent(at: nil)
            if !state.sameContent(as: write.state) { report.movedOn.insert(write.key) }
        }
        return report
    }

    static func bulkWrite(_ write: SyncPlan.MongoWrite) -> BulkWrite {
        switch write.action {
        case .insert(let document):
            return .insertOne(document)
        case .update(let id, let set, let expected):
            return .updateOne(filter: condition(id: id, expected: expected), update: ["$set": .document(set)], upsert: false)
        case .delete(let id, let expected):
            return .deleteOne(filter: condition(id: id, expected: expected))
        }
    }

    /// The filter of a conditional write: `_id`, bare and first, and each expected field as
    /// `{$not: {$ne: v}}`. That is the bare `{field: v}` condition exactly (MongoDB's manual:
    /// `$ne` matches documents where the field is not v, array elements included, or missing;
    /// so its negation is equality with v or an element of it, and for `null`, null or
    /// missing), but the MongoDB-protocol server here plans a statement by walking its index
    /// catalog for every bare or `$eq` field before it takes `_id`, which halved the rate of
    /// the bridge's updates; a `$not` field is only matched (probe: 1,027 → 1,484 updates/s,
    /// 549 → 825/s with a change stream open; `Scripts/conditional-write-probe.py`). mongod
    /// plans on `_id` either way. A value is never a regex (`Value` has none), which `$ne`
    /// would refuse. `ConditionalWriteTests` holds the two forms to the same matches.
    static func condition(id: Value, expected: Document) -> Document {
        Document([("_id", id)] + expected.fields.map { field, value in
            (field, .document(["$not": .document(["$ne": value])]))
        })
    }
}
