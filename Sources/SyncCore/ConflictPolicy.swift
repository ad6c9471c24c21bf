/// Which side a record state or a change belongs to.
public enum Side: String, Sendable, Hashable, CaseIterable {
    case nocodb
    case mongo

    public var other: Side { self == .nocodb ? .mongo : .nocodb }
}

/// How a record edited on both sides since they last agreed is decided (README: "Conflict policy").
public struct ConflictPolicy: Sendable, Hashable {
    public enum Rule: String, Sendable, Hashable, CaseIterable {
        case sourcePriority = "source_priority"
        case lastWriteWins = "last_write_wins"
        case fieldMerge = "field_merge"
    }

    public var rule: Rule
    public var nocodbPriority: Int
    public var mongoPriority: Int

    public init(rule: Rule = .sourcePriority, nocodbPriority: Int = 2, mongoPriority: Int = 1) {
        self.rule = rule
        self.nocodbPriority = nocodbPriority
        self.mongoPriority = mongoPriority
    }

    func priority(_ side: Side) -> Int { side == .nocodb ? nocodbPriority : mongoPriority }

    /// `source_priority`: higher priority wins; equal priorities → later time; exact tie → NocoDB.
    func bySourcePriority(_ a: (side: Side, at: Int64), _ b: (side: Side, at: Int64)) -> Side {
        if priority(a.side) != priority(b.side) { return priority(a.side) > priority(b.side) ? a.side : b.side }
        if a.at != b.at { return a.at > b.at ? a.side : b.side }
        return .nocodb
    }

    /// `last_write_wins`: later time wins; exact tie → higher priority; then NocoDB.
    func byLastWrite(_ a: (side: Side, at: Int64), _ b: (side: Side, at: Int64)) -> Side {
        if a.at != b.at { return a.at > b.at ? a.side : b.side }
        if priority(a.side) != priority(b.side) { return priority(a.side) > priority(b.side) ? a.side : b.side }
        return .nocodb
    }
}

/// One side's current state of a record, or the state both sides last agreed on.
///
/// `fields` hold the synced user fields in canonical text (the PostgreSQL text of the value
/// after mapping), so the two sides compare equal exactly when they hold the same values;
/// `updatedAt`, `source` and `version` are metadata and never make records differ.
public enum RecordState: Sendable, Hashable {
    /// Deleted (or never created); `at` is the deletion time when known.
    case absent(at: Int64?)
    case present(fields: [String: String?], at: Int64)

    public var isPresent: Bool { if case .present = self { true } else { false } }

    public var at: Int64? {
        switch self {
        case .absent(let at): at
        case .present(_, let at): at
        }
    }

    public var fields: [String: String?]? {
        if case .present(let f, _) = self { return f }
        return nil
    }

    /// The same state dated no earlier than `time` (ms; 0 or less: unchanged). Where nothing
    /// stamps `updatedAt` on NocoDB edits, the row's own `updated_at` and the commit time of
    /// a captured change bound the edit's time from below.
    public func notBefore(_ time: Int64) -> RecordState {
        guard time > 0 else { return self }
        switch self {
        case .absent(let at): return .absent(at: max(at ?? time, time))
        case .present(let fields, let at): return .present(fields: fields, at: max(at, time))
        }
    }

    /// A tombstone always carries a time, so a later stale update can be refused: one whose
    /// deletion time is unknown is dated `now`, when the bridge learned of it.
    public func dated(deletedAt now: Int64) -> RecordState {
        self == .absent(at: nil) ? .absent(at: now) : self
    }

    /// Same record content (times ignored).
    public func sameContent(as other: RecordState) -> Bool {
        switch (self, other) {
        case (.absent, .absent): true
        case (.present(let a, _), .present(let b, _)): a == b
        default: false
        }
    }
}

/// What to do for one record after a change on `changed` side.
public struct Resolution: Sendable, Equatable {
    /// The state to write to each side (nil: leave that side as it is).
    public var writeNocoDB: RecordState?
    public var writeMongo: RecordState?
    /// The new agreed state (nil: keep the stored one).
    public var agreed: RecordState?
    /// Set when both sides had changed and a rule chose.
    public var conflict: Conflict?

    public struct Conflict: Sendable, Equatable {
        public var winner: Winner
        public var rule: DecidingRule
    }

    /// Whose version both sides end with.
    public enum Winner: String, Sendable, Equatable {
        case nocodb
        case mongo
        /// `field_merge` took fields from both.
        case merged

