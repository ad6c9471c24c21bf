import Postgres
import SyncCore

/// `nocobridge.conflicts`: every conflict the policy decided, with both versions, the winner
/// and the rule.
public struct ConflictLog: Sendable {
    public let collection: String

    public init(collection: String) {
        self.collection = collection
    }

    public func record(_ entries: [SyncPlan.Conflict], on connection: PostgresConnection) throws(PostgresError) {
        guard !entries.isEmpty else { return }
        try connection.query(cached: """
            INSERT INTO nocobridge.conflicts (collection, external_id, nocodb_version, mongo_version, winner, rule)
            SELECT $1, k, n::jsonb, m::jsonb, w, r FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS u(k, n, m, w, r)
            """, [collection,
                  PostgresConnection.arrayLiteral(entries.map(\.key)),
                  PostgresConnection.arrayLiteral(entries.map { RecordStateColumns.describe($0.nocodb) }),
                  PostgresConnection.arrayLiteral(entries.map { RecordStateColumns.describe($0.mongo) }),
                  PostgresConnection.arrayLiteral(entries.map(\.resolution.winner.rawValue)),
                  PostgresConnection.arrayLiteral(entries.map(\.resolution.rule.rawValue))])
    }
}

/// Reading the log, for the console, `/api/conflicts` and `nocobridge conflicts`.
extension ConflictLog {
    public struct Row: Sendable {
        public var id: Int64
        public var at: String
        public var collection: String
        public var key: String
        /// Each side's version as stored (`{"fields": {…}, "at": …}` or `{"deleted": true, "at": …}`).
        public var nocodb: Version
        public var mongo: Version
        public var winner: String
        public var rule: String
        /// Fields whose values differ between the two versions (all of them when one side
        /// deleted the record).
        public var differing: [String]
    }

    /// One side's version, decoded from the stored JSON.
    public struct Version: Sendable, Equatable {
        public var deleted: Bool
        public var at: String?
        /// Canonical text per field (nil: null), in field name order.
        public var fields: [(name: String, value: String?)]

        public static func == (a: Version, b: Version) -> Bool {
            a.deleted == b.deleted && a.at == b.at && a.fields.elementsEqual(b.fields) { $0.name == $1.name && $0.value == $1.value }
        }

        /// `RecordStateColumns.describe`'s shape; anything else reads as an empty version.
        public init(json: String?) {
            deleted = false
            at = nil
            fields = []
            guard let json, case .document(let doc)? = try? JSON.parse(json) else { return }
            if case .bool(true)? = doc["deleted"] { deleted = true }
            if case .string(let s)? = doc["at"] { at = s }
            if case .document(let f)? = doc["fields"] {
                fields = f.fields.map { field in
                    switch field.value {
                    case .null: (field.key, nil)
                    case .string(let s): (field.key, s)
                    default: (field.key, JSON.serialize(field.value))
                    }
                }.sorted { $0.0 < $1.0 }
            }
        }
    }

    public static func differing(_ a: Version, _ b: Version) -> [String] {
        let x = Dictionary(a.fields.map { ($0.name, $0.value) }, uniquingKeysWith: { p, _ in p })
        let y = Dictionary(b.fields.map { ($0.name, $0.value) }, uniquingKeysWith: { p, _ in p })
        let names = Set(x.keys).union(y.keys).sorted()
        if a.deleted != b.deleted { return names }
        return names.filter { (x[$0] ?? nil) != (y[$0] ?? nil) || (x[$0] == nil) != (y[$0] == nil) }
    }

    /// Newest first; `collection`, `key` (exact) and `keyPrefix` narrow; `before` pages back by id.
    public static func rows(collection: String?, key: String?, keyPrefix: String? = nil, before: Int64? = nil, limit: Int,
                            on connection: PostgresConnection) throws(PostgresError) -> [Row] {
        let result = try connection.query("""
            SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), collection, external_id,
                   nocodb_version::text, mongo_version::text, winner, rule
            FROM nocobridge.conflicts
            WHERE ($1::text IS NULL OR collection = $1) AND ($2::text IS NULL OR external_id = $2)
              AND ($3::text IS NULL OR starts_with(external_id, $3)) AND ($4::bigint IS NULL OR id < $4)
            ORDER BY id DESC LIMIT $5
            """, [collection, key, keyPrefix, before.map { String($0) }, String(limit)])
        return result.rows.map { r in
            let n = Version(json: r[4]), m = Version(json: r[5])
            return Row(id: Int64(r[0] ?? "") ?? 0, at: r[1] ?? "", collection: r[2] ?? "", key: r[3] ?? "",
                       nocodb: n, mongo: m, winner: r[6] ?? "", rule: r[7] ?? "", differing: differing(n, m))
        }
    }
}

extension ConflictLog.Row {
    /// The form `/api/conflicts` and `nocobridge conflicts --json` give.
    public func json(table: String) -> Value {
        func version(_ v: ConflictLog.Version) -> Value {
            .document(["deleted": .bool(v.deleted), "at": v.at.map(Value.string) ?? .null,
                       "fields": .array(v.fields.map { .array([.string($0.name), $0.value.map(Value.string) ?? .null]) })])
        }
        return .document(["id": .int64(id), "at": .string(at), "table": .string(table), "collection": .string(collection),
                          "key": .string(key), "winner": .string(winner), "rule": .string(rule),
                          "differing": .array(differing.map(Value.string)), "nocodb": version(nocodb), "mongo": version(mongo)])
    }
}
