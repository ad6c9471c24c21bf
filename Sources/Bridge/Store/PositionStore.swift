import Postgres
import SyncCore

/// `nocobridge.positions`: change stream resume tokens, stored in the same transaction as
/// the writes they cover.
public enum PositionStore {
    public static func load(_ stream: String, on connection: PostgresConnection) throws -> [UInt8]? {
        let rows = try connection.query(cached: "SELECT encode(position, 'hex') AS position FROM nocobridge.positions WHERE stream = $1", [stream])
        guard let hex = rows.named.first?["position"] else { return nil }
        return PostgresConnection.bytes(fromBytea: "\\x" + hex)
    }

    public static func save(_ stream: String, position: [UInt8], on connection: PostgresConnection) throws(PostgresError) {
        try connection.query(cached: """
            INSERT INTO nocobridge.positions (stream, position, updated_at) VALUES ($1, decode($2, 'hex'), now())
            ON CONFLICT (stream) DO UPDATE SET position = EXCLUDED.position, updated_at = now()
            """, [stream, Hex.encode(position)])
    }

    public static func delete(_ stream: String, on connection: PostgresConnection) throws(PostgresError) {
        try connection.query(cached: "DELETE FROM nocobridge.positions WHERE stream = $1", [stream])
    }
}
