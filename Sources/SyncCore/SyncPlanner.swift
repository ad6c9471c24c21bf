/// Decides a batch of records without I/O: from each record's agreed state and both sides as
/// read, the conflict policy (or a resync's rule) picks the state both sides must hold, and
/// the planner says what to write where, what to record as agreed, which conflicts to log and
/// which records cannot cross. `RecordSynchronizer` reads, executes and settles the plan.
///
/// Comparing states rather than replaying changes is what keeps the bridge's own writes from
/// coming back: when they do, they equal the agreed state and nothing is planned.
public struct SyncPlanner: Sendable {
    public let codec: RecordCodec
    public let policy: ConflictPolicy
    public let editTime: NocoDBEditTime

    /// A value read from MongoDB longer than this (bytes of its JSON text) is not repeated in
    /// a write's `expected` filter: the filter would double a large write's size for a window
    /// of a millisecond. Such fields are written unconditionally.
    public static let largestExpectedValue = 16 * 1024

    public init(codec: RecordCodec, policy: ConflictPolicy, editTime: NocoDBEditTime = .updatedAtColumn) {
        self.codec = codec
        self.policy = policy
        self.editTime = editTime
    }

    /// - Parameters:
    ///   - now: the wall clock (ms), dating tombstones whose deletion time is unknown and
    ///     MongoDB documents without `updatedAt` seen from a NocoDB change.
    ///   - newDocumentID: an `_id` for a document to insert (known before the insert, so the
    ///     key map can hold it).
    public func plan(_ records: [RecordSnapshot], mode: SyncMode, now: Int64, newDocumentID: () -> Value) -> SyncPlan {
        var plan = SyncPlan()
        let changed = mode.changedSide
        for record in records {
            let key = record.key
            // Gone since its event showed it: the removal, later in the stream, decides.
            if changed == .mongo, record.eventShowedDocument, record.document == nil, !record.documentUnread { continue }
            if let id = record.document?["_id"] { plan.documentIDs.append((id, key)) }
            let nocodb: RecordState
            do {
                nocodb = try nocodbState(record, changed: changed)
            } catch {
                plan.rejections.append(Rejection(key: key, field: error.field, reason: "NocoDB row: \(error.reason)"))
                continue
            }
            let mongo: RecordState
            do {
                if let document = record.document {
                    mongo = try codec.state(document: document, fallbackAt: changed == .nocodb ? now : record.changedAt)
                } else {
                    mongo = .absent(at: changed == .nocodb ? nil : record.changedAt)
                }
            } catch {
                plan.rejections.append(Rejection(key: key, field: error.field, reason: "MongoDB document: \(error.reason)",
                                                 payload: record.document.map { JSON.serialize(.document($0)) }))
                continue
            }
            let resolution = resolve(mode: mode, nocodb: nocodb, mongo: mongo, agreed: record.agreed)
            if let state = resolution.writeMongo {
                do {
                    if let write = try mongoWrite(key: key, state: state, record: record, newDocumentID: newDocumentID) {
                        plan.mongoWrites.append(write)
                    }
                } catch {
                    plan.rejections.append(Rejection(key: key, field: error.field, reason: error.reason))
                    continue
                }
            }
            if let state = resolution.writeNocoDB {
                let action: SyncPlan.NocoDBWrite.Action = switch state {
                case .present(let fields, let at): .upsert(fields: fields, at: at)
                case .absent(let at): .delete(at: at ?? now)
                }
                plan.nocodbWrites.append(.init(key: key, action: action, expectedRowVersion: record.row?.rowVersion))
            }
            if let state = resolution.agreed { plan.agreed.append((key, state.dated(deletedAt: now))) }
            if let conflict = resolution.conflict {
                plan.conflicts.append(.init(key: key, nocodb: nocodb, mongo: mongo, resolution: conflict))
            }
        }
        return plan
    }

    /// NocoDB's side of a record: the live row, or absent (no row, or in NocoDB's trash) dated
    /// by what is known of the deletion.
    public func nocodbState(_ record: RecordSnapshot, changed: Side?) throws(MappingError) -> RecordState {
        let fallback = changed == .mongo ? record.deletedAt ?? 0 : record.changedAt
        var state: RecordState
        if let row = record.row {
            if row.deleted {
                let deletedAt = codec.mapper.columns.firstIndex { $0.name == "updatedAt" }.flatMap { row.values[$0] }
                    .flatMap { RecordCodec.milliseconds(fromPostgres: $0) }
                state = .absent(at: deletedAt ?? fallback)
            } else {
                state = try codec.state(row: row.values, fallbackAt: fallback)
            }
        } else {
            state = .absent(at: fallback == 0 ? nil : fallback)
        }
        if editTime == .latestKnown {
            state = state.notBefore(max(record.row?.editedAt ?? 0, changed == .nocodb ? record.changedAt : 0))
        }
        return state
    }

