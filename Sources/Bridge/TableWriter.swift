import Postgres
import SyncCore

/// Reads live rows by key and writes records into a NocoDB table the way NocoDB's own API
/// would: `created_at` = now (naive UTC) and `nc_order` = max + 1 on insert, `updated_at` on
/// update, `id` never touched, deletes as NocoDB's soft delete when the table has one. All
/// statements are set-based (one per batch) and run as the bridge, so the triggers neither
/// stamp nor capture them.
///
/// Rows are read without a lock, with their version (`xmin`); every write applies only to a
/// row still at the version read (or, for an insert, where there was and is no row), and
/// reports which keys it applied to. A NocoDB edit racing the bridge therefore never waits on
/// MongoDB and is never overwritten: its record is decided again.
public struct TableWriter: Sendable {
    public let shape: TableShape
    public let codec: RecordCodec
    private let selectSQL: String
    private let upsertSQL: String
    private let deleteSQL: String
    /// Logical capture: the writes carry the bridge's mark in the WAL, so the decoder skips them.
    private let marksLogicalDecoding: Bool

    public init(shape: TableShape, marksLogicalDecoding: Bool = false) {
        self.marksLogicalDecoding = marksLogicalDecoding
        self.shape = shape
        codec = RecordCodec(mapper: shape.mapper)
        let q = PostgresConnection.quoteIdentifier
        let qualified = q(shape.mapping.schema) + "." + q(shape.mapping.table)
        let names = Set(shape.allColumns.map(\.name))
        let has = { (n: String) in names.contains(n) }
        let mapperCols = shape.mapper.columns.map { q($0.name) }.joined(separator: ", ")
        let deletedExpr = has("__nc_deleted") ? "coalesce(\"__nc_deleted\", false)" : "false"
        let editedExpr = has("updated_at") ? "\"updated_at\"::text" : "NULL::text"
        let editorExpr = has("updated_by") ? "\"updated_by\"::text" : "NULL::text"
        selectSQL = """
            SELECT "externalId", \(deletedExpr), \(editedExpr), xmin::text, \(editorExpr), \(mapperCols)
            FROM \(qualified) WHERE "externalId" = ANY($1::text[])
            """

        // Upsert: key, content columns, updatedAt, source; version counts writes; the row
        // version read (NULL: no row) as the last input column.
        let content = codec.contentColumns
        let updatedAtType = shape.column(named: "updatedAt")?.postgresType ?? "timestamp"
        var insertCols = ["\"externalId\""] + content.map { q($0.name) } + ["\"updatedAt\"", "\"source\"", "\"version\""]
        let aliases = (0..<content.count).map { "c\($0)" }
        var selectExprs = ["u.k"] + zip(content, aliases).map { "u.\($1)::\($0.postgresType)" }
            + ["u.at::\(updatedAtType)", "u.src", "1"]
        var updates = content.map { "\(q($0.name)) = EXCLUDED.\(q($0.name))" }
            + ["\"updatedAt\" = EXCLUDED.\"updatedAt\"", "\"source\" = EXCLUDED.\"source\"", "\"version\" = coalesce(t.\"version\", 0) + 1"]
        if has("created_at") { insertCols.append("\"created_at\""); selectExprs.append("(now() AT TIME ZONE 'UTC')") }
        if has("nc_order") {
            insertCols.append("\"nc_order\"")
            selectExprs.append("(SELECT coalesce(max(\"nc_order\"), 0) FROM \(qualified)) + u.ord")
        }
        if has("updated_at") { updates.append("\"updated_at\" = now() AT TIME ZONE 'UTC'") }
        if has("__nc_deleted") { updates.append("\"__nc_deleted\" = false") }
        let params = (1...(content.count + 4)).map { "$\($0)::text[]" }.joined(separator: ", ")
        let input = "SELECT * FROM unnest(\(params)) WITH ORDINALITY AS u(k, \((aliases + ["at", "src", "rv"]).joined(separator: ", ")), ord)"
        if shape.hasUniqueKey {
            // A conflict with a row that is not the version read (or with a row that was not
            // there when read) updates nothing and returns nothing.
            upsertSQL = """
                WITH u AS (\(input))
                INSERT INTO \(qualified) AS t (\(insertCols.joined(separator: ", ")))
                SELECT \(selectExprs.joined(separator: ", ")) FROM u
                ON CONFLICT ("externalId") DO UPDATE SET \(updates.joined(separator: ", "))
                WHERE t.xmin::text = (SELECT u.rv FROM u WHERE u.k = EXCLUDED."externalId")
                RETURNING t."externalId"
                """
        } else {
            // No unique index to conflict on: update the rows still at the version read,
            // insert the keys that had no row and still have none.
            let named = selectExprs.enumerated().map { "\($0.element) AS v\($0.offset)" }
            let keepOnUpdate: Set<String> = ["\"externalId\"", "\"created_at\"", "\"nc_order\"", "\"version\""]
            var sets: [String] = []
            for (i, column) in insertCols.enumerated() where !keepOnUpdate.contains(column) { sets.append("\(column) = n.v\(i)") }
            sets.append("\"version\" = coalesce(t.\"version\", 0) + 1")
            if has("updated_at") { sets.append("\"updated_at\" = now() AT TIME ZONE 'UTC'") }
            if has("__nc_deleted") { sets.append("\"__nc_deleted\" = false") }
            let values = insertCols.indices.map { "n.v\($0)" }.joined(separator: ", ")
            upsertSQL = """
                WITH u AS (\(input)),
                     n AS (SELECT \(named.joined(separator: ", ")), u.k AS key, u.rv FROM u),
                     upd AS (UPDATE \(qualified) AS t SET \(sets.joined(separator: ", ")) FROM n
                             WHERE t."externalId" = n.key AND t.xmin::text = n.rv RETURNING t."externalId"),
                     ins AS (INSERT INTO \(qualified) AS t (\(insertCols.joined(separator: ", ")))
                             SELECT \(values) FROM n
                             WHERE n.rv IS NULL AND NOT EXISTS (SELECT 1 FROM \(qualified) x WHERE x."externalId" = n.key)
                             RETURNING t."externalId")
                SELECT "externalId" FROM upd UNION ALL SELECT "externalId" FROM ins
                """
        }
        if has("__nc_deleted") {
            let stamp = has("updated_at") ? ", \"updated_at\" = now() AT TIME ZONE 'UTC'" : ""
            deleteSQL = """
                UPDATE \(qualified) AS t SET "__nc_deleted" = true, "updatedAt" = u.at::\(updatedAtType), "source" = u.src\(stamp)
                FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(k, at, src, rv)
                WHERE t."externalId" = u.k AND t.xmin::text = u.rv
                RETURNING t."externalId"
                """
        } else {
            deleteSQL = """
                DELETE FROM \(qualified) AS t USING unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(k, at, src, rv)
                WHERE t."externalId" = u.k AND t.xmin::text = u.rv
                RETURNING t."externalId"
                """
        }
    }

