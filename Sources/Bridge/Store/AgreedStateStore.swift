import Postgres
import SyncCore

/// `nocobridge.agreed_state`: per record, the last state both sides held, or a tombstone.
/// Every call runs inside the caller's transaction, so state and data commit together.
public struct AgreedStateStore: Sendable {
    public let collection: String

    public init(collection: String) {
        self.collection = collection
    }

    /// Serialises decisions per record across both pipelines (and a resync, recovery, a
    /// dead-letter retry): whoever holds a key's lock sees the other's committed agreed state.
    /// Keys are locked in hash order so two batches never deadlock.
    public func lock(_ keys: [String], on connection: PostgresConnection) throws(PostgresError) {
        guard !keys.isEmpty else { return }
        try connection.query(cached: """
            SELECT pg_advisory_xact_lock(h) FROM (
                SELECT DISTINCT hashtextextended($1 || '/' || k, 0) AS h FROM unnest($2::text[]) k ORDER BY 1
            ) s
            """, [collection, PostgresConnection.arrayLiteral(keys)])
    }

    /// The agreed states of `keys` and, in the same round trip (the decision's hot path), every
    /// write intent for them, whoever wrote it, newest first: `RecordSynchronizer` weighs
    /// intents before deciding. Usually there are none. `saved` holds each state's number in
    /// `nocobridge.agreed_seq` (absent: saved before the column existed).
    func statesAndIntents(_ keys: [String], on connection: PostgresConnection) throws
        -> (agreed: [String: RecordState], intents: [String: [RecordState]], saved: [String: Int64]) {
        guard !keys.isEmpty else { return ([:], [:], [:]) }
        let rows = try connection.query(cached: """
            SELECT NULL::bigint AS intent, external_id, fields::text AS fields, at_ms, deleted, seq FROM nocobridge.agreed_state
            WHERE collection = $1 AND external_id = ANY($2::text[])
            UNION ALL
            SELECT id, external_id, fields::text, at_ms, deleted, NULL::bigint FROM nocobridge.write_intents
            WHERE collection = $1 AND external_id = ANY($2::text[])
            ORDER BY intent DESC NULLS FIRST
            """, [collection, PostgresConnection.arrayLiteral(keys)])
        var agreed: [String: RecordState] = [:]
        var intents: [String: [RecordState]] = [:]
        var saved: [String: Int64] = [:]
        for row in rows.named {
            guard let key = row["external_id"],
                  let state = try RecordStateColumns.state(fields: row["fields"], at: row["at_ms"], deleted: row["deleted"]) else { continue }
            if row["intent"] == nil {
                agreed[key] = state
                if let seq = row["seq"].flatMap({ Int64($0) }) { saved[key] = seq }
            } else {
                intents[key, default: []].append(state)
            }
        }
        return (agreed, intents, saved)
    }

    /// The highest number any save has taken so far (see `statesAndIntents`), read before a
    /// change stream batch is asked for: a state saved after it is numbered above it.
    public static func lastSaved(on connection: PostgresConnection) throws(PostgresError) -> Int64 {
        let value = try connection.query(cached: """
            SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS last FROM nocobridge.agreed_seq
            """, []).named.first?["last"]
        return value.flatMap { Int64($0) } ?? 0
    }

    /// Records agreed states and drops the write intents of `batch`, which they settle, even
    /// when a restarting flow has meanwhile handed them to a dead writer's name. Other
    /// writers' intents for the same keys stay until they are settled (`IntentRecovery`) or
    /// found landed (`RecordSynchronizer`): a state agreed since does not make them moot, as
    /// one may be a write still on its way to MongoDB (a holder fenced out mid-write, a killed
    /// writer's command the server still runs).
    public func save(_ states: [(key: String, state: RecordState)], settling batch: WriteJournal.Batch? = nil,
                     on connection: PostgresConnection) throws(PostgresError) {
        guard !states.isEmpty || batch != nil else { return }
        try connection.query(cached: """
            WITH settled AS (
                DELETE FROM nocobridge.write_intents WHERE journalled_by = $6 AND batch_id = $7::bigint
            )
            INSERT INTO nocobridge.agreed_state (collection, external_id, fields, at_ms, deleted, seq)
            SELECT $1, k, f::jsonb, a::bigint, d::boolean, nextval('nocobridge.agreed_seq')
            FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS u(k, f, a, d)
            ON CONFLICT (collection, external_id) DO UPDATE
            SET fields = EXCLUDED.fields, at_ms = EXCLUDED.at_ms, deleted = EXCLUDED.deleted, seq = EXCLUDED.seq
            """, [collection] + RecordStateColumns.arrays(states) + [batch?.owner, batch.map { String($0.id) }])
    }
}

/// How `agreed_state` and `write_intents` keep a record state: `external_id`, `fields`
/// (canonical text per content field as a JSON object; NULL for a tombstone), `at_ms`,
/// `deleted`.
enum RecordStateColumns {
    static func decode(_ result: PostgresRows) throws -> [String: RecordState] {
        var out: [String: RecordState] = [:]
        for row in result.named {
            guard let key = row["external_id"] else { continue }
            if let state = try state(fields: row["fields"], at: row["at_ms"], deleted: row["deleted"]) { out[key] = state }
        }
        return out
    }

    /// One row's state; nil for a row that is neither a tombstone nor an object of fields.
    static func state(fields text: String?, at: String?, deleted: String?) throws -> RecordState? {
        let at = at.flatMap { Int64($0) }
        if deleted == "t" { return .absent(at: at) }
        guard let text, case .document(let doc) = try JSON.parse(text) else { return nil }
        var fields: [String: String?] = [:]
        for (name, value) in doc.fields {
            if case .string(let s) = value { fields[name] = .some(s) } else { fields[name] = .some(nil) }
        }
        return .present(fields: fields, at: at ?? 0)
    }

    /// The array parameters (keys, fields, at_ms, deleted) that `unnest` turns back into rows.
    static func arrays(_ states: [(key: String, state: RecordState)]) -> [String] {
        var keys: [String?] = [], fields: [String?] = [], ats: [String?] = [], deleted: [String?] = []
        for (key, state) in states {
            keys.append(key)
            ats.append(state.at.map { String($0) })
            switch state {
            case .absent:
                fields.append(nil)
                deleted.append("true")
            case .present(let f, _):
                fields.append(json(f))
                deleted.append("false")
            }
        }
        return [keys, fields, ats, deleted].map(PostgresConnection.arrayLiteral)
    }

    static func json(_ fields: [String: String?]) -> String {
        JSON.serialize(.document(Document(fields.keys.sorted().map { ($0, fields[$0]!.map(Value.string) ?? .null) })))
    }

    /// A state as the conflict log shows it.
    static func describe(_ state: RecordState) -> String {
        switch state {
        case .absent(let at): JSON.serialize(.document(["deleted": .bool(true), "at": at.map { .date($0) } ?? .null]))
        case .present(let f, let at): JSON.serialize(.document(["fields": (try? JSON.parse(json(f))) ?? .null, "at": .date(at)]))
        }
    }
}
