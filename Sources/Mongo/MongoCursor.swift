import CMongoC
import SyncCore

@available(*, unavailable, message: "a cursor belongs to one thread")
extension MongoCursor: Sendable {}

/// A pull-based query cursor for scanning a whole collection with bounded memory (the
/// server sends batches; one document is copied out per `next()`). It owns its pooled client
/// until released, and belongs to one thread. It reads from the primary whatever the URL's
/// `readPreference` (see `MongoClient.find`).
public final class MongoCursor {
    private let pool: MongoClientPool
    private let client: OpaquePointer
    private let collection: OpaquePointer
    private let cursor: OpaquePointer

    public init(pool: MongoClientPool, collection name: String, filter: Document, options: Document,
                readConcern: ReadConcern? = nil) throws(MongoError) {
        let f = try BSONBox(document: filter)
        let o = try BSONBox(document: MongoClient.findOptions(options, readConcern: readConcern))
        let primary = PrimaryReadPrefs()
        self.pool = pool
        client = mongoc_client_pool_pop(pool.pool)
        collection = mongoc_client_get_collection(client, pool.databaseName, name)!
        cursor = mongoc_collection_find_with_opts(collection, f.pointer, o.pointer, primary.pointer)!
    }

    deinit {
        mongoc_cursor_destroy(cursor)
        mongoc_collection_destroy(collection)
        mongoc_client_pool_push(pool.pool, client)
    }

    public func next() throws(MongoError) -> Document? {
        var current: OpaquePointer?
        if mongoc_cursor_next(cursor, &current), let current {
            return BSONReader.document(current)
        }
        if let error = MongoClient.cursorError(cursor) { throw error }
        return nil
    }
}
