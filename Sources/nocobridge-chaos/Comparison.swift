import Foundation
import Mongo
import Postgres
import SyncCore

/// Both databases read back and compared with the expected state, record by record.
struct Comparison {
    var records = 0
    var mismatches: [String] = []
    /// (table, key) of each mismatch, for the record history printed after a failed run.
    var mismatchedKeys: [(table: String, key: String)] = []

    /// Field values as canonical text, as the expected state keeps them.
    static func text(_ value: Value) -> String? {
        switch value {
        case .null: nil
        case .int32(let i): String(i)
        case .int64(let i): String(i)
        case .decimal(let d): d.text
        case .string(let s): s
        case .double(let d): String(d)
        default: "\(value)"
        }
    }

    static func run(expected: [String: [String: [String: String]]], postgres: PostgresConnection, schema: String,
                    mongo: MongoClientPool) throws -> Comparison {
        var result = Comparison()
        for table in ChaosTables.names {
            let fields = ChaosTables.fields[table]!
            let columns = fields.map { PostgresConnection.quoteIdentifier($0) + "::text" }.joined(separator: ", ")
            let rows = try postgres.query("""
                SELECT "externalId", \(columns) FROM \(PostgresConnection.quoteIdentifier(schema)).\(PostgresConnection.quoteIdentifier(table))
                WHERE NOT coalesce("__nc_deleted", false)
                """).rows
            var nocodb: [String: [String: String]] = [:]
            for row in rows {
                let key = row[0] ?? "<null>"
                if nocodb[key] != nil { result.mismatches.append("\(table) \(key): duplicate row in NocoDB") }
                nocodb[key] = Dictionary(uniqueKeysWithValues: fields.enumerated().compactMap { i, f in row[i + 1].map { (f, $0) } })
            }
            let docs = try mongo.withClient { (c: MongoClient) throws(MongoError) in try c.find(collection: table) }
            var mongoDocs: [String: [String: String]] = [:]
            for doc in docs {
                guard case .string(let key)? = doc["externalId"] else {
                    result.mismatches.append("\(table): a document without externalId")
                    continue
                }
                if mongoDocs[key] != nil { result.mismatches.append("\(table) \(key): duplicate document in MongoDB") }
                mongoDocs[key] = Dictionary(uniqueKeysWithValues: fields.compactMap { f in doc[f].flatMap(text).map { (f, $0) } })
            }
            let wanted = expected[table] ?? [:]
            let keys = Set(nocodb.keys).union(mongoDocs.keys).union(wanted.keys)
            result.records += keys.count
            for key in keys.sorted() {
                let w = wanted[key], n = nocodb[key], m = mongoDocs[key]
                if w != n || w != m {
                    result.mismatchedKeys.append((table, key))
                    result.mismatches.append("\(table) \(key): expected \(w.map { "\($0)" } ?? "absent"), NocoDB \(n.map { "\($0)" } ?? "absent"), MongoDB \(m.map { "\($0)" } ?? "absent")")
                }
            }
        }
        return result
    }

    /// What the bridge decided for a record, from its history (`nocobridge.history`), so a
    /// failed run says how a record went wrong, not only that it did.
    static func history(table: String, key: String, postgres: PostgresConnection) throws -> [String] {
        try postgres.query("""
            SELECT to_char(at, 'HH24:MI:SS.MS'), side, op, coalesce(changed::text, ''), coalesce(discarded::text, ''),
                   decision, coalesce(winner, ''), coalesce(rule, ''), via, coalesce(note, '')
            FROM nocobridge.history WHERE collection = $1 AND external_id = $2 ORDER BY id
            """, [table, key]).rows.map { row in row.map { $0 ?? "" }.filter { !$0.isEmpty }.joined(separator: " ") }
    }
}
