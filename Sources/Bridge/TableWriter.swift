import Postgres
import SyncCore

/// Reads live rows by key and writes records into a NocoDB table the way NocoDB's own API
/// would: `created_at` = now (naive UTC) and `nc_order` = max + 1 on insert, `updated_at` on
/// update, `id` never touched, deletes as NocoDB's soft delete when the table has one. All
/// statements are set-based (one per batch) and run as the bridge, so the triggers neither
/// stamp nor capture them.
public struct TableWriter: Sendable {
    public let shape: TableShape
    public let codec: RecordCodec
    private let qualified: String
    private let selectSQL: String
    private let upsertSQL: String
    private let deleteSQL: String

    public struct LiveRow: Sendable {
        public let values: [String?]
        public let deleted: Bool
        public let version: Int64?
        /// NocoDB's own `updated_at` (ms), which NocoDB sets on every edit through its API.
        public var editedAt: Int64? = nil
        /// NocoDB's `updated_by` (the user id NocoDB stamps on edits through it), for history.
        public var editedBy: String? = nil
    }

    public init(shape: TableShape) {
        self.shape = shape
        codec = RecordCodec(mapper: shape.mapper)
        let q = PostgresConnection.quoteIdentifier
        qualified = q(shape.mapping.schema) + "." + q(shape.mapping.table)
        let names = Set(shape.allColumns.map(\.name))
        let has = { (n: String) in names.contains(n) }
        let mapperCols = shape.mapper.columns.map { q($0.name) }.joined(separator: ", ")
        let deletedExpr = has("__nc_deleted") ? "coalesce(\"__nc_deleted\", false)" : "false"
        let editedExpr = has("updated_at") ? "\"updated_at\"::text" : "NULL::text"
        let editorExpr = has("updated_by") ? "\"updated_by\"::text" : "NULL::text"
        selectSQL = "SELECT \"externalId\", \(deletedExpr), \(editedExpr), \(editorExpr), \(mapperCols) FROM \(qualified) WHERE \"externalId\" = ANY($1::text[]) FOR UPDATE"

        // Upsert: key, content columns, updatedAt, source; version counts writes.
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
        let params = (1...(content.count + 3)).map { "$\($0)::text[]" }.joined(separator: ", ")
        let input = "unnest(\(params)) WITH ORDINALITY AS u(k, \((aliases + ["at", "src"]).joined(separator: ", ")), ord)"
        if shape.hasUniqueKey {
            upsertSQL = """
                INSERT INTO \(qualified) AS t (\(insertCols.joined(separator: ", ")))
                SELECT \(selectExprs.joined(separator: ", "))
                FROM \(input)
                ON CONFLICT ("externalId") DO UPDATE SET \(updates.joined(separator: ", "))
                """
        } else {
            // No unique index to conflict on: update the rows that have the key, insert the rest.
            let named = selectExprs.enumerated().map { "\($0.element) AS v\($0.offset)" }
            let keepOnUpdate: Set<String> = ["\"externalId\"", "\"created_at\"", "\"nc_order\"", "\"version\""]
            var sets: [String] = []
            for (i, column) in insertCols.enumerated() where !keepOnUpdate.contains(column) { sets.append("\(column) = n.v\(i)") }
            sets.append("\"version\" = coalesce(t.\"version\", 0) + 1")
            if has("updated_at") { sets.append("\"updated_at\" = now() AT TIME ZONE 'UTC'") }
            if has("__nc_deleted") { sets.append("\"__nc_deleted\" = false") }
            let values = insertCols.indices.map { "n.v\($0)" }.joined(separator: ", ")
            upsertSQL = """
                WITH n AS (SELECT \(named.joined(separator: ", ")), u.k AS key FROM \(input)),
                     upd AS (UPDATE \(qualified) AS t SET \(sets.joined(separator: ", ")) FROM n
                             WHERE t."externalId" = n.key RETURNING t."externalId")
                INSERT INTO \(qualified) AS t (\(insertCols.joined(separator: ", ")))
                SELECT \(values) FROM n WHERE n.key NOT IN (SELECT "externalId" FROM upd)
                """
        }
        if has("__nc_deleted") {
            let stamp = has("updated_at") ? ", \"updated_at\" = now() AT TIME ZONE 'UTC'" : ""
            deleteSQL = """
                UPDATE \(qualified) AS t SET "__nc_deleted" = true, "updatedAt" = u.at::\(updatedAtType), "source" = u.src\(stamp)
                FROM unnest($1::text[], $2::text[], $3::text[]) AS u(k, at, src)
                WHERE t."externalId" = u.k AND NOT coalesce(t."__nc_deleted", false)
                """
        } else {
            deleteSQL = "DELETE FROM \(qualified) WHERE \"externalId\" = ANY($1::text[]) AND $2::text[] IS NOT NULL AND $3::text[] IS NOT NULL"
        }
    }

