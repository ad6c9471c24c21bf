import Mongo
import Postgres
import SyncCore

/// The bridge's per-record state in PostgreSQL: last agreed states (and tombstones), the
/// MongoDB `_id` → `externalId` map, the conflict log and stream positions. Every call runs
/// inside the caller's transaction so state and data commit together.
public struct SyncStateStore: Sendable {
    public let collection: String

    public init(collection: String) {
        self.collection = collection
    }

    /// Serialises decisions per record across both pipelines (and a resync): whoever holds a
    /// key's lock sees the other's committed agreed state. Keys are locked in hash order so
    /// two batches never deadlock.
    public func lock(_ keys: [String], on connection: PostgresConnection) throws(PostgresError) {
        guard !keys.isEmpty else { return }
        try connection.query(cached: """
            SELECT pg_advisory_xact_lock(h) FROM (
                SELECT DISTINCT hashtextextended($1 || '/' || k, 0) AS h FROM unnest($2::text[]) k ORDER BY 1
            ) s
            """, [collection, PostgresConnection.arrayLiteral(keys)])
    }

    public func agreedStates(_ keys: [String], on connection: PostgresConnection) throws -> [String: RecordState] {
        guard !keys.isEmpty else { return [:] }
        let rows = try connection.query(cached: """
            SELECT external_id, fields::text, at_ms, deleted FROM nocobridge.agreed_state
            WHERE collection = $1 AND external_id = ANY($2::text[])
            """, [collection, PostgresConnection.arrayLiteral(keys)])
        return try Self.states(rows)
    }

    /// Rows of (key, fields, at_ms, deleted), as `agreed_state` and `write_intents` keep them.
    static func states(_ rows: PostgresRows) throws -> [String: RecordState] {
        var out: [String: RecordState] = [:]
        for row in rows.rows {
            guard let key = row[0] else { continue }
            let at = row[2].flatMap { Int64($0) }
            if row[3] == "t" {
                out[key] = .absent(at: at)
            } else if let text = row[1], case .document(let doc) = try JSON.parse(text) {
                var fields: [String: String?] = [:]
                for (name, value) in doc.fields {
                    if case .string(let s) = value { fields[name] = .some(s) } else { fields[name] = .some(nil) }
                }
                out[key] = .present(fields: fields, at: at ?? 0)
            }
        }
        return out
    }

    /// The array parameters (keys, fields, at_ms, deleted) that `unnest` turns back into rows.
    static func columns(_ states: [(key: String, state: RecordState)]) -> [String] {
        var keys: [String?] = [], fields: [String?] = [], ats: [String?] = [], deleted: [String?] = []
        for (key, state) in states {
            keys.append(key)
            ats.append(state.at.map { String($0) })
            switch state {
            case .absent:
                fields.append(nil)
                deleted.append("true")
            case .present(let f, _):
                fields.append(Self.json(f))
                deleted.append("false")
            }
        }
        return [keys, fields, ats, deleted].map(PostgresConnection.arrayLiteral)
    }

    /// Records agreed states and drops the write intents they settle: those of `batch`, and
    /// any other for the same keys (a state agreed since makes an older intent moot).
    public func saveAgreed(_ states: [(key: String, state: RecordState)], settling batch: WriteJournal.Batch? = nil,
                           on connection: PostgresConnection) throws(PostgresError) {
        guard !states.isEmpty || batch != nil else { return }
        try connection.query(cached: """
            WITH settled AS (
                DELETE FROM nocobridge.write_intents
                WHERE (collection = $1 AND external_id = ANY($2::text[])) OR (owner = $6 AND batch_id = $7::bigint)
            )
            INSERT INTO nocobridge.agreed_state (collection, external_id, fields, at_ms, deleted)
            SELECT $1, k, f::jsonb, a::bigint, d::boolean FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS u(k, f, a, d)
            ON CONFLICT (collection, external_id) DO UPDATE
            SET fields = EXCLUDED.fields, at_ms = EXCLUDED.at_ms, deleted = EXCLUDED.deleted
            """, [collection] + Self.columns(states) + [batch?.owner, batch.map { String($0.id) }])
    }

    public func logConflicts(_ entries: [(key: String, nocodb: RecordState, mongo: RecordState, conflict: Resolution.Conflict)],
                             on connection: PostgresConnection) throws(PostgresError) {
        guard !entries.isEmpty else { return }
        try connection.query("""
            INSERT INTO nocobridge.conflicts (collection, external_id, nocodb_version, mongo_version, winner, rule)
            SELECT $1, k, n::jsonb, m::jsonb, w, r FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS u(k, n, m, w, r)
            """, [collection,
                  PostgresConnection.arrayLiteral(entries.map(\.key)),
                  PostgresConnection.arrayLiteral(entries.map { Self.describe($0.nocodb) }),
                  PostgresConnection.arrayLiteral(entries.map { Self.describe($0.mongo) }),
                  PostgresConnection.arrayLiteral(entries.map(\.conflict.winner)),
                  PostgresConnection.arrayLiteral(entries.map(\.conflict.rule))])
    }

