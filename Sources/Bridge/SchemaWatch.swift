import Logging
import Postgres
import SyncCore

/// Notices a synced table's columns changing while the bridge runs (a field added, renamed or
/// removed in NocoDB) from a catalog fingerprint, read at most once per interval. The
/// pipeline then rebuilds its table shapes through a reconnect, without a restart: a new
/// column is synced from then on, a removed one is no longer written.
struct SchemaWatch {
    private let names: String
    private let interval: Duration
    private var fingerprint: String
    private var lastCheck = ContinuousClock.now

    init(tables: [TableMapping], interval: Duration, on connection: PostgresConnection) throws {
        names = PostgresConnection.arrayLiteral(tables.map {
            PostgresConnection.quoteIdentifier($0.schema) + "." + PostgresConnection.quoteIdentifier($0.table)
        })
        self.interval = interval
        fingerprint = ""
        fingerprint = try read(on: connection)
    }

    /// Throws `SchemaChanged` when the columns differ from those the shapes were built from.
    mutating func check(on connection: PostgresConnection) throws {
        guard ContinuousClock.now - lastCheck >= interval else { return }
        lastCheck = ContinuousClock.now
        if try read(on: connection) != fingerprint { throw SchemaChanged() }
    }

    private func read(on connection: PostgresConnection) throws -> String {
        let rows = try connection.query("""
            SELECT coalesce(string_agg(a.attrelid::text || ':' || a.attname || ':' || a.atttypid::text, ','
                                       ORDER BY a.attrelid, a.attnum), '')
            FROM pg_catalog.pg_attribute a
            WHERE a.attrelid = ANY($1::regclass[]) AND a.attnum > 0 AND NOT a.attisdropped
            """, [names])
        return rows.rows.first?.first.flatMap { $0 } ?? ""
    }
}

/// A synced table's columns changed; the pipeline reloads them.
public struct SchemaChanged: Error, CustomStringConvertible {
    public var description: String { "the columns of a synced table changed" }
}

/// Field names and kinds that come from outside the catalog (NocoDB's meta API), asked again
/// whenever the shapes are rebuilt so a field added or renamed while running gets its title.
public protocol FieldMetadataSource: Sendable {
    /// `table.column` → MongoDB field name, and → column kind, for the configured tables.
    func current() throws -> (fieldNames: [String: String], columnKinds: [String: ColumnKind])
}

extension BridgeConfiguration {
    /// The synced tables' shapes as of now, with the field metadata source's names and kinds
    /// (the configured ones when it fails: syncing goes on under the last known names).
    func shapes(on connection: PostgresConnection, logger: Logger) throws -> [TableShape] {
        let (names, kinds) = fieldNamesAndKinds(logger: logger)
        return try tables.map { try TableCatalog.shape(of: $0, on: connection, columnKinds: kinds, fieldNames: names) }
    }

    /// One table's shape as of now.
    func shape(of mapping: TableMapping, on connection: PostgresConnection, logger: Logger) throws -> TableShape {
        let (names, kinds) = fieldNamesAndKinds(logger: logger)
        return try TableCatalog.shape(of: mapping, on: connection, columnKinds: kinds, fieldNames: names)
    }

    private func fieldNamesAndKinds(logger: Logger) -> (names: [String: String], kinds: [String: ColumnKind]) {
        var names = fieldNames, kinds = columnKinds
        if let fieldMetadata {
            do {
                let fresh = try fieldMetadata.current()
                names.merge(fresh.fieldNames) { _, new in new }
                kinds.merge(fresh.columnKinds) { old, _ in old }
            } catch {
                logger.warning("cannot refresh field names from NocoDB; using the known ones", metadata: ["error": "\(error)"])
            }
        }
        return (names, kinds)
    }
}
