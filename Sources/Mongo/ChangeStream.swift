import CMongoC
import SyncCore

public struct ChangeStreamOptions: Sendable {
    /// Extra `$match`/`$project` stages.
    public var pipeline: [Document] = []
    /// `resumeAfter` token (raw BSON document bytes), from a previous stream. Not usable
    /// after an `invalidate` event (the server answers 260): use `startAfter` then.
    public var resumeToken: [UInt8]?
    /// `startAfter` token (raw BSON document bytes): like `resumeAfter`, and also accepted for
    /// an `invalidate` event's `_id`, which is how a stream continues after its database was
    /// dropped (research note E). Wins over `resumeToken` when both are set.
    public var startAfter: [UInt8]?
    public var fullDocumentUpdateLookup = true
    public var fullDocumentBeforeChange = false
    /// How long one `next()` waits on the server for a change; kept below the pool's socket
    /// timeout (see `maxAwaitMilliseconds(socketTimeoutMS:)`).
    public var maxAwaitMilliseconds: Int64 = 250
    public var batchSize: Int32 = 1000
    /// Sent with the `aggregate` and every `getMore`, to find the stream in `currentOp`.
    /// Not the pool's identity: `runningWrites(of:)` counts operations carrying that as writes.
    public var comment: String?

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

@available(*, unavailable, message: "a change stream belongs to one thread")
extension ChangeStream: Sendable {}

/// A MongoDB change stream. It owns one pooled client for its lifetime (clients are not
/// thread-safe) and must be used from one thread; `next()` blocks, so it runs on a
/// dedicated thread, never on Swift's cooperative pool. It reads from the primary whatever
/// the URL's `readPreference`.
public final class ChangeStream {
    private let pool: MongoClientPool
    private let client: OpaquePointer
    private let stream: OpaquePointer
    /// The `_id` of the `invalidate` event once one was returned (the database or collection
    /// was dropped or renamed). The server has closed the stream: calling `next()` again
    /// returns nothing and then fails with 260 (libmongoc resumes with `resumeAfter`). Open a
    /// new stream with `startAfter` set to this token to continue.
    public private(set) var invalidateToken: [UInt8]?
    /// Whether the event `next()` returned last was the last of its batch, so the next call
    /// asks the server again (an update event's `fullDocument` is looked up then). libmongoc
    /// replaces the resume token by the batch's post-batch token after its last event; a
    /// server whose post-batch token equals that event's leaves this false, which only ever
    /// makes the caller think a batch older than it is.
    public private(set) var endedBatch = true

    init(pool: MongoClientPool, collection: String?, options: ChangeStreamOptions) throws(MongoError) {
        // Every document is built before a client is taken, so a failure here leaks nothing.
        var opts = Document()
        if options.fullDocumentUpdateLookup { opts["fullDocument"] = .string("updateLookup") }
        if options.fullDocumentBeforeChange { opts["fullDocumentBeforeChange"] = .string("whenAvailable") }
        opts["maxAwaitTimeMS"] = .int64(options.maxAwaitMilliseconds(socketTimeoutMS: pool.socketTimeoutMS))
        opts["batchSize"] = .int32(options.batchSize)
        if let comment = options.comment { opts["comment"] = .string(comment) }
        let pipeline = try BSONBox(document: ["pipeline": .array(options.pipeline.map(Value.document))])
        let optsBox = try BSONBox(document: opts)
        if let token = options.startAfter ?? options.resumeToken {
            guard let tokenBox = BSONBox(bytes: token) else {
                throw MongoError(kind: .invalidDocument, code: 260, message: "stored resume token is not valid BSON")
            }
            bson_append_document(optsBox.pointer, options.startAfter != nil ? "startAfter" : "resumeAfter", -1, tokenBox.pointer)
        }
        let primary = PrimaryReadPrefs()

        self.pool = pool
        client = mongoc_client_pool_pop(pool.pool)
        let made: OpaquePointer?
        if let collection {
            let coll = mongoc_client_get_collection(client, pool.databaseName, collection)!
            mongoc_collection_set_read_prefs(coll, primary.pointer)
            made = mongoc_collection_watch(coll, pipeline.pointer, optsBox.pointer)
            mongoc_collection_destroy(coll)
        } else {
            let db = mongoc_client_get_database(client, pool.databaseName)!
            mongoc_database_set_read_prefs(db, primary.pointer)
            made = mongoc_database_watch(db, pipeline.pointer, optsBox.pointer)
            mongoc_database_destroy(db)
        }
        guard let made else {
            mongoc_client_pool_push(pool.pool, client)
            throw MongoError(kind: .server, message: "cannot open change stream")
        }
        if let error = Self.error(of: made) {
            mongoc_change_stream_destroy(made)
            mongoc_client_pool_push(pool.pool, client)
            throw error
        }
        // Assigned last: a throwing init with every property set would run deinit and free twice.
        stream = made
    }

    deinit {
        mongoc_change_stream_destroy(stream)
        mongoc_client_pool_push(pool.pool, client)
    }

    private static func error(of stream: OpaquePointer) -> MongoError? {
        var error = bson_error_t()
        var reply: OpaquePointer?
        guard mongoc_change_stream_error_document(stream, &error, &reply) else { return nil }
        return MongoError.from(error: error, reply: reply.map { BSONReader.document($0) })
    }

    /// The next event, or nil when none arrived within `maxAwaitMilliseconds`. Errors carry
    /// the server's labels (`MongoError.isHistoryLost` tells a position that is gone).
    public func next() throws(MongoError) -> Document? {
        var current: OpaquePointer?
        if mongoc_change_stream_next(stream, &current), let current {
            let event = BSONReader.document(current)
            let eventToken = BSONReader.embeddedDocumentBytes(current, key: "_id")
            if event["operationType"] == .string("invalidate") {
                invalidateToken = eventToken
            }
            endedBatch = eventToken == nil || resumeToken != eventToken
            return event
        }
        endedBatch = true
        if let error = Self.error(of: stream) { throw error }
        return nil
    }

    /// The token to resume after the last returned event (or the post-batch token when idle).
    public var resumeToken: [UInt8]? {
        guard let token = mongoc_change_stream_get_resume_token(stream) else { return nil }
        return BSONReader.bytes(token)
    }
}
