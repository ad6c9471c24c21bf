import Testing
@testable import SyncCore

/// The planner against a simulated NocoDB row and MongoDB document: every combination of
/// mode, agreed state, both sides' states and policy is planned, the plan is applied the way
/// the bridge applies it (conditional writes checked against what was read), and both sides
/// must end as the plan says.
@Suite struct SyncPlannerTests {
    static let columns = [
        Column(name: "externalId", kind: .text, postgresType: "text"),
        Column(name: "updatedAt", kind: .timestamp, postgresType: "timestamp without time zone"),
        Column(name: "source", kind: .text, postgresType: "text"),
        Column(name: "version", kind: .int64, postgresType: "bigint"),
        Column(name: "status", kind: .text, postgresType: "text"),
        Column(name: "qty", kind: .int64, postgresType: "bigint", field: "Quantity"),
    ]
    static let codec = RecordCodec(mapper: RowMapper(columns: columns))
    static let id = Value.objectId(ObjectID(hex: "65a1b2c3d4e5f60718293a4b")!)
    static let newID = Value.objectId(ObjectID(hex: "000000000000000000000001")!)

    /// A side's state in the simulation: absent, or status/qty at a time.
    struct Side: Equatable, CustomStringConvertible {
        var status: String?
        var qty: Int64?
        var at: Int64
        var description: String { "\(status ?? "nil")/\(qty.map(String.init) ?? "nil")@\(at)" }
    }

    static func row(_ s: Side?, deleted: Bool = false, version: String = "v1") -> LiveRow? {
        guard let s else { return nil }
        return LiveRow(values: ["k", Timestamps.postgresText(milliseconds: s.at), "nocodb", "3", s.status, s.qty.map(String.init)],
                       deleted: deleted, version: 3, rowVersion: version)
    }

    static func document(_ s: Side?) -> Document? {
        guard let s else { return nil }
        return Document([("_id", id), ("externalId", .string("k")), ("status", s.status.map(Value.string) ?? .null),
                         ("Quantity", s.qty.map(Value.int64) ?? .null), ("updatedAt", .date(s.at)), ("kitchen", .int32(7))])
    }

    static func plan(_ records: [RecordSnapshot], mode: SyncMode, policy: ConflictPolicy = ConflictPolicy()) -> SyncPlan {
        SyncPlanner(codec: codec, policy: policy).plan(records, mode: mode, now: 1_000, newDocumentID: { newID })
    }

    /// Does a MongoDB filter match this document (equality on each field; null matches missing)?
    static func matches(_ filter: Document, _ document: Document) -> Bool {
        filter.fields.allSatisfy { field in
            let value = document[field.key] ?? .null
            return value == field.value
        }
    }

    @Test func everyCombinationEndsWithBothSidesAsPlanned() throws {
        let base = Side(status: "new", qty: 1, at: 100)
        let agreedStates: [RecordState?] = [nil, try Self.codec.state(row: Self.row(base)!.values, fallbackAt: 0), .absent(at: 100)]
        var sides: [Side?] = [nil, base]
        for status in ["cooking", "new"] { for qty: Int64 in [1, 2] { for at: Int64 in [50, 200] { sides.append(Side(status: status, qty: qty, at: at)) } } }
        sides.append(Side(status: nil, qty: nil, at: 150))
        let modes: [SyncMode] = [.change(.nocodb), .change(.mongo), .reconcile(restored: nil), .reconcile(restored: .nocodb),
                                 .reconcile(restored: .mongo), .mirror(from: .nocodb), .mirror(from: .mongo)]
        var planned = 0
        for mode in modes {
            for agreed in agreedStates {
                for nocodb in sides {
                    for nocodbDeleted in nocodb == nil ? [false] : [false, true] {
                        for mongo in sides {
                            for rule in ConflictPolicy.Rule.allCases {
                                let policy = ConflictPolicy(rule: rule)
                                let row = Self.row(nocodb, deleted: nocodbDeleted)
                                let doc = Self.document(mongo)
                                let snapshot = RecordSnapshot(key: "k", agreed: agreed, row: row, document: doc, changedAt: 300)
                                let plan = Self.plan([snapshot], mode: mode, policy: policy)
                                planned += 1
                                try check(plan, snapshot: snapshot, mode: mode, policy: policy)
                            }
                        }
                    }
                }
            }
        }
        #expect(planned > 5_000)
    }

