import Postgres
import SyncCore

/// `nocobridge.synced_tables` and the installed schema: what `install` attached, and how.
enum SyncedTablesStore {
    static func isInstalled(on connection: PostgresConnection) throws(PostgresError) -> Bool {
        try connection.query("SELECT to_regclass('nocobridge.changelog') IS NOT NULL AS installed").named.first?["installed"] == "t"
    }

    /// `triggers` or `logical`, or nil when the table is not attached.
    static func capture(schema: String, table: String, on connection: PostgresConnection) throws(PostgresError) -> String? {
        try connection.query("SELECT capture FROM nocobridge.synced_tables WHERE schema_name = $1 AND table_name = $2",
                             [schema, table]).named.first?["capture"]
    }

    /// Changelog backlog, dead letters (under either source name) and swallowed trigger
    /// errors of one table.
    static func counts(_ mapping: TableMapping, legacySource: String, on connection: PostgresConnection) throws(PostgresError)
        -> (backlog: Int, deadLetters: Int, captureErrors: Int) {
        let row = try connection.query("""
            SELECT (SELECT count(*) FROM nocobridge.changelog WHERE schema_name = $1 AND table_name = $2) AS backlog,
                   (SELECT count(*) FROM nocobridge.dead_letters WHERE source_name = $3 OR source_name = $4) AS dead_letters,
                   (SELECT count(*) FROM nocobridge.capture_errors WHERE schema_name = $1 AND table_name = $2) AS capture_errors
            """, [mapping.schema, mapping.table, mapping.qualifiedName, legacySource]).named.first
        func count(_ name: String) -> Int { Int(row?[name] ?? "0") ?? 0 }
        return (count("backlog"), count("dead_letters"), count("capture_errors"))
    }

    /// Changelog rows waiting, per `schema.table`.
    static func backlog(on connection: PostgresConnection) throws(PostgresError) -> [String: Int] {
        var out: [String: Int] = [:]
        for row in try connection.query("""
            SELECT schema_name || '.' || table_name AS name, count(*) AS n FROM nocobridge.changelog GROUP BY 1
            """).named {
            if let name = row["name"], let n = row["n"].flatMap({ Int($0) }) { out[name] = n }
        }
        return out
    }
}
