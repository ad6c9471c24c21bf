import Mongo
import Postgres
import SyncCore

/// `nocobridge.key_map`: which MongoDB `_id` holds which `externalId`, because a delete
/// event carries only `_id`.
public struct KeyMapStore: Sendable {
    public let collection: String

    public init(collection: String) {
        self.collection = collection
    }

    public func save(_ pairs: [(id: Value, key: String)], on connection: PostgresConnection) throws {
        guard !pairs.isEmpty else { return }
        try connection.query(cached: """
            INSERT INTO nocobridge.key_map (collection, mongo_id, external_id)
            SELECT $1, decode(i, 'hex'), k FROM unnest($2::text[], $3::text[]) AS u(i, k)
            ON CONFLICT (collection, mongo_id) DO UPDATE SET external_id = EXCLUDED.external_id, seen_at = clock_timestamp()
            """, [collection,
                  PostgresConnection.arrayLiteral(try pairs.map { Hex.encode(try BSONBytes.encode($0.id)) }),
                  PostgresConnection.arrayLiteral(pairs.map(\.key))])
    }

    /// The `_id` of each key's document, as last seen (a key whose document was deleted and
    /// made again has several).
    public func ids(forKeys keys: [String], on connection: PostgresConnection) throws -> [String: Value] {
        guard !keys.isEmpty else { return [:] }
        let rows = try connection.query(cached: """
            SELECT DISTINCT ON (external_id) external_id, encode(mongo_id, 'hex') AS mongo_id FROM nocobridge.key_map
            WHERE collection = $1 AND external_id = ANY($2::text[])
            ORDER BY external_id, seen_at DESC
            """, [collection, PostgresConnection.arrayLiteral(keys)])
        var out: [String: Value] = [:]
        for row in rows.named {
            guard let key = row["external_id"], let hex = row["mongo_id"],
                  let bytes = PostgresConnection.bytes(fromBytea: "\\x" + hex), let id = BSONBytes.decode(bytes) else { continue }
            out[key] = id
        }
        return out
    }

    public func keys(forMongoIDs ids: [Value], on connection: PostgresConnection) throws -> [Value: String] {
        guard !ids.isEmpty else { return [:] }
        let encoded = try ids.map { Hex.encode(try BSONBytes.encode($0)) }
        let rows = try connection.query(cached: """
            SELECT encode(mongo_id, 'hex') AS mongo_id, external_id FROM nocobridge.key_map
            WHERE collection = $1 AND mongo_id = ANY(SELECT decode(i, 'hex') FROM unnest($2::text[]) i)
            """, [collection, PostgresConnection.arrayLiteral(encoded)])
        var byHex: [String: String] = [:]
        for row in rows.named {
            if let hex = row["mongo_id"], let key = row["external_id"], byHex[hex] == nil { byHex[hex] = key }
        }
        var out: [Value: String] = [:]
        for (id, hex) in zip(ids, encoded) { if let key = byHex[hex] { out[id] = key } }
        return out
    }
}
