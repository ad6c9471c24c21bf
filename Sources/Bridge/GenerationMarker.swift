import Mongo
import Postgres
import SyncCore

/// The generation markers `RestoreDetection` compares: `nocobridge.meta` in PostgreSQL and the
/// `nocobridge_meta` collection in MongoDB.
public struct GenerationMarker: Sendable {
    public static let collection = "nocobridge_meta"

    public struct RestoreDetected: Error, CustomStringConvertible {
        public let side: Side
        public let nocodb: Int64?
        public let mongo: Int64?
        public var description: String {
            let what = side == .nocodb ? "NocoDB's PostgreSQL database" : "MongoDB"
            return "\(what) looks restored from a backup (bridge generation: PostgreSQL \(nocodb.map(String.init) ?? "none"), MongoDB \(mongo.map(String.init) ?? "none")); streaming from the stored positions could revive deleted records or miss changes: run `nocobridge resync --restored \(side.rawValue)`, then start the bridge again"
        }
    }

    public init() {}

    public func read(connection: PostgresConnection, mongo: MongoClientPool) throws -> (nocodb: Int64?, mongo: Int64?) {
        let n = try MetaStore.value(MetaStore.generation, on: connection).flatMap { Int64($0) }
        let docs = try mongo.withClient { (c: MongoClient) throws(MongoError) in
            try c.find(["_id": .string("generation")], collection: Self.collection)
        }
        var m: Int64?
        if let doc = docs.first {
            switch doc["value"] {
            case .int64(let v)?: m = v
            case .int32(let v)?: m = Int64(v)
            default: m = nil
            }
        }
        return (n, m)
    }

    /// Throws `RestoreDetected` when a side is behind; otherwise advances the markers.
    public func checkAndAdvance(connection: PostgresConnection, mongo: MongoClientPool) throws {
        let (n, m) = try read(connection: connection, mongo: mongo)
        if case .restored(let side, let nv, let mv) = RestoreDetection.compare(nocodb: n, mongo: m) {
            throw RestoreDetected(side: side, nocodb: nv, mongo: mv)
        }
        try advance(RestoreDetection.advance(nocodb: n, mongo: m), connection: connection, mongo: mongo)
    }

    /// Moves the markers on (after a resync, both sides hold the same records again).
    public func realign(connection: PostgresConnection, mongo: MongoClientPool) throws {
        let (n, m) = try read(connection: connection, mongo: mongo)
        try advance(RestoreDetection.advance(nocodb: n, mongo: m), connection: connection, mongo: mongo)
    }

    private func advance(_ step: RestoreDetection.Advance, connection: PostgresConnection, mongo: MongoClientPool) throws {
        let generation: Int64
        switch step {
        case .mongoCatchesUp(let g):
            generation = g
        case .both(let g):
            generation = g
            try MetaStore.set(MetaStore.generation, to: String(g), on: connection)
        }
        try mongo.withClient { (c: MongoClient) throws(MongoError) in
            try c.updateOne(filter: ["_id": .string("generation")], update: ["$set": .document(["value": .int64(generation)])],
                            upsert: true, collection: Self.collection)
        }
    }
}
