/// How the records of a batch are decided.
public enum SyncMode: Sendable, Equatable {
    /// The conflict policy, for a change on this side (streaming).
    case change(Side)
    /// The conflict policy, taking as changed whichever side differs from the agreed state
    /// (resync, recovery, a retried dead letter: either or both sides may have moved). A side
    /// `restored` from a backup did not change: where only it differs from the agreed state,
    /// what it lacks or holds differently is restore loss, and the other side wins.
    case reconcile(restored: Side?)
    /// Make the other side equal to this one, whatever changed (resync with a direction).
    case mirror(from: Side)

    /// The side a streaming change came from; nil when both sides are compared.
    public var changedSide: Side? { if case .change(let side) = self { side } else { nil } }
}

/// Where the time of a NocoDB edit comes from, for `last_write_wins` and tombstones.
public enum NocoDBEditTime: Sendable, Equatable {
    /// The capture trigger stamps `updatedAt` on every edit made outside the bridge.
    case updatedAtColumn
    /// Nothing stamps `updatedAt` (logical capture): the latest of `updatedAt`, NocoDB's
    /// own `updated_at`, and the commit time of the change being applied.
    case latestKnown
}

/// A NocoDB row as the bridge read it.
public struct LiveRow: Sendable, Equatable {
    /// Texts aligned with the mapper's columns.
    public var values: [String?]
    /// In NocoDB's trash (`__nc_deleted`).
    public var deleted: Bool
    /// The `version` column (counts edits).
    public var version: Int64?
    /// NocoDB's own `updated_at` (ms), which NocoDB sets on every edit through its API.
    public var editedAt: Int64?
    /// PostgreSQL's row version (`xmin`) when read: the bridge holds no row lock while it
    /// talks to MongoDB, so a write back to this row applies only if it is still this version.
    public var rowVersion: String?
    /// NocoDB's `updated_by` (the user id NocoDB stamps on edits through it), for history.
    public var editedBy: String?

    public init(values: [String?], deleted: Bool = false, version: Int64? = nil, editedAt: Int64? = nil, rowVersion: String? = nil,
                editedBy: String? = nil) {
        self.values = values
        self.deleted = deleted
        self.version = version
        self.editedAt = editedAt
        self.rowVersion = rowVersion
        self.editedBy = editedBy
    }
}

/// What the bridge knows about one record when it decides it: the last agreed state, both
/// sides as read, and what the change that named it said.
public struct RecordSnapshot: Sendable {
    public var key: String
    public var agreed: RecordState?
    /// NocoDB's live row; nil when there is none (deleted outright, or never made).
    public var row: LiveRow?
    /// MongoDB's document; nil when there is none.
    public var document: Document?
    /// MongoDB was not read: a record never agreed on, changed in NocoDB, is inserted
    /// optimistically and the unique index catches the rare document an app made first.
    public var documentUnread: Bool
    /// When the change happened (ms), for a side that no longer has the record.
    public var changedAt: Int64
    /// When a row deleted outright was deleted (from the changelog), for a decision made from
    /// the MongoDB side.
    public var deletedAt: Int64?
    /// The MongoDB event decided showed a document (an insert, update or replace, the
    /// record's last event in the batch). If the document is gone when it is read, something
    /// removed it after the event, and that removal comes later in the stream: a delete
    /// (decided then), or a dropped or replaced collection (`mongorestore --drop`, which the
    /// flow takes as a restore). Deciding now would take a drop for deletions of every
    /// record in flight, weighed against NocoDB's edits.
    public var eventShowedDocument: Bool

    public init(key: String, agreed: RecordState? = nil, row: LiveRow? = nil, document: Document? = nil,
                documentUnread: Bool = false, changedAt: Int64, deletedAt: Int64? = nil, eventShowedDocument: Bool = false) {
        self.eventShowedDocument = eventShowedDocument
        self.key = key
        self.agreed = agreed
        self.row = row
        self.document = document
        self.documentUnread = documentUnread
        self.changedAt = changedAt
        self.deletedAt = deletedAt
    }
}