    /// Applies a plan to the snapshot's row and document as the bridge would and checks it.
    func check(_ plan: SyncPlan, snapshot: RecordSnapshot, mode: SyncMode, policy: ConflictPolicy) throws {
        let context = "\(mode) agreed \(String(describing: snapshot.agreed)) row \(String(describing: snapshot.row)) doc \(String(describing: snapshot.document)) \(policy.rule)"
        #expect(plan.rejections.isEmpty, "\(context)")
        var document = snapshot.document
        for write in plan.mongoWrites {
            #expect(write.key == "k")
            switch write.action {
            case .insert(let inserted):
                #expect(snapshot.document == nil, "insert over an existing document: \(context)")
                #expect(inserted["_id"] == Self.newID)
                document = inserted
            case .update(let id, let set, let expected):
                guard let current = document else { Issue.record("update without a document: \(context)"); continue }
                #expect(id == Self.id && !set.fields.isEmpty)
                #expect(Self.matches(expected, current), "the expected values must match the document read: \(context)")
                #expect(Set(expected.keys) == ["status", "Quantity"], "expected names every synced field as read")
                var updated = current
                for field in set.fields { updated[field.key] = field.value }
                document = updated
                #expect(document?["kitchen"] == .int32(7), "fields only MongoDB has survive")
            case .delete(let id, let expected):
                guard let current = document else { Issue.record("delete without a document: \(context)"); continue }
                #expect(id == Self.id && Self.matches(expected, current), "\(context)")
                document = nil
            }
        }
        var row = snapshot.row
        for write in plan.nocodbWrites {
            #expect(write.expectedRowVersion == snapshot.row?.rowVersion, "a NocoDB write is conditional on the version read")
            switch write.action {
            case .upsert(let fields, let at):
                row = LiveRow(values: ["k", Timestamps.postgresText(milliseconds: at), "mongo", "4",
                                       fields["status"] ?? nil, fields["qty"] ?? nil], deleted: false, rowVersion: "v2")
            case .delete:
                row = nil
            }
        }
        let planner = SyncPlanner(codec: Self.codec, policy: policy)
        let nocodbAfter = try planner.nocodbState(RecordSnapshot(key: "k", row: row, changedAt: 0), changed: nil)
        let mongoAfter = try document.map { try Self.codec.state(document: $0, fallbackAt: 0) } ?? .absent(at: nil)
        let nocodbBefore = try planner.nocodbState(snapshot, changed: mode.changedSide)
        let mongoBefore = try snapshot.document.map { try Self.codec.state(document: $0, fallbackAt: 0) } ?? .absent(at: nil)
        if let agreed = plan.agreed.first?.state {
            #expect(nocodbAfter.sameContent(as: agreed) && mongoAfter.sameContent(as: agreed), "both sides hold the agreed state: \(context)")
            if case .absent(let at) = agreed { #expect(at != nil, "a tombstone always has a time") }
        } else if case .change = mode {
            // Nothing agreed: an echo or a refused resurrection; neither writes NocoDB unless re-deleting.
            #expect(plan.nocodbWrites.allSatisfy { if case .delete = $0.action { true } else { false } }, "\(context)")
        }
        // A side that already holds the target gets no write.
        if nocodbBefore.sameContent(as: nocodbAfter) { #expect(plan.nocodbWrites.isEmpty, "needless NocoDB write: \(context)") }
        if mongoBefore.sameContent(as: mongoAfter) { #expect(plan.mongoWrites.isEmpty, "needless MongoDB write: \(context)") }
        // A streaming change equal to the agreed state is an echo: nothing at all.
        if case .change(let side) = mode, (side == .nocodb ? nocodbBefore : mongoBefore).sameContent(as: snapshot.agreed ?? .absent(at: nil)) {
            #expect(plan.mongoWrites.isEmpty && plan.nocodbWrites.isEmpty && plan.agreed.isEmpty && plan.conflicts.isEmpty, "echo: \(context)")
        }
    }

    @Test func aNewRecordFromNocoDBIsInsertedAndItsIDRememberedOnceWritten() {
        let snapshot = RecordSnapshot(key: "k", row: Self.row(Side(status: "new", qty: 1, at: 100)), documentUnread: true, changedAt: 100)
        let plan = Self.plan([snapshot], mode: .change(.nocodb))
        guard case .insert(let document)? = plan.mongoWrites.first?.action else { Issue.record("no insert: \(plan.mongoWrites)"); return }
        #expect(document["_id"] == Self.newID && document["externalId"] == .string("k") && document["Quantity"] == .int64(1))
        #expect(plan.documentIDs.isEmpty, "the new _id is remembered only once MongoDB took the insert")
        let (settled, again) = plan.settled(by: .init())
        #expect(again.isEmpty && settled.documentIDs.map(\.key) == ["k"] && settled.agreed.map(\.key) == ["k"])
    }

    /// An app inserted the key first: the record is read and decided again, never forced
    /// (the old code `$set` the generated `_id` on the app's document, which MongoDB refuses).
    @Test func aDuplicateKeyOnInsertIsDecidedAgain() {
        let snapshot = RecordSnapshot(key: "k", row: Self.row(Side(status: "new", qty: 1, at: 100)), documentUnread: true, changedAt: 100)
        let plan = Self.plan([snapshot], mode: .change(.nocodb))
        let (settled, again) = plan.settled(by: .init(errors: [0: (11000, "E11000 duplicate key")]))
        #expect(again == ["k"])
        #expect(settled.agreed.isEmpty && settled.documentIDs.isEmpty && settled.rejections.isEmpty && settled.nocodbWrites.isEmpty)
    }

    @Test func aRefusedWriteIsRejectedAndNothingElseOfItsRecordStands() {
        let records = [
            RecordSnapshot(key: "a", agreed: nil, row: Self.row(Side(status: "x", qty: 1, at: 100)), documentUnread: true, changedAt: 100),
            RecordSnapshot(key: "b", agreed: nil, row: Self.row(Side(status: "y", qty: 2, at: 100)), documentUnread: true, changedAt: 100),
        ]
        let plan = Self.plan(records, mode: .change(.nocodb))
        let (settled, again) = plan.settled(by: .init(errors: [1: (121, "Document failed validation")]))
        #expect(again.isEmpty)
        #expect(settled.rejections.map(\.key) == ["b"] && settled.rejections[0].reason.contains("121"))
        #expect(settled.agreed.map(\.key) == ["a"] && settled.documentIDs.map(\.key) == ["a"])
    }

    /// The document changed between the read and the write (an app's write landed in the
    /// window): the write matched nothing, and the record is decided again from fresh reads.
    @Test func aDocumentThatMovedOnIsDecidedAgainAndNotOverwritten() {
        let agreed = try! Self.codec.state(row: Self.row(Side(status: "new", qty: 1, at: 100))!.values, fallbackAt: 0)
        let snapshot = RecordSnapshot(key: "k", agreed: agreed, row: Self.row(Side(status: "cooking", qty: 1, at: 200)),
                                      document: Self.document(Side(status: "new", qty: 1, at: 100)), changedAt: 200)
        let plan = Self.plan([snapshot], mode: .change(.nocodb))
        guard case .update(_, let set, let expected)? = plan.mongoWrites.first?.action else { Issue.record("no update"); return }
        #expect(set["status"] == .string("cooking") && set["Quantity"] == nil, "only what differs is set")
        #expect(expected["status"] == .string("new"), "the write is conditional on the value read")
        let (settled, again) = plan.settled(by: .init(movedOn: ["k"]))
        #expect(again == ["k"] && settled.agreed.isEmpty)
    }

    /// An update event whose document is gone by the time it is decided: the collection was
    /// dropped (a `mongorestore --drop` beginning) or the document deleted after the event.
    /// The removal comes later in the stream and decides; taken now, a drop would read as a
    /// deletion of every record in flight, and the policy would weigh it against NocoDB's
    /// edits (the restore test saw NocoDB's winning edits written back into the dropped
    /// collection, where they broke the restore's own inserts).
    @Test func aDocumentGoneSinceItsEventShowedItIsLeftToTheEventThatRemovedIt() {
        let agreed = try! Self.codec.state(row: Self.row(Side(status: "new", qty: 1, at: 100))!.values, fallbackAt: 0)
        let edited = Self.row(Side(status: "cooking", qty: 1, at: 200))
        for row in [Self.row(Side(status: "new", qty: 1, at: 100)), edited] {
            let gone = RecordSnapshot(key: "k", agreed: agreed, row: row, document: nil, changedAt: 300, eventShowedDocument: true)
            let plan = Self.plan([gone], mode: .change(.mongo))
            #expect(plan.mongoWrites.isEmpty && plan.nocodbWrites.isEmpty && plan.agreed.isEmpty && plan.conflicts.isEmpty)
            // A delete event decides: MongoDB deleted the record.
            let deleted = RecordSnapshot(key: "k", agreed: agreed, row: row, document: nil, changedAt: 300)
            let decided = Self.plan([deleted], mode: .change(.mongo))
            #expect(!decided.nocodbWrites.isEmpty || !decided.mongoWrites.isEmpty || !decided.conflicts.isEmpty)
        }
        // Only a MongoDB change defers: a NocoDB change or a reconcile reads absence as absence.
        let fromNocoDB = RecordSnapshot(key: "k", agreed: agreed, row: edited, document: nil, changedAt: 300, eventShowedDocument: true)
        #expect(!Self.plan([fromNocoDB], mode: .change(.nocodb)).mongoWrites.isEmpty)
    }

    @Test func aRowThatChangedMeanwhileIsDecidedAgain() {
        let agreed = try! Self.codec.state(row: Self.row(Side(status: "new", qty: 1, at: 100))!.values, fallbackAt: 0)
        let snapshot = RecordSnapshot(key: "k", agreed: agreed, row: Self.row(Side(status: "new", qty: 1, at: 100), version: "v7"),
                                      document: Self.document(Side(status: "served", qty: 1, at: 200)), changedAt: 200)
        let plan = Self.plan([snapshot], mode: .change(.mongo))
        #expect(plan.nocodbWrites.map(\.expectedRowVersion) == ["v7"])
        let settled = plan.settled(nocodbUnapplied: ["k"])
        #expect(settled.agreed.isEmpty && settled.nocodbWrites.isEmpty)
    }

    @Test func largeValuesAreLeftOutOfTheExpectedFilter() {
        let big = String(repeating: "x", count: SyncPlanner.largestExpectedValue + 1)
        var document = Self.document(Side(status: big, qty: 1, at: 100))!
        document["Quantity"] = .int64(1)
        let expected = SyncPlanner.expected(["status", "Quantity", "missing"], in: document)
        #expect(expected["status"] == nil && expected["Quantity"] == .int64(1) && expected["missing"] == .null)
    }

    @Test func unmappableSidesAreRejectedNamingTheField() {
        var document = Self.document(Side(status: "ok", qty: 1, at: 100))!
        document["Quantity"] = .array([.int32(1)])
        let plan = Self.plan([RecordSnapshot(key: "k", row: Self.row(Side(status: "ok", qty: 1, at: 100)), document: document, changedAt: 1)],
                             mode: .change(.mongo))
        #expect(plan.rejections.map(\.field) == ["Quantity"] && plan.mongoWrites.isEmpty && plan.nocodbWrites.isEmpty && plan.agreed.isEmpty)
        #expect(plan.rejections.first?.payload?.contains("Quantity") == true)
    }

    /// A side restored from a backup lost what differs from the agreed state: the other
    /// side wins even where the policy would have chosen the restored side.
    @Test func restoreLossIsRepairedFromTheOtherSide() {
        let agreed = try! Self.codec.state(row: Self.row(Side(status: "served", qty: 2, at: 200))!.values, fallbackAt: 0)
        let snapshot = RecordSnapshot(key: "k", agreed: agreed, row: Self.row(Side(status: "served", qty: 2, at: 200)),
                                      document: Self.document(Side(status: "new", qty: 1, at: 100)), changedAt: 0)
        let restored = Self.plan([snapshot], mode: .reconcile(restored: .mongo), policy: ConflictPolicy(rule: .sourcePriority, nocodbPriority: 1, mongoPriority: 2))
        #expect(restored.nocodbWrites.isEmpty && restored.mongoWrites.count == 1 && restored.agreed.first?.state.sameContent(as: agreed) == true)
        #expect(restored.conflicts.isEmpty)
    }

    @Test func timesComeFromTheChangeWhereNothingStampsThem() throws {
        let planner = SyncPlanner(codec: Self.codec, policy: ConflictPolicy(), editTime: .latestKnown)
        var row = Self.row(Side(status: "x", qty: 1, at: 100))!
        row.editedAt = 150
        let state = try planner.nocodbState(RecordSnapshot(key: "k", row: row, changedAt: 400), changed: .nocodb)
        #expect(state.at == 400)
        let deleted = try planner.nocodbState(RecordSnapshot(key: "k", changedAt: 0, deletedAt: 250), changed: .mongo)
        #expect(deleted == .absent(at: 250))
    }
}
