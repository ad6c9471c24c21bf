import Foundation
import Logging
import Postgres
import ServiceLifecycle
import SyncCore

/// Record history (`nocobridge.history`): per record, what changed, on which side, who
/// changed it where NocoDB knows (its `updated_by`), and what the bridge decided. NocoDB's
/// community edition dropped its audit log (0.258.10); the bridge sees every change on both
/// sides, so it keeps one.
///
/// Written by `RecordSynchronizer` in the transaction that records the agreed state, as one
/// set-based INSERT per batch, so an entry exists exactly when the decision committed. The
/// bridge's own writes coming back (echoes) change nothing and leave no entry.
public struct HistoryLog: Sendable {
    /// Retention (`SYNC_HISTORY_DAYS`); always > 0 here: with 0 there is no `HistoryLog`.
    public let days: Int

    public init(days: Int) {
        self.days = days
    }

    /// One record's entry, as built from a batch's decisions.
    public struct Entry: Sendable, Equatable {
        public var key: String
        /// `nocodb`, `mongo` or `both`: who changed the record since the agreed state.
        public var side: String
        /// `insert`, `update`, `delete`, or `rejected` (sent to dead letters).
        public var op: String
        /// `{field: [before, after]}` (canonical text, as the agreed state keeps it).
        public var changed: String?
        /// Conflicts: `{side: {field: value}}`, the values the decision overwrote.
        public var discarded: String?
        public var editedBy: String?
        /// `write-mongo`, `write-nocodb`, `write-both`, `agree` (both sides already held it)
        /// or `dead-letter`.
        public var decision: String
        public var winner: String?
        public var rule: String?
        public var note: String?
    }

    /// What one `synchronize` call decided, in the synchronizer's own terms.
    public struct Decisions {
        public var mode: SyncMode
        public var keys: [String]
        /// Agreed states before the batch (absent key: never agreed).
        public var before: [String: RecordState]
        /// Agreed states the batch records (absent key: unchanged, or its write failed).
        public var after: [String: RecordState]
        public var mongoWritten: [String]
        public var nocodbWritten: [String]
        public var conflicts: [SyncPlan.Conflict]
        /// NocoDB's `updated_by` of the live rows read.
        public var editors: [String: String]
        public var rejections: [Rejection]
        /// Keys decided again by a second pass (inserted without a read, found present): that
        /// pass records them.
        public var retried: [String]

        public init(mode: SyncMode, keys: [String], before: [String: RecordState], after: [String: RecordState],
                    mongoWritten: [String], nocodbWritten: [String],
                    conflicts: [SyncPlan.Conflict], editors: [String: String], rejections: [Rejection],
                    retried: [String] = []) {
            self.mode = mode
            self.keys = keys
            self.before = before
            self.after = after
            self.mongoWritten = mongoWritten
            self.nocodbWritten = nocodbWritten
            self.conflicts = conflicts
            self.editors = editors
            self.rejections = rejections
            self.retried = retried
        }
    }

    /// Writes the batch's entries with one statement, inside the caller's transaction.
    public func record(_ decisions: Decisions, collection: String, on connection: PostgresConnection) throws(PostgresError) {
        let entries = Self.entries(decisions)
        guard !entries.isEmpty else { return }
        let via: String = if case .change = decisions.mode { "stream" } else { "resync" }
        func column(_ values: (Entry) -> String?) -> String? { PostgresConnection.arrayLiteral(entries.map(values)) }
        try connection.query(cached: """
            INSERT INTO nocobridge.history (collection, via, external_id, side, op, changed, discarded, edited_by, decision, winner, rule, note)
            SELECT $1, $2, k, s, o, c::jsonb, d::jsonb, b, x, w, r, n
            FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])
                AS u(k, s, o, c, d, b, x, w, r, n)
            """, [collection, via, column(\.key), column(\.side), column(\.op), column(\.changed), column(\.discarded),
                  column(\.editedBy), column(\.decision), column(\.winner), column(\.rule), column(\.note)])
    }

