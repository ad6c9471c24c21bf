import CMongoC
import SyncCore

public struct ChangeStreamOptions: Sendable {
    /// Extra `$match`/`$project` stages.
    public var pipeline: [Document] = []
    /// `resumeAfter` token (raw BSON document bytes), from a previous stream.
    public var resumeToken: [UInt8]?
    public var fullDocumentUpdateLookup = true
    public var fullDocumentBeforeChange = false
    /// How long one `next()` waits on the server for a change; kept below the pool's socket
    /// timeout (see `maxAwaitMilliseconds(socketTimeoutMS:)`).
    public var maxAwaitMilliseconds: Int64 = 250
    public var batchSize: Int32 = 1000

    public init() {}

    /// The `maxAwaitTimeMS` actually sent: at most half the socket timeout. An idle stream's
    /// getMore is answered only after `maxAwaitTimeMS`; if that reaches the socket timeout,
    /// libmongoc times out first, treats the timeout as resumable, resumes and waits again,
    /// for ever inside one `next()` call (research note B, probe `cs_idle`). The other half
    /// leaves room for the round trip and a busy server.
    public func maxAwaitMilliseconds(socketTimeoutMS: Int32) -> Int64 {
        min(max(1, maxAwaitMilliseconds), max(1, Int64(socketTimeoutMS) / 2))
    }
}

/// A MongoDB change stream. It owns one pooled client for its lifetime (clients are not
/// thread-safe) and must be used from one thread; `next()` blocks, so it runs on a
/// dedicated thread, never on Swift's cooperative pool.
public final class ChangeStream {
    private let pool: MongoClientPool
    private let client: OpaquePointer
    private let stream: OpaquePointer

    init(pool: MongoClientPool, collection: String?, options: ChangeStreamOptions) throws(MongoError) {
        self.pool = pool
        client = mongoc_client_pool_pop(pool.pool)
        var opts = Document()
        if options.fullDocumentUpdateLookup { opts["fullDocument"] = .string("updateLookup") }
        if options.fullDocumentBeforeChange { opts["fullDocumentBeforeChange"] = .string("whenAvailable") }
        opts["maxAwaitTimeMS"] = .int64(options.maxAwaitMilliseconds(socketTimeoutMS: pool.socketTimeoutMS))
        opts["batchSize"] = .int32(options.batchSize)
        let pipeline = try BSONBox(document: ["pipeline": .array(options.pipeline.map(Value.document))])
        let optsBox = try BSONBox(document: opts)
        if let token = options.resumeToken {
            guard let tokenBox = BSONBox(bytes: token) else {
                mongoc_client_pool_push(pool.pool, client)
                throw MongoError(kind: .invalidDocument, code: 260, message: "stored resume token is not valid BSON")
            }
            bson_append_document(optsBox.pointer, "resumeAfter", -1, tokenBox.pointer)
        }
        let made: OpaquePointer?
        if let collection {
            let coll = mongoc_client_get_collection(client, pool.databaseName, collection)!
            made = mongoc_collection_watch(coll, pipeline.pointer, optsBox.pointer)
            mongoc_collection_destroy(coll)
        } else {
            let db = mongoc_client_get_database(client, pool.databaseName)!
            made = mongoc_database_watch(db, pipeline.pointer, optsBox.pointer)
            mongoc_database_destroy(db)
        }
        guard let made else {
            mongoc_client_pool_push(pool.pool, client)
            throw MongoError(kind: .server, message: "cannot open change stream")
        }
        var error = bson_error_t()
        if mongoc_change_stream_error_document(made, &error, nil) {
            mongoc_change_stream_destroy(made)
            mongoc_client_pool_push(pool.pool, client)
            throw MongoError.from(error: error)
        }
        // Assigned last: a throwing init with every property set would run deinit and free twice.
        stream = made
    }

    deinit {
        mongoc_change_stream_destroy(stream)
        mongoc_client_pool_push(pool.pool, client)
    }

    /// The next event, or nil when none arrived within `maxAwaitMilliseconds`.
    public func next() throws(MongoError) -> Document? {
        var current: OpaquePointer?
        if mongoc_change_stream_next(stream, &current), let current {
            return BSONReader.document(current)
        }
        var error = bson_error_t()
        if mongoc_change_stream_error_document(stream, &error, nil) {
            throw MongoError.from(error: error)
        }
        return nil
    }

    /// The token to resume after the last returned event (or the post-batch token when idle).
    public var resumeToken: [UInt8]? {
        guard let token = mongoc_change_stream_get_resume_token(stream) else { return nil }
        return BSONReader.bytes(token)
    }
}