        init(_ side: Side) { self = side == .nocodb ? .nocodb : .mongo }
    }

    /// The rule that decided a conflict: the policy's, or `tombstone` for a refused
    /// resurrection. Its raw value is what the conflict log and metrics show.
    public enum DecidingRule: String, Sendable, Equatable, CaseIterable {
        case sourcePriority = "source_priority"
        case lastWriteWins = "last_write_wins"
        case fieldMerge = "field_merge"
        case tombstone

        init(_ rule: ConflictPolicy.Rule) { self = DecidingRule(rawValue: rule.rawValue)! }
    }

    public static let nothing = Resolution()

    public init(writeNocoDB: RecordState? = nil, writeMongo: RecordState? = nil, agreed: RecordState? = nil, conflict: Conflict? = nil) {
        self.writeNocoDB = writeNocoDB
        self.writeMongo = writeMongo
        self.agreed = agreed
        self.conflict = conflict
    }
}

/// Three-way decision per record: the changed side's state, the other side's state and the
/// last agreed state. Pure, so every combination is tested without databases.
public enum ConflictResolver {
    public static func resolve(changed: Side, nocodb: RecordState, mongo: RecordState, agreed: RecordState?,
                               policy: ConflictPolicy) -> Resolution {
        let base = agreed ?? .absent(at: nil)
        let mine = changed == .nocodb ? nocodb : mongo
        let theirs = changed == .nocodb ? mongo : nocodb
        // Nothing new on this side: an echo of the bridge's own write, or already handled.
        if mine.sameContent(as: base) { return .nothing }

        if theirs.sameContent(as: base) {
            // Only this side changed: no conflict, except a stale edit reviving a deleted record.
            if case .absent(let deletedAt?) = base, case .present(_, let at) = mine, at <= deletedAt {
                var r = Resolution()
                r.set(changed, .absent(at: deletedAt))
                r.conflict = .init(winner: .init(changed.other), rule: .tombstone)
                return r
            }
            var r = Resolution()
            r.set(changed.other, mine)
            r.agreed = mine
            return r
        }

        // Both changed since they last agreed.
        if mine.sameContent(as: theirs) {
            var r = Resolution()
            r.agreed = mine
            return r
        }
        let a = (side: changed, at: mine.at ?? 0)
        let b = (side: changed.other, at: theirs.at ?? 0)
        let result: RecordState
        let winner: Resolution.Winner
        switch policy.rule {
        case .sourcePriority:
            let side = policy.bySourcePriority(a, b)
            result = side == changed ? mine : theirs
            winner = .init(side)
        case .lastWriteWins:
            let side = policy.byLastWrite(a, b)
            result = side == changed ? mine : theirs
            winner = .init(side)
        case .fieldMerge:
            guard case .present(let mineFields, let mineAt) = mine, case .present(let theirFields, let theirAt) = theirs else {
                // Update against delete: whole-record rule.
                let side = policy.bySourcePriority(a, b)
                result = side == changed ? mine : theirs
                winner = .init(side)
                break
            }
            let baseFields = base.fields ?? [:]
            let fieldWinner = policy.bySourcePriority(a, b)
            var merged: [String: String?] = [:]
            var fromMine = false, fromTheirs = false
            for key in Set(mineFields.keys).union(theirFields.keys) {
                let m = mineFields[key] ?? nil, t = theirFields[key] ?? nil
                let original: String?? = base.isPresent ? .some(baseFields[key] ?? nil) : .none
                let value: String?
                if m == t {
                    value = m
                } else if let original, t == original {
                    value = m; fromMine = true
                } else if let original, m == original {
                    value = t; fromTheirs = true
                } else {
                    value = fieldWinner == changed ? m : t
                    if fieldWinner == changed { fromMine = true } else { fromTheirs = true }
                }
                merged[key] = .some(value)
            }
            result = .present(fields: merged, at: max(mineAt, theirAt))
            winner = fromMine && fromTheirs ? .merged : .init(fromMine ? changed : changed.other)
        }
        var r = Resolution()
        if !nocodb.sameContent(as: result) { r.writeNocoDB = result }
        if !mongo.sameContent(as: result) { r.writeMongo = result }
        r.agreed = result
        r.conflict = .init(winner: winner, rule: .init(policy.rule))
        return r
    }
}

extension Resolution {
    fileprivate mutating func set(_ side: Side, _ state: RecordState) {
        if side == .nocodb { writeNocoDB = state } else { writeMongo = state }
    }
}