    /// The entries of one batch: a record gets one when a side was written, a conflict was
    /// decided, the agreed content moved, or it went to dead letters. Pure, for unit tests.
    public static func entries(_ d: Decisions) -> [Entry] {
        let mongoWritten = Set(d.mongoWritten), nocodbWritten = Set(d.nocodbWritten)
        let conflicts = Dictionary(d.conflicts.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        let rejected = Dictionary(d.rejections.compactMap { r in r.key.map { ($0, r) } }, uniquingKeysWith: { a, _ in a })
        let changedSide: Side? = if case .change(let side) = d.mode { side } else { nil }
        var seen = Set(d.retried)
        var out: [Entry] = []
        for key in d.keys where seen.insert(key).inserted {
            let before = d.before[key]
            if let r = rejected[key] {
                let side = changedSide?.rawValue ?? "both"
                out.append(Entry(key: key, side: side, op: "rejected", changed: nil, discarded: nil,
                                 editedBy: side == Side.mongo.rawValue ? nil : d.editors[key], decision: "dead-letter",
                                 note: r.field.map { "\($0): \(r.reason)" } ?? r.reason))
                continue
            }
            let after = d.after[key]
            // A failed write made the record a dead letter (above).
            let wroteMongo = mongoWritten.contains(key)
            let wroteNocoDB = nocodbWritten.contains(key)
            let conflict = conflicts[key]
            let moved = after.map { a in !(before.map { $0.sameContent(as: a) } ?? false) } ?? false
            guard wroteMongo || wroteNocoDB || conflict != nil || moved else { continue }
            let final = after ?? before ?? .absent(at: nil)

            let side: String
            if conflict != nil {
                side = "both"
            } else if let changedSide {
                side = changedSide.rawValue
            } else if wroteMongo != wroteNocoDB {
                // A resync wrote one side from the other.
                side = wroteMongo ? Side.nocodb.rawValue : Side.mongo.rawValue
            } else {
                side = "both"
            }
            // What the changing side proposed: the decided state, except where a conflict
            // rule kept something else.
            var proposal = final
            if let c = conflict, let changedSide { proposal = changedSide == .nocodb ? c.nocodb : c.mongo }
            let op: String = switch (before?.isPresent ?? false, proposal.isPresent) {
            case (false, true): "insert"
            case (true, false): "delete"
            case (true, true): "update"
            case (false, false): "delete"
            }
            let decision = wroteMongo && wroteNocoDB ? "write-both" : wroteMongo ? "write-mongo" : wroteNocoDB ? "write-nocodb" : "agree"
            var discarded: String?
            if let c = conflict {
                var lost: [(String, Value)] = []
                for (name, state) in [(Side.nocodb.rawValue, c.nocodb), (Side.mongo.rawValue, c.mongo)] {
                    if let overwritten = overwrittenFields(state, by: final) { lost.append((name, overwritten)) }
                }
                discarded = lost.isEmpty ? nil : JSON.serialize(.document(Document(lost)))
            }
            out.append(Entry(key: key, side: side, op: op, changed: diff(before, final), discarded: discarded,
                             editedBy: side == Side.mongo.rawValue ? nil : d.editors[key], decision: decision,
                             winner: conflict?.resolution.winner.rawValue, rule: conflict?.resolution.rule.rawValue, note: nil))
        }
        return out
    }

    /// `{field: [before, after]}` over the fields that differ; nil when none do.
    static func diff(_ before: RecordState?, _ after: RecordState) -> String? {
        let old = before?.fields ?? [:], new = after.fields ?? [:]
        var out: [(String, Value)] = []
        for name in Set(old.keys).union(new.keys).sorted() {
            let a = old[name] ?? nil, b = new[name] ?? nil
            guard a != b else { continue }
            out.append((name, .array([a.map(Value.string) ?? .null, b.map(Value.string) ?? .null])))
        }
        return out.isEmpty ? nil : JSON.serialize(.document(Document(out)))
    }

    /// A side's values that the decided state does not keep (`deleted: true` for a side whose
    /// deletion was overruled, or whose record was deleted).
    static func overwrittenFields(_ state: RecordState, by final: RecordState) -> Value? {
        switch (state, final) {
        case (.absent, .absent): return nil
        case (.absent, .present): return .document(["deleted": .bool(true)])
        case (.present(let fields, _), .absent):
            return .document(Document(fields.keys.sorted().map { ($0, fields[$0]!.map(Value.string) ?? .null) }))
        case (.present(let fields, _), .present(let kept, _)):
            let lost = fields.keys.sorted().filter { (fields[$0] ?? nil) != (kept[$0] ?? nil) }
            return lost.isEmpty ? nil : .document(Document(lost.map { ($0, fields[$0]!.map(Value.string) ?? .null) }))
        }
    }
}

/// Reads history for the console, `/api/history` and `nocobridge history`.
public enum HistoryQuery {
    public struct Row: Sendable {
        public var id: Int64
        public var at: String
        public var collection: String
        public var key: String
        public var side: String
        public var op: String
        /// JSON text, as stored.
        public var changed: String?
        public var discarded: String?
        public var editedBy: String?
        public var decision: String
        public var winner: String?
        public var rule: String?
        public var via: String
        public var note: String?
    }

