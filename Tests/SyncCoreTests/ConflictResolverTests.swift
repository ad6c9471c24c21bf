import Testing
@testable import SyncCore

@Suite struct ConflictResolverTests {
    typealias F = [String: String?]
    static let base: F = ["status": "new", "qty": "1", "note": nil]

    static func present(_ changes: F, at: Int64) -> RecordState {
        var f = base
        for (k, v) in changes { f[k] = v }
        return .present(fields: f, at: at)
    }

    /// Applies a resolution to both sides, as the pipelines do.
    static func apply(_ r: Resolution, nocodb: RecordState, mongo: RecordState) -> (RecordState, RecordState) {
        (r.writeNocoDB ?? nocodb, r.writeMongo ?? mongo)
    }

    /// Every combination of: which side changed, the agreed state, each side's state
    /// (unchanged, edited in various fields, deleted), times (earlier, equal, later), the
    /// three policies and three priority orders. Invariants: both sides end equal to the new
    /// agreed state; a side that did not change since the agreed state and a change that is
    /// an echo produce no write; no write when nothing changed.
    @Test func everyCombinationConverges() {
        let agreedStates: [RecordState?] = [nil, .present(fields: Self.base, at: 100), .absent(at: 100)]
        let edits: [F] = [["status": "cooking"], ["qty": "2"], ["status": "served", "qty": "3"], ["note": "x"]]
        var count = 0
        for changed in Side.allCases {
            for agreed in agreedStates {
                var states: [RecordState] = [agreed ?? .absent(at: nil), .absent(at: 150), .absent(at: 50)]
                for e in edits { for t: Int64 in [50, 150, 200] { states.append(Self.present(e, at: t)) } }
                states.append(.present(fields: Self.base, at: 150))
                for mine in states {
                    for theirs in states {
                        for rule in ConflictPolicy.Rule.allCases {
                            for (pn, pm) in [(2, 1), (1, 2), (1, 1)] {
                                let policy = ConflictPolicy(rule: rule, nocodbPriority: pn, mongoPriority: pm)
                                let nocodb = changed == .nocodb ? mine : theirs
                                let mongo = changed == .nocodb ? theirs : mine
                                let r = ConflictResolver.resolve(changed: changed, nocodb: nocodb, mongo: mongo,
                                                                 agreed: agreed, policy: policy)
                                count += 1
                                let (n2, m2) = Self.apply(r, nocodb: nocodb, mongo: mongo)
                                let base = agreed ?? .absent(at: nil)
                                if mine.sameContent(as: base) {
                                    #expect(r == .nothing)
                                    continue
                                }
                                #expect(n2.sameContent(as: m2), "diverged: \(changed) \(String(describing: agreed)) \(mine) \(theirs) \(policy)")
                                if let a = r.agreed { #expect(a.sameContent(as: n2)) }
                                if r.conflict?.rule == .tombstone {
                                    #expect(!n2.isPresent && r.agreed == nil)
                                }
                                // Writes only where content differs.
                                if let w = r.writeNocoDB { #expect(!w.sameContent(as: nocodb)) }
                                if let w = r.writeMongo { #expect(!w.sameContent(as: mongo)) }
                                // No conflict reported unless both changed (or a tombstone refusal).
                                if theirs.sameContent(as: base), r.conflict?.rule != .tombstone {
                                    #expect(r.conflict == nil && m2.sameContent(as: mine))
                                }
                            }
                        }
                    }
                }
            }
        }
        #expect(count > 10_000)
    }

    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let rule: ConflictPolicy.Rule
        let priorities: (Int, Int)
        let nocodb: RecordState
        let mongo: RecordState
        let changed: Side
        let expected: RecordState
        let winner: String
        var testDescription: String { name }
    }

    static let agreed = RecordState.present(fields: base, at: 100)

    static let cases: [Case] = [
        Case(name: "source_priority: NocoDB outranks a later Mongo edit", rule: .sourcePriority, priorities: (2, 1),
             nocodb: present(["status": "cooking"], at: 150), mongo: present(["status": "served"], at: 200), changed: .mongo,
             expected: present(["status": "cooking"], at: 150), winner: "nocodb"),
        Case(name: "source_priority: Mongo outranks when configured higher", rule: .sourcePriority, priorities: (1, 2),
             nocodb: present(["status": "cooking"], at: 200), mongo: present(["status": "served"], at: 150), changed: .nocodb,
             expected: present(["status": "served"], at: 150), winner: "mongo"),
        Case(name: "source_priority: equal priorities, later wins", rule: .sourcePriority, priorities: (1, 1),
             nocodb: present(["status": "cooking"], at: 150), mongo: present(["status": "served"], at: 200), changed: .nocodb,
             expected: present(["status": "served"], at: 200), winner: "mongo"),
        Case(name: "source_priority: equal priorities, exact tie → NocoDB", rule: .sourcePriority, priorities: (1, 1),
             nocodb: present(["status": "cooking"], at: 150), mongo: present(["status": "served"], at: 150), changed: .mongo,
             expected: present(["status": "cooking"], at: 150), winner: "nocodb"),
        Case(name: "last_write_wins: later Mongo beats higher-priority NocoDB", rule: .lastWriteWins, priorities: (2, 1),
             nocodb: present(["status": "cooking"], at: 150), mongo: present(["status": "served"], at: 200), changed: .mongo,
             expected: present(["status": "served"], at: 200), winner: "mongo"),
        Case(name: "last_write_wins: tie → higher priority", rule: .lastWriteWins, priorities: (1, 2),
             nocodb: present(["status": "cooking"], at: 150), mongo: present(["status": "served"], at: 150), changed: .nocodb,
             expected: present(["status": "served"], at: 150), winner: "mongo"),
        Case(name: "last_write_wins: tie and equal priorities → NocoDB", rule: .lastWriteWins, priorities: (1, 1),
             nocodb: present(["status": "cooking"], at: 150), mongo: present(["status": "served"], at: 150), changed: .mongo,
             expected: present(["status": "cooking"], at: 150), winner: "nocodb"),
        Case(name: "field_merge: different fields both kept", rule: .fieldMerge, priorities: (2, 1),
             nocodb: present(["status": "cooking"], at: 150), mongo: present(["qty": "4"], at: 200), changed: .mongo,
             expected: present(["status": "cooking", "qty": "4"], at: 200), winner: "merged"),
        Case(name: "field_merge: same field → source_priority per field", rule: .fieldMerge, priorities: (2, 1),
             nocodb: present(["status": "cooking", "note": "a"], at: 150), mongo: present(["status": "served", "qty": "9"], at: 200),
             changed: .mongo, expected: present(["status": "cooking", "note": "a", "qty": "9"], at: 200), winner: "merged"),
        Case(name: "update vs delete, source_priority: NocoDB update beats Mongo delete", rule: .sourcePriority, priorities: (2, 1),
             nocodb: present(["status": "cooking"], at: 150), mongo: .absent(at: 200), changed: .mongo,
             expected: present(["status": "cooking"], at: 150), winner: "nocodb"),
        Case(name: "update vs delete, last_write_wins: later delete wins", rule: .lastWriteWins, priorities: (2, 1),
             nocodb: present(["status": "cooking"], at: 150), mongo: .absent(at: 200), changed: .mongo,
             expected: .absent(at: 200), winner: "mongo"),
        Case(name: "update vs delete, last_write_wins: later update wins", rule: .lastWriteWins, priorities: (2, 1),
             nocodb: .absent(at: 150), mongo: present(["qty": "5"], at: 200), changed: .nocodb,
             expected: present(["qty": "5"], at: 200), winner: "mongo"),
        Case(name: "update vs delete, field_merge falls back to source_priority", rule: .fieldMerge, priorities: (1, 2),
             nocodb: present(["status": "cooking"], at: 300), mongo: .absent(at: 200), changed: .nocodb,
             expected: .absent(at: 200), winner: "mongo"),
    ]

    @Test(arguments: cases)
    func documentedWinner(_ c: Case) {
        let policy = ConflictPolicy(rule: c.rule, nocodbPriority: c.priorities.0, mongoPriority: c.priorities.1)
        let r = ConflictResolver.resolve(changed: c.changed, nocodb: c.nocodb, mongo: c.mongo, agreed: Self.agreed, policy: policy)
        #expect(r.agreed?.sameContent(as: c.expected) == true, "\(String(describing: r.agreed))")
        #expect(r.conflict?.winner.rawValue == c.winner)
        #expect(r.conflict?.rule.rawValue == c.rule.rawValue)
        let (n, m) = Self.apply(r, nocodb: c.nocodb, mongo: c.mongo)
        #expect(n.sameContent(as: c.expected) && m.sameContent(as: c.expected))
    }

    @Test func noConflictWhenOnlyOneSideChanged() {
        let edit = Self.present(["qty": "7"], at: 150)
        let r = ConflictResolver.resolve(changed: .mongo, nocodb: Self.agreed, mongo: edit, agreed: Self.agreed, policy: .init())
        #expect(r == Resolution(writeNocoDB: edit, writeMongo: nil, agreed: edit, conflict: nil))
    }

    @Test func echoOfTheBridgesOwnWriteDoesNothing() {
        let r = ConflictResolver.resolve(changed: .mongo, nocodb: Self.agreed, mongo: .present(fields: Self.base, at: 999),
                                         agreed: Self.agreed, policy: .init())
        #expect(r == .nothing)
    }

    @Test func staleUpdateNeverResurrectsADeletedRecord() {
        let tomb = RecordState.absent(at: 200)
        let stale = ConflictResolver.resolve(changed: .mongo, nocodb: tomb, mongo: Self.present(["qty": "2"], at: 150),
                                             agreed: tomb, policy: .init())
        #expect(stale.writeMongo == .absent(at: 200) && stale.writeNocoDB == nil && stale.conflict?.rule == .tombstone)
        let fresh = ConflictResolver.resolve(changed: .nocodb, nocodb: Self.present(["qty": "2"], at: 250), mongo: tomb,
                                             agreed: tomb, policy: .init())
        #expect(fresh.writeMongo?.isPresent == true && fresh.conflict == nil)
    }

    @Test func notBeforeOnlyMovesTimesLater() {
        #expect(Self.present(["qty": "1"], at: 100).notBefore(150) == Self.present(["qty": "1"], at: 150))
        #expect(Self.present(["qty": "1"], at: 200).notBefore(150) == Self.present(["qty": "1"], at: 200))
        #expect(RecordState.absent(at: nil).notBefore(150) == .absent(at: 150))
        #expect(RecordState.absent(at: 300).notBefore(150) == .absent(at: 300))
        #expect(RecordState.absent(at: nil).notBefore(0) == .absent(at: nil))
    }

    @Test func deleteOfAnUnchangedRecordPropagates() {
        let r = ConflictResolver.resolve(changed: .nocodb, nocodb: .absent(at: 300), mongo: Self.agreed, agreed: Self.agreed, policy: .init())
        #expect(r.writeMongo == .absent(at: 300) && r.agreed == .absent(at: 300))
    }
}
