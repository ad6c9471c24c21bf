import Postgres
import SyncCore

/// Where a dead letter came from, which also says how a retry decides the record again.
public enum DeadLetterKind: String, Sendable, CaseIterable {
    /// A NocoDB change that could not cross to MongoDB.
    case toMongo = "to-mongo"
    /// A MongoDB change that could not cross to NocoDB.
    case toNocoDB = "to-nocodb"
    /// A record a resync could not reconcile.
    case resync
    /// A record recovery could not reconcile after a writer died.
    case recovery

    /// How a retry decides the record: from the side that changed, or, where neither side
    /// is known to have changed (resync, recovery), by comparing both with the agreed state.
    public var retryMode: SyncMode {
        switch self {
        case .toMongo: .change(.nocodb)
        case .toNocoDB: .change(.mongo)
        case .resync, .recovery: .reconcile(restored: nil)
        }
    }
}

/// `nocobridge.dead_letters`: changes that cannot cross, each naming its table, key and
/// field with the reason and the row or document; the flow goes on without them. Every dead
/// letter names its source as the table's `schema.table` (older rows may name the MongoDB
/// `db.collection`).
public enum DeadLetterStore {
    public struct Entry: Sendable, Codable {
        public let id: Int64
        public let direction: String
        public let source: String
        public let key: String?
        public let field: String?
        public let error: String
        public let createdAt: String
        public let retries: Int
        public let payload: String?
    }

    public static func record(_ kind: DeadLetterKind, source: String, _ rejections: [Rejection],
                              on connection: PostgresConnection) throws(PostgresError) {
        guard !rejections.isEmpty else { return }
        try connection.query(cached: """
            INSERT INTO nocobridge.dead_letters (direction, source_name, key, field, error, op, payload)
            SELECT $1, $2, k, f, e, o, nocobridge.payload(p::json)
            FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS u(k, f, e, p, o)
            WHERE NOT EXISTS (\(Self.sameUnretried("$2", key: "k", field: "f", error: "e")))
            """, [kind.rawValue, source,
                  PostgresConnection.arrayLiteral(rejections.map { $0.key ?? "-" }),
                  PostgresConnection.arrayLiteral(rejections.map(\.field)),
                  PostgresConnection.arrayLiteral(rejections.map(\.reason)),
                  PostgresConnection.arrayLiteral(rejections.map(\.payload)),
                  PostgresConnection.arrayLiteral(rejections.map { $0.operation?.rawValue ?? "U" })])
    }

    /// One refusal is one dead letter: a batch that failed after deciding (a failover, say)
    /// is settled by intent recovery and then retried by its flow, and both meet the same
    /// refusal of the same record. An identical dead letter not yet retried is not repeated.
    static func sameUnretried(_ source: String, key: String, field: String, error: String) -> String {
        """
        SELECT 1 FROM nocobridge.dead_letters x WHERE x.source_name = \(source) AND x.key IS NOT DISTINCT FROM \(key)
            AND x.field IS NOT DISTINCT FROM \(field) AND x.error = \(error) AND x.retries = 0
        """
    }

    /// Dead letters for changelog rows, with the captured row as payload, and the changelog
    /// rows `ids` deleted, in one statement.
    static func recordAcknowledging(changelog ids: [Int64], rejections: [Rejection], source: String,
                                    on connection: PostgresConnection) throws(PostgresError) {
        try connection.query(cached: """
            WITH rejected AS (
                SELECT * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) AS d(id, key, field, error, op)
            ), dead AS (
                INSERT INTO nocobridge.dead_letters (direction, source_name, key, field, error, op, payload)
                SELECT $7, $8, d.key, d.field, d.error, d.op, nocobridge.payload(c.row_data)
                FROM rejected d JOIN nocobridge.changelog c ON c.id = d.id
                WHERE NOT EXISTS (\(Self.sameUnretried("$8", key: "d.key", field: "d.field", error: "d.error")))
            )
            DELETE FROM nocobridge.changelog WHERE id = ANY($1::bigint[])
            """, [
                PostgresConnection.arrayLiteral(ids.map { String($0) }),
                PostgresConnection.arrayLiteral(rejections.map { $0.changeID.map { String($0) } }),
                PostgresConnection.arrayLiteral(rejections.map(\.key)),
                PostgresConnection.arrayLiteral(rejections.map(\.field)),
                PostgresConnection.arrayLiteral(rejections.map(\.reason)),
                PostgresConnection.arrayLiteral(rejections.map { $0.operation?.rawValue ?? "U" }),
                DeadLetterKind.toMongo.rawValue, source,
            ])
    }