/// What a batch's decisions ask of both sides and of the bridge's own state. The planner
/// makes it without I/O; the bridge executes it and settles it against what the servers
/// answered (`settled(by:)`), which may send some keys round again.
public struct SyncPlan: Sendable {
    /// A write to MongoDB. Updates and deletes are by `_id` and carry the values the
    /// decision read (`expected`), so a document an app changed in between is left alone and
    /// its record decided again, instead of the app's write being overwritten.
    public struct MongoWrite: Sendable, Equatable {
        public enum Action: Sendable, Equatable {
            /// A record MongoDB does not have (a generated `_id`; a duplicate key means an app
            /// made it first).
            case insert(Document)
            /// Only the fields that differ; `expected` holds their values as read.
            case update(id: Value, set: Document, expected: Document)
            /// `expected` holds the content fields as read.
            case delete(id: Value, expected: Document)
        }

        public var key: String
        public var action: Action
        /// What MongoDB holds for this record once the write is made (the write intent).
        public var state: RecordState
    }

    /// A write to NocoDB's table, applied only if the row is still the version the decision
    /// read (nil: there was no row).
    public struct NocoDBWrite: Sendable, Equatable {
        public enum Action: Sendable, Equatable {
            case upsert(fields: [String: String?], at: Int64)
            case delete(at: Int64)
        }

        public var key: String
        public var action: Action
        public var expectedRowVersion: String?
    }

    public struct Conflict: Sendable, Equatable {
        public var key: String
        public var nocodb: RecordState
        public var mongo: RecordState
        public var resolution: Resolution.Conflict

        public init(key: String, nocodb: RecordState, mongo: RecordState, resolution: Resolution.Conflict) {
            self.key = key
            self.nocodb = nocodb
            self.mongo = mongo
            self.resolution = resolution
        }
    }

    public var mongoWrites: [MongoWrite] = []
    public var nocodbWrites: [NocoDBWrite] = []
    /// New agreed states, in the order the keys were given.
    public var agreed: [(key: String, state: RecordState)] = []
    public var conflicts: [Conflict] = []
    public var rejections: [Rejection] = []
    /// `_id` → key pairs seen (a delete event carries only `_id`).
    public var documentIDs: [(id: Value, key: String)] = []

    public init() {}

    /// Write errors and documents found changed, from executing `mongoWrites`.
    public struct MongoReport: Sendable {
        /// By index into `mongoWrites`.
        public var errors: [Int: (code: Int32, message: String)]
        /// Keys whose conditional write matched nothing: the document changed (or went) after
        /// it was read.
        public var movedOn: Set<String>

        public init(errors: [Int: (code: Int32, message: String)] = [:], movedOn: Set<String> = []) {
            self.errors = errors
            self.movedOn = movedOn
        }
    }

    /// The duplicate-key error: an app inserted the key first.
    public static let duplicateKeyCode: Int32 = 11000

    /// The plan once MongoDB has answered, and the keys to decide again. A key whose insert
    /// met a duplicate (an app made the record first) or whose conditional write found the
    /// document changed is decided again from fresh reads, never forced. A key MongoDB
    /// refused for another reason is rejected. Either way nothing else of that key's plan
    /// stands: no NocoDB write, no agreed state, no conflict logged for it.
    public func settled(by report: MongoReport) -> (plan: SyncPlan, again: [String]) {
        var again: [String] = []
        var dropped = Set<String>()
        var plan = self
        for (index, write) in mongoWrites.enumerated() {
            if let error = report.errors[index] {
                dropped.insert(write.key)
                if error.code == Self.duplicateKeyCode, case .insert = write.action {
                    again.append(write.key)
                } else {
                    plan.rejections.append(Rejection(key: write.key, field: nil,
                                                     reason: "MongoDB refused the write (code \(error.code)): \(error.message)"))
                }
            } else if report.movedOn.contains(write.key) {
                dropped.insert(write.key)
                again.append(write.key)
            } else if case .insert(let document) = write.action, let id = document["_id"] {
                plan.documentIDs.append((id, write.key))
            }
        }
        plan.drop(dropped)
        return (plan, again)
    }

    /// The plan once NocoDB's writes were made, without the keys whose row had changed since
    /// it was read (those are decided again).
    public func settled(nocodbUnapplied keys: Set<String>) -> SyncPlan {
        var plan = self
        plan.drop(keys)
        return plan
    }

    private mutating func drop(_ keys: Set<String>) {
        guard !keys.isEmpty else { return }
        nocodbWrites.removeAll { keys.contains($0.key) }
        agreed.removeAll { keys.contains($0.key) }
        conflicts.removeAll { keys.contains($0.key) }
        documentIDs.removeAll { keys.contains($0.key) }
    }
}