    /// Live rows by key, with the version each was read at. No lock: a NocoDB edit may
    /// change a row afterwards, and the conditional writes notice.
    public func rows(for keys: [String], on connection: PostgresConnection) throws(PostgresError) -> [String: LiveRow] {
        guard !keys.isEmpty else { return [:] }
        let result = try connection.query(cached: selectSQL, [PostgresConnection.arrayLiteral(keys)])
        let versionIndex = shape.mapper.columns.firstIndex { $0.name == "version" }
        var out: [String: LiveRow] = [:]
        for row in result.rows {
            guard let key = row[0] else { continue }
            let values = Array(row[5...])
            out[key] = LiveRow(values: values, deleted: row[1] == "t",
                               version: versionIndex.flatMap { values[$0] }.flatMap { Int64($0) },
                               editedAt: row[2].flatMap { try? Timestamps.parseMilliseconds($0) },
                               rowVersion: row[3], editedBy: row[4])
        }
        return out
    }

    /// When rows deleted outright (no trash) were deleted, from changes still in the changelog:
    /// a conflict decided from the MongoDB side needs the delete's time.
    public func pendingDeleteTimes(for keys: [String], on connection: PostgresConnection) throws(PostgresError) -> [String: Int64] {
        guard !keys.isEmpty else { return [:] }
        let rows = try connection.query(cached: """
            SELECT key, (extract(epoch from max(changed_at)) * 1000)::bigint AS at FROM nocobridge.changelog
            WHERE schema_name = $1 AND table_name = $2 AND op = 'D' AND key = ANY($3::text[])
            GROUP BY key
            """, [shape.mapping.schema, shape.mapping.table, PostgresConnection.arrayLiteral(keys)])
        var out: [String: Int64] = [:]
        for row in rows.named { if let k = row["key"], let t = row["at"].flatMap({ Int64($0) }) { out[k] = t } }
        return out
    }

    /// Makes the planned NocoDB writes; returns the keys whose row was no longer the version
    /// read (or appeared where there was none), which were left alone.
    public func apply(_ writes: [SyncPlan.NocoDBWrite], source: Side, on connection: PostgresConnection) throws(PostgresError) -> Set<String> {
        guard !writes.isEmpty else { return [] }
        if marksLogicalDecoding { try connection.query(cached: BridgeOrigin.logicalMessage, []) }
        var upserts: [(key: String, fields: [String: String?], at: Int64, rowVersion: String?)] = []
        var deletes: [(key: String, at: Int64, rowVersion: String?)] = []
        for write in writes {
            switch write.action {
            case .upsert(let fields, let at): upserts.append((write.key, fields, at, write.expectedRowVersion))
            case .delete(let at): deletes.append((write.key, at, write.expectedRowVersion))
            }
        }
        var applied = Set<String>()
        if !upserts.isEmpty {
            var params: [String?] = [PostgresConnection.arrayLiteral(upserts.map(\.key))]
            for column in codec.contentColumns {
                params.append(PostgresConnection.arrayLiteral(upserts.map { $0.fields[column.name] ?? nil }))
            }
            params.append(PostgresConnection.arrayLiteral(upserts.map { Timestamps.postgresText(milliseconds: $0.at) }))
            params.append(PostgresConnection.arrayLiteral(upserts.map { _ in source.rawValue }))
            params.append(PostgresConnection.arrayLiteral(upserts.map(\.rowVersion)))
            for row in try connection.query(cached: upsertSQL, params).rows { if let key = row[0] { applied.insert(key) } }
        }
        if !deletes.isEmpty {
            let result = try connection.query(cached: deleteSQL, [
                PostgresConnection.arrayLiteral(deletes.map(\.key)),
                PostgresConnection.arrayLiteral(deletes.map { Timestamps.postgresText(milliseconds: $0.at) }),
                PostgresConnection.arrayLiteral(deletes.map { _ in source.rawValue }),
                PostgresConnection.arrayLiteral(deletes.map(\.rowVersion)),
            ])
            for row in result.rows { if let key = row[0] { applied.insert(key) } }
        }
        return Set(writes.map(\.key)).subtracting(applied)
    }
}