    /// Live rows by key, locked until the transaction ends so a concurrent NocoDB edit waits
    /// and is then captured on top of what the bridge wrote (never silently overwritten).
    public func rows(for keys: [String], on connection: PostgresConnection) throws(PostgresError) -> [String: LiveRow] {
        guard !keys.isEmpty else { return [:] }
        let result = try connection.query(cached: selectSQL, [PostgresConnection.arrayLiteral(keys)])
        let versionIndex = shape.mapper.columns.firstIndex { $0.name == "version" }
        var out: [String: LiveRow] = [:]
        for row in result.rows {
            guard let key = row[0] else { continue }
            let values = Array(row[4...])
            out[key] = LiveRow(values: values, deleted: row[1] == "t",
                               version: versionIndex.flatMap { values[$0] }.flatMap { Int64($0) },
                               editedAt: row[2].flatMap { try? Timestamps.parseMilliseconds($0) }, editedBy: row[3])
        }
        return out
    }

    /// When rows deleted outright (no trash) were deleted, from changes still in the changelog:
    /// a conflict decided from the MongoDB side needs the delete's time.
    public func pendingDeleteTimes(for keys: [String], on connection: PostgresConnection) throws(PostgresError) -> [String: Int64] {
        guard !keys.isEmpty else { return [:] }
        let rows = try connection.query("""
            SELECT key, (extract(epoch from max(changed_at)) * 1000)::bigint FROM nocobridge.changelog
            WHERE schema_name = $1 AND table_name = $2 AND op = 'D' AND key = ANY($3::text[])
            GROUP BY key
            """, [shape.mapping.schema, shape.mapping.table, PostgresConnection.arrayLiteral(keys)])
        var out: [String: Int64] = [:]
        for row in rows.rows { if let k = row[0], let t = row[1].flatMap({ Int64($0) }) { out[k] = t } }
        return out
    }

    /// The record state of a live row (absent when missing or in NocoDB's trash).
    public func state(of row: LiveRow?, fallbackAt: Int64) throws(MappingError) -> RecordState {
        guard let row else { return .absent(at: fallbackAt == 0 ? nil : fallbackAt) }
        if row.deleted {
            let at = shape.mapper.columns.firstIndex { $0.name == "updatedAt" }.flatMap { row.values[$0] }
                .flatMap { RecordCodec.milliseconds(fromPostgres: $0) }
            return .absent(at: at ?? fallbackAt)
        }
        return try codec.state(row: row.values, fallbackAt: fallbackAt)
    }

    public func upsert(_ records: [(key: String, fields: [String: String?], at: Int64)], source: Side,
                       on connection: PostgresConnection) throws(PostgresError) {
        guard !records.isEmpty else { return }
        var params: [String?] = [PostgresConnection.arrayLiteral(records.map(\.key))]
        for column in codec.contentColumns {
            params.append(PostgresConnection.arrayLiteral(records.map { $0.fields[column.name] ?? nil }))
        }
        params.append(PostgresConnection.arrayLiteral(records.map { Timestamps.postgresText(milliseconds: $0.at) }))
        params.append(PostgresConnection.arrayLiteral(records.map { _ in source.rawValue }))
        try connection.query(cached: upsertSQL, params)
    }

    public func delete(_ records: [(key: String, at: Int64)], source: Side, on connection: PostgresConnection) throws(PostgresError) {
        guard !records.isEmpty else { return }
        try connection.query(cached: deleteSQL, [
            PostgresConnection.arrayLiteral(records.map(\.key)),
            PostgresConnection.arrayLiteral(records.map { Timestamps.postgresText(milliseconds: $0.at) }),
            PostgresConnection.arrayLiteral(records.map { _ in source.rawValue }),
        ])
    }
}