    /// Newest first. `collection` and `key` narrow it; `keyPrefix` matches keys starting with
    /// it (a search box); `before` pages back by id.
    public static func rows(collection: String?, key: String?, keyPrefix: String? = nil, before: Int64? = nil, limit: Int,
                            on connection: PostgresConnection) throws(PostgresError) -> [Row] {
        let result = try connection.query("""
            SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), collection, external_id, side, op,
                   changed::text, discarded::text, edited_by, decision, winner, rule, via, note
            FROM nocobridge.history
            WHERE ($1::text IS NULL OR collection = $1) AND ($2::text IS NULL OR external_id = $2)
              AND ($3::text IS NULL OR starts_with(external_id, $3)) AND ($4::bigint IS NULL OR id < $4)
            ORDER BY id DESC LIMIT $5
            """, [collection, key, keyPrefix, before.map { String($0) }, String(limit)])
        return result.rows.map { r in
            Row(id: Int64(r[0] ?? "") ?? 0, at: r[1] ?? "", collection: r[2] ?? "", key: r[3] ?? "", side: r[4] ?? "",
                op: r[5] ?? "", changed: r[6], discarded: r[7], editedBy: r[8], decision: r[9] ?? "", winner: r[10],
                rule: r[11], via: r[12] ?? "", note: r[13])
        }
    }
}

/// Deletes history older than the retention, a few thousand rows per statement so no
/// statement holds many row locks or runs long beside the bridge's writes.
public struct HistoryPruner: Sendable {
    public let days: Int
    public var batchSize = 5000

    public init(days: Int) {
        self.days = days
    }

    /// Returns the rows deleted; stops early when `shouldStop` says so.
    @discardableResult
    public func prune(on connection: PostgresConnection, shouldStop: () -> Bool = { false }) throws(PostgresError) -> Int {
        var total = 0
        while !shouldStop() {
            let deleted = try connection.query("""
                DELETE FROM nocobridge.history WHERE id IN (
                    SELECT id FROM nocobridge.history WHERE at < now() - make_interval(days => $1::int)
                    LIMIT $2 FOR UPDATE SKIP LOCKED)
                """, [String(days), String(batchSize)]).affected
            total += deleted
            if deleted < batchSize { break }
        }
        return total
    }
}

/// Runs `HistoryPruner` in the background of `nocobridge run`, on its own thread (libpq
/// blocks): shortly after start, then every `interval`. Every instance prunes, leader or
/// standby; `SKIP LOCKED` keeps two from waiting on each other.
public struct HistoryPruneService: Service {
    let url: String
    let pruner: HistoryPruner
    let interval: Duration
    let logger: Logger

    public init(postgresURL: String, days: Int, interval: Duration = .seconds(600), logger: Logger) {
        url = postgresURL
        pruner = HistoryPruner(days: days)
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        let stop = StopSignal()
        try await withGracefulShutdownHandler {
            try await BlockingExecutor.run(name: "nocobridge-history-prune", stop: stop) { [self] in run(until: stop) }
        } onGracefulShutdown: {
            stop.stop()
        }
    }

    /// The service's loop, on the calling thread: a first prune shortly after start (at most
    /// 30 s), then one per interval, until `stop`.
    public func run(until stop: StopSignal) {
        let intervalMilliseconds = Int(interval.components.seconds * 1000 + interval.components.attoseconds / 1_000_000_000_000_000)
        stop.sleep(milliseconds: min(intervalMilliseconds, 30_000))
        while !stop.isStopped {
            do {
                let connection = try PostgresConnection(url: url, applicationName: "nocobridge-history-prune")
                let deleted = try pruner.prune(on: connection, shouldStop: { stop.isStopped })
                if deleted > 0 { logger.info("history pruned", metadata: ["rows": "\(deleted)", "days": "\(pruner.days)"]) }
            } catch {
                logger.warning("history prune failed; trying again later", metadata: ["error": "\(error)"])
            }
            stop.sleep(milliseconds: intervalMilliseconds)
        }
    }
}

extension HistoryQuery.Row {
    /// The form `/api/history` and `nocobridge history --json` give.
    public func json(table: String) -> Value {
        func parsed(_ text: String?) -> Value { text.flatMap { try? JSON.parse($0) } ?? .null }
        return .document(["id": .int64(id), "at": .string(at), "table": .string(table), "collection": .string(collection),
                          "key": .string(key), "side": .string(side), "op": .string(op), "changed": parsed(changed),
                          "discarded": parsed(discarded), "by": editedBy.map(Value.string) ?? .null, "decision": .string(decision),
                          "winner": winner.map(Value.string) ?? .null, "rule": rule.map(Value.string) ?? .null,
                          "via": .string(via), "note": note.map(Value.string) ?? .null])
    }
}
