import Postgres
import SyncCore

/// Reads a synced table's shape from the PostgreSQL catalog.
public struct TableShape: Sendable {
    public let mapping: TableMapping
    /// Every column in table order.
    public let allColumns: [Column]
    /// The columns that become document fields (NocoDB's system columns left out).
    public let mapper: RowMapper
    public let hasSoftDelete: Bool
    /// A unique index on `externalId` (trigger capture installs one; logical capture cannot,
    /// as no trigger would turn a pasted duplicate key into a fresh one).
    public var hasUniqueKey = true

    public func column(named name: String) -> Column? { allColumns.first { $0.name == name } }
}

public enum TableCatalog {
    public static let requiredColumns = ["externalId", "updatedAt", "source", "version"]

    public struct Problem: Error, Sendable, CustomStringConvertible {
        public let table: String
        public let message: String
        public var description: String { "table \(table): \(message)" }
    }

    public static func shape(of mapping: TableMapping, on connection: PostgresConnection,
                             columnKinds: [String: ColumnKind] = [:], fieldNames: [String: String] = [:]) throws -> TableShape {
        let qualified = PostgresConnection.quoteIdentifier(mapping.schema) + "." + PostgresConnection.quoteIdentifier(mapping.table)
        let rows = try connection.query("""
            SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)
            FROM pg_catalog.pg_attribute a
            WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """, [qualified])
        guard !rows.rows.isEmpty else {
            throw Problem(table: mapping.qualifiedName, message: "does not exist (check SYNC_PG_SCHEMA and SYNC_TABLES)")
        }
        let columns = rows.rows.map { row -> Column in
            let name = row[0] ?? ""
            let type = row[1] ?? "text"
            let kind = columnKinds["\(mapping.table).\(name)"] ?? ColumnKind(postgresType: type)
            return Column(name: name, kind: kind, postgresType: type, field: fieldNames["\(mapping.table).\(name)"])
        }
        let names = Set(columns.map(\.name))
        let missing = requiredColumns.filter { !names.contains($0) }
        guard missing.isEmpty else {
            throw Problem(table: mapping.qualifiedName, message: "missing column(s) \(missing.joined(separator: ", ")); NocoBridge needs the common fields externalId, updatedAt, source, version")
        }
        let fields = columns.filter { !RowMapper.nocoSystemColumns.contains($0.name) }
        let unique = try connection.query("""
            SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indnatts = 1 AND i.indpred IS NULL AND a.attname = 'externalId'
            """, [qualified])
        var shape = TableShape(mapping: mapping, allColumns: columns, mapper: RowMapper(columns: fields),
                               hasSoftDelete: names.contains("__nc_deleted"))
        shape.hasUniqueKey = !unique.rows.isEmpty
        return shape
    }
}