    public static func list(limit: Int, on connection: PostgresConnection) throws -> [Entry] {
        try connection.query("""
            SELECT id, direction, source_name, key, field, error, created_at::text AS created_at, retries, NULL AS payload
            FROM nocobridge.dead_letters ORDER BY id LIMIT $1
            """, [String(limit)]).named.map(entry)
    }

    /// One entry, or all when `id` is nil (for retries), with payloads.
    public static func entries(_ id: Int64?, on connection: PostgresConnection) throws -> [Entry] {
        try connection.query("""
            SELECT id, direction, source_name, key, field, error, created_at::text AS created_at, retries, payload::text AS payload
            FROM nocobridge.dead_letters WHERE $1::bigint IS NULL OR id = $1::bigint ORDER BY id
            """, [id.map { String($0) }]).named.map(entry)
    }

    /// Entries with their payloads for the console, newest first; `sources` narrows to a
    /// table's names (`schema.table`, or an older row's `db.collection`), `key` to one record.
    public static func entries(sources: [String]?, key: String?, limit: Int, on connection: PostgresConnection) throws -> [Entry] {
        try connection.query("""
            SELECT id, direction, source_name, key, field, error,
                   to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS created_at, retries,
                   jsonb_pretty(payload) AS payload
            FROM nocobridge.dead_letters
            WHERE ($1::text[] IS NULL OR source_name = ANY($1::text[])) AND ($2::text IS NULL OR key = $2)
            ORDER BY id DESC LIMIT $3
            """, [sources.map { PostgresConnection.arrayLiteral($0) }, key, String(limit)]).named.map(entry)
    }

    /// Entries by id (those that still exist), oldest first; every entry when `ids` is nil.
    public static func entries(_ ids: [Int64]?, on connection: PostgresConnection) throws -> [Entry] {
        try connection.query("""
            SELECT id, direction, source_name, key, field, error, created_at::text AS created_at, retries, payload::text AS payload
            FROM nocobridge.dead_letters WHERE $1::bigint[] IS NULL OR id = ANY($1::bigint[]) ORDER BY id
            """, [ids.map { PostgresConnection.arrayLiteral($0.map { String($0) }) }]).named.map(entry)
    }

    /// Deletes an entry; false when there was none.
    public static func delete(_ id: Int64, on connection: PostgresConnection) throws -> Bool {
        try delete([id], on: connection) == 1
    }

    /// Deletes entries in one statement; returns how many existed.
    public static func delete(_ ids: [Int64], on connection: PostgresConnection) throws -> Int {
        try connection.query("DELETE FROM nocobridge.dead_letters WHERE id = ANY($1::bigint[])",
                             [PostgresConnection.arrayLiteral(ids.map { String($0) })]).affected
    }

    /// A retry that failed again: the new reason and field, one more retry counted.
    static func retriedAndFailed(_ id: Int64, again: Rejection, on connection: PostgresConnection) throws {
        try connection.query("""
            UPDATE nocobridge.dead_letters SET retries = retries + 1, last_retry_at = now(), error = $2, field = $3 WHERE id = $1
            """, [String(id), again.reason, again.field])
    }

    /// Dead letters per source, for status: a table's, under either name it was recorded by.
    static func count(sources: [String], on connection: PostgresConnection) throws -> Int {
        Int(try connection.query("SELECT count(*) AS n FROM nocobridge.dead_letters WHERE source_name = ANY($1::text[])",
                                 [PostgresConnection.arrayLiteral(sources)]).named.first?["n"] ?? "0") ?? 0
    }

    private static func entry(_ row: PostgresRows.Row) -> Entry {
        Entry(id: Int64(row["id"] ?? "0") ?? 0, direction: row["direction"] ?? "", source: row["source_name"] ?? "",
              key: row["key"], field: row["field"], error: row["error"] ?? "", createdAt: row["created_at"] ?? "",
              retries: Int(row["retries"] ?? "0") ?? 0, payload: row["payload"])
    }
}