    /// What both sides should hold.
    func resolve(mode: SyncMode, nocodb: RecordState, mongo: RecordState, agreed: RecordState?) -> Resolution {
        switch mode {
        case .change(let side):
            return ConflictResolver.resolve(changed: side, nocodb: nocodb, mongo: mongo, agreed: agreed, policy: policy)
        case .reconcile(let restored):
            let base = agreed ?? .absent(at: nil)
            if let restored, agreed != nil {
                let restoredState = restored == .nocodb ? nocodb : mongo
                let otherState = restored == .nocodb ? mongo : nocodb
                // Only the restored side differs: restore loss, the other side wins.
                if !restoredState.sameContent(as: base), otherState.sameContent(as: base) {
                    var r = Resolution(agreed: otherState)
                    if restored == .nocodb { r.writeNocoDB = otherState } else { r.writeMongo = otherState }
                    return r
                }
            }
            let side: Side = nocodb.sameContent(as: base) ? .mongo : .nocodb
            return ConflictResolver.resolve(changed: side, nocodb: nocodb, mongo: mongo, agreed: agreed, policy: policy)
        case .mirror(let source):
            let truth = source == .nocodb ? nocodb : mongo
            let other = source == .nocodb ? mongo : nocodb
            var r = Resolution(agreed: truth)
            if !other.sameContent(as: truth) {
                if source == .nocodb { r.writeMongo = truth } else { r.writeNocoDB = truth }
            }
            return r
        }
    }

    /// The MongoDB write that makes the document hold `state`, or nil when it already does.
    func mongoWrite(key: String, state: RecordState, record: RecordSnapshot,
                    newDocumentID: () -> Value) throws(MappingError) -> SyncPlan.MongoWrite? {
        switch state {
        case .present(let fields, let at):
            let set = try codec.mongoFields(key: key, fields: fields, at: at, source: .nocodb, version: record.row?.version)
            guard let document = record.document, let id = document["_id"] else {
                // A record MongoDB does not have is inserted (about twice as fast as an upsert).
                var inserted = Document([("_id", newDocumentID())])
                inserted.fields += set.fields
                return .init(key: key, action: .insert(inserted), state: state)
            }
            // Only what differs, by `_id`: smaller writes, smaller change events; fields only
            // MongoDB has survive. The write holds only while every synced field is as the
            // decision saw it: an app's change to any of them since is a change the policy
            // must weigh, not one to write over or around.
            let changedFields = set.fields.filter { document[$0.key] != $0.value }
            guard !changedFields.isEmpty else { return nil }
            let expected = Self.expected(codec.contentColumns.map(\.field), in: document)
            return .init(key: key, action: .update(id: id, set: Document(changedFields), expected: expected), state: state)
        case .absent:
            guard let document = record.document, let id = document["_id"] else { return nil }
            let expected = Self.expected(codec.contentColumns.map(\.field), in: document)
            return .init(key: key, action: .delete(id: id, expected: expected), state: state)
        }
    }

    /// The document MongoDB holds when it holds the agreed state, as the bridge writes it:
    /// what a decision presumes instead of reading MongoDB, when it has no reason to think an
    /// app changed the document since (the write that follows is conditional, so a wrong
    /// presumption costs a second round, never a lost update). Nil when the agreed state is a
    /// tombstone or cannot be encoded.
    public func presumedDocument(key: String, agreed: RecordState, id: Value) -> Document? {
        guard case .present(let fields, let at) = agreed,
              let set = try? codec.mongoFields(key: key, fields: fields, at: at, source: .nocodb, version: nil) else { return nil }
        return Document([("_id", id)] + set.fields)
    }

    /// The filter that matches `document` only while `fields` still hold what was read, as
    /// MongoDB's equality sees it: a missing field as null, which matches missing or null, and
    /// a scalar also matches an array holding it (an app that turned "x" into ["x", "y"] is not
    /// seen). It leaves out large values and the
    /// metadata fields, which never make records differ (and which a presumed document does not
    /// know as MongoDB holds them).
    static func expected(_ fields: [String], in document: Document) -> Document {
        var out = Document()
        for field in fields where field != "_id" && !RecordCodec.metadataFields.contains(field) {
            let value = document[field] ?? .null
            if case .string(let s) = value, s.utf8.count > largestExpectedValue { continue }
            if case .document = value, JSON.serialize(value).utf8.count > largestExpectedValue { continue }
            if case .array = value, JSON.serialize(value).utf8.count > largestExpectedValue { continue }
            out.fields.append((field, value))
        }
        return out
    }
}