    /// Remembers which document holds which key: a delete event carries only `_id`.
    public func saveKeys(_ pairs: [(id: Value, key: String)], on connection: PostgresConnection) throws {
        guard !pairs.isEmpty else { return }
        try connection.query(cached: """
            INSERT INTO nocobridge.key_map (collection, mongo_id, external_id)
            SELECT $1, decode(i, 'hex'), k FROM unnest($2::text[], $3::text[]) AS u(i, k)
            ON CONFLICT (collection, mongo_id) DO UPDATE SET external_id = EXCLUDED.external_id
            """, [collection,
                  PostgresConnection.arrayLiteral(try pairs.map { Self.hex(try BSONBytes.encode($0.id)) }),
                  PostgresConnection.arrayLiteral(pairs.map(\.key))])
    }

    public func keys(forMongoIDs ids: [Value], on connection: PostgresConnection) throws -> [Value: String] {
        guard !ids.isEmpty else { return [:] }
        let encoded = try ids.map { Self.hex(try BSONBytes.encode($0)) }
        let rows = try connection.query(cached: """
            SELECT encode(mongo_id, 'hex'), external_id FROM nocobridge.key_map
            WHERE collection = $1 AND mongo_id = ANY(SELECT decode(i, 'hex') FROM unnest($2::text[]) i)
            """, [collection, PostgresConnection.arrayLiteral(encoded)])
        let byHex = Dictionary(rows.rows.compactMap { r in r[0].flatMap { h in r[1].map { (h, $0) } } }, uniquingKeysWith: { a, _ in a })
        var out: [Value: String] = [:]
        for (id, hex) in zip(ids, encoded) { if let key = byHex[hex] { out[id] = key } }
        return out
    }

    static func json(_ fields: [String: String?]) -> String {
        JSON.serialize(.document(Document(fields.keys.sorted().map { ($0, fields[$0]!.map(Value.string) ?? .null) })))
    }

    static func describe(_ state: RecordState) -> String {
        switch state {
        case .absent(let at): return JSON.serialize(.document(["deleted": .bool(true), "at": at.map { .date($0) } ?? .null]))
        case .present(let f, let at): return JSON.serialize(.document(["fields": (try? JSON.parse(json(f))) ?? .null, "at": .date(at)]))
        }
    }

    static func hex(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }
}

/// Dead letters for records whose decision failed (MongoDB side, resync); changelog
/// rejections are recorded by `ChangelogReader.acknowledge` together with the acknowledgement.
public enum DeadLetterLog {
    public static func record(direction: String, source: String,
                              _ rejections: [(key: String, field: String?, reason: String, payload: String?)],
                              on connection: PostgresConnection) throws(PostgresError) {
        guard !rejections.isEmpty else { return }
        try connection.query("""
            INSERT INTO nocobridge.dead_letters (direction, source_name, key, field, error, op, payload)
            SELECT $1, $2, k, f, e, 'U', nocobridge.payload(p::json) FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) AS u(k, f, e, p)
            """, [direction, source,
                  PostgresConnection.arrayLiteral(rejections.map(\.key)),
                  PostgresConnection.arrayLiteral(rejections.map(\.field)),
                  PostgresConnection.arrayLiteral(rejections.map(\.reason)),
                  PostgresConnection.arrayLiteral(rejections.map(\.payload))])
    }
}

/// Change stream positions, stored in the same transaction as the writes they cover.
public enum PositionStore {
    public static func load(_ stream: String, on connection: PostgresConnection) throws -> [UInt8]? {
        let rows = try connection.query("SELECT encode(position, 'hex') FROM nocobridge.positions WHERE stream = $1", [stream])
        guard let hex = rows.rows.first?[0] else { return nil }
        return PostgresConnection.bytes(fromBytea: "\\x" + hex)
    }

    public static func save(_ stream: String, position: [UInt8], on connection: PostgresConnection) throws(PostgresError) {
        try connection.query(cached: """
            INSERT INTO nocobridge.positions (stream, position, updated_at) VALUES ($1, decode($2, 'hex'), now())
            ON CONFLICT (stream) DO UPDATE SET position = EXCLUDED.position, updated_at = now()
            """, [stream, SyncStateStore.hex(position)])
    }
}
