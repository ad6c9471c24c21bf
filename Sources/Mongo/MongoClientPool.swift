import CMongoC
import SyncCore

/// libmongoc's process-wide initialisation, done once on first use.
enum MongoRuntime {
    static let initialized: Bool = {
        // libmongoc's default handler prints its own unstructured lines to stdout/stderr
        // (including debug-level monitor chatter, and a shared-memory warning from
        // mongoc_init itself, hence first); every failure it logs also comes back from the
        // call as an error, which the bridge logs through swift-log.
        mongoc_log_set_handler(nil, nil)
        mongoc_init()
        return true
    }()
}

/// A pool of MongoDB clients. `mongoc_client_pool_t` is documented as thread-safe, which is
/// why this type may be shared (`@unchecked Sendable`); the clients it hands out are not, so
/// they live only inside `withClient` or inside one `ChangeStream` / `MongoCursor`.
public final class MongoClientPool: @unchecked Sendable {
    let pool: OpaquePointer
    private let uri: OpaquePointer
    public let databaseName: String
    /// `MongoIdentity.identity(instance:)`: the `comment` of every write command.
    public let identity: String
    /// What every connection announces: the URL's `appName`, if any, then `identity`.
    public let appName: String
    /// The socket timeout libmongoc applies to every read of a reply, in ms.
    public let socketTimeoutMS: Int32
    /// The write concern of writes that name none: majority, unless the URL sets `w` (the
    /// operator's choice stands). A write acknowledged by a majority survives a failover; one
    /// acknowledged by the old primary alone can be rolled back after the bridge recorded it
    /// as agreed. Its `wtimeout` is shorter than the socket timeout, so a majority that cannot
    /// be reached comes back as a write concern error, not as a dead socket.
    public let defaultWriteConcern: WriteConcern?

    /// Why libmongoc cannot parse `url`, or nil (see `PostgresConnection.urlProblem`).
    public static func urlProblem(_ url: String) -> String? {
        _ = MongoRuntime.initialized
        var error = bson_error_t()
        guard let uri = mongoc_uri_new_with_error(url, &error) else { return MongoError.from(error: error).message }
        mongoc_uri_destroy(uri)
        return nil
    }

    /// libmongoc's own default (`MONGOC_DEFAULT_SOCKETTIMEOUTMS`, 5 minutes), used when a
    /// URL sets `socketTimeoutMS=0`.
    public static let libmongocDefaultSocketTimeoutMS: Int32 = 300_000

    /// - Parameters:
    ///   - url: a `mongodb://` URL; TLS and auth options pass through to libmongoc.
    ///   - database: the database holding the synced collections.
    ///   - instance: names this process (`MongoIdentity`); nil for tools that write nothing
    ///     a successor would wait for.
    ///   - serverSelectionTimeoutMS: used when the URL does not set one, so an unreachable
    ///     server is reported within seconds rather than libmongoc's default 30.
    ///   - socketTimeoutMS: used when the URL does not set one. libmongoc's default is 5
    ///     minutes: a server that stops answering (a frozen VM, a partition that drops
    ///     packets) would hold a batch that long before anything noticed. A request that
    ///     legitimately runs longer (an index build on a large collection) needs a pool with
    ///     a longer timeout. Change streams keep their `maxAwaitTimeMS` below it
    ///     (`ChangeStreamOptions.maxAwaitMilliseconds(socketTimeoutMS:)`).
    public init(url: String, database: String, instance: String? = nil,
                serverSelectionTimeoutMS: Int32 = 5000, socketTimeoutMS: Int32 = 10_000) throws(MongoError) {
        _ = MongoRuntime.initialized
        var error = bson_error_t()
        guard let uri = mongoc_uri_new_with_error(url, &error) else {
            throw MongoError(kind: .invalidURL, message: MongoError.from(error: error).message)
        }
        if !mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS) {
            mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, serverSelectionTimeoutMS)
        }
        if !mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS) {
            mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, socketTimeoutMS)
        }
        let identity = MongoIdentity.identity(instance: instance)
        let urlAppName = mongoc_uri_get_appname(uri).map { String(cString: $0) }
        guard let appName = MongoIdentity.appName(urlAppName: urlAppName, identity: identity),
              mongoc_uri_set_appname(uri, appName) else {
            mongoc_uri_destroy(uri)
            throw MongoError(kind: .invalidURL, message: "instance name \(identity) does not fit MongoDB's 128-byte appName")
        }
        guard let pool = mongoc_client_pool_new_with_error(uri, &error) else {
            mongoc_uri_destroy(uri)
            throw MongoError.from(error: error)
        }
        mongoc_client_pool_set_error_api(pool, 2)
        self.pool = pool
        self.uri = uri
        self.databaseName = database
        self.identity = identity
        self.appName = appName
        self.socketTimeoutMS = mongoc_uri_get_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, Self.libmongocDefaultSocketTimeoutMS)
        // Below the socket timeout, so a majority that cannot be reached is reported by the
        // server as a write concern error rather than as a dropped socket.
        let effectiveSocketTimeout = self.socketTimeoutMS > 0 ? self.socketTimeoutMS : Self.libmongocDefaultSocketTimeoutMS
        defaultWriteConcern = mongoc_uri_has_option(uri, MONGOC_URI_W) ? nil : .majority(wtimeoutMS: effectiveSocketTimeout / 5 * 4)
    }

    deinit {
        mongoc_client_pool_destroy(pool)
        mongoc_uri_destroy(uri)
    }

    /// Runs `body` with a client popped from the pool and pushes it back afterwards.
    public func withClient<T, E: Error>(_ body: (MongoClient) throws(E) -> T) throws(E) -> T {
        let client = MongoClient(handle: mongoc_client_pool_pop(pool), database: databaseName, identity: identity,
                                 defaultWriteConcern: defaultWriteConcern)
        defer { mongoc_client_pool_push(pool, client.handle) }
        return try body(client)
    }

    /// Pings the server (a real round trip).
    public func ping() throws(MongoError) {
        try withClient { (client: MongoClient) throws(MongoError) in
            _ = try client.runCommand(["ping": .int32(1)], database: "admin")
        }
    }

    /// See `MongoClient.runningWrites(of:)`.
    public func runningWrites(of identity: String) throws(MongoError) -> Int {
        try withClient { (client: MongoClient) throws(MongoError) -> Int in try client.runningWrites(of: identity) }
    }

    /// See `MongoClient.serverInfo()`.
    public func serverInfo() throws(MongoError) -> ServerInfo {
        try withClient { (client: MongoClient) throws(MongoError) -> ServerInfo in try client.serverInfo() }
    }

    /// Opens a change stream; it keeps its own client until released.
    public func watch(collection: String?, options: ChangeStreamOptions) throws(MongoError) -> ChangeStream {
        try ChangeStream(pool: self, collection: collection, options: options)
    }
}
