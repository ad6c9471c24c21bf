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
            ON CONFLICT (collection, mongo_id) DO UPDATE SET external_id = EXCLUDED.external_id
            """, [collection,
                  PostgresConnection.arrayLiteral(try pairs.map { Hex.encode(try BSONBytes.encode($0.id)) }),
                  PostgresConnection.arrayLiteral(pairs.map(\.key))])
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
