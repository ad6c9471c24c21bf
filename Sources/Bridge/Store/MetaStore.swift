import Postgres

/// `nocobridge.meta`: the restore-detection generation and the settings `install` records
/// for the triggers (`nocodb_sessions`, `duplicate_keys`).
enum MetaStore {
    static func value(_ key: String, on connection: PostgresConnection) throws(PostgresError) -> String? {
        try connection.query("SELECT value FROM nocobridge.meta WHERE key = $1", [key]).named.first?["value"]
    }

    static func set(_ key: String, to value: String, on connection: PostgresConnection) throws(PostgresError) {
        try connection.query("""
            INSERT INTO nocobridge.meta (key, value) VALUES ($1, $2)
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
            """, [key, value])
    }

    static func remove(_ key: String, on connection: PostgresConnection) throws(PostgresError) {
        try connection.query("DELETE FROM nocobridge.meta WHERE key = $1", [key])
    }

    static let generation = "generation"
    static let nocodbSessions = "nocodb_sessions"
    static let duplicateKeys = "duplicate_keys"
}
