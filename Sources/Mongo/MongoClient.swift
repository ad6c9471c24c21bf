import CMongoC
import Foundation
import SyncCore

@available(*, unavailable, message: "a pooled client belongs to one thread")
extension MongoClient: Sendable {}

/// One write of a bulk operation.
public enum BulkWrite: Sendable, Equatable {
    case updateOne(filter: Document, update: Document, upsert: Bool)
    case replaceOne(filter: Document, replacement: Document, upsert: Bool)
    case deleteOne(filter: Document)
    case insertOne(Document)
}

/// A write the server (or the encoder, for a document that cannot be sent) refused, by its
/// index in the caller's array.
public struct BulkWriteError: Sendable, Equatable {
    public var index: Int
    public var code: Int32
    public var message: String

    public init(index: Int, code: Int32, message: String) {
        self.index = index
        self.code = code
        self.message = message
    }
}

/// The `_id` of a document an upsert created, by the upsert's index in the caller's array.
public struct UpsertedID: Sendable, Equatable {
    public var index: Int
    public var id: Value

    public init(index: Int, id: Value) {
        self.index = index
        self.id = id
    }
}

/// What an unordered bulk write did. Failed writes are listed by index so the caller can
/// dead-letter exactly those and keep the rest; anything worse is thrown (see `bulkWrite`).
public struct BulkResult: Sendable, Equatable {
    /// Writes of one kind in the caller's array, and how many of them were refused.
    public struct KindTotals: Sendable, Equatable {
        public var operations: Int
        public var failed: Int

        public init(operations: Int = 0, failed: Int = 0) {
            self.operations = operations
            self.failed = failed
        }
    }

    public var inserted = 0
    public var matched = 0
    public var modified = 0
    public var upserted = 0
    public var deleted = 0
    /// `insertOne`s.
    public var inserts = KindTotals()
    /// `updateOne`s and `replaceOne`s (one server `update` command kind).
    public var updates = KindTotals()
    /// `deleteOne`s.
    public var deletes = KindTotals()
    /// Sorted by index.
    public var writeErrors: [BulkWriteError] = []
    /// `_id`s of documents created by upserts, by write index.
    public var upsertedIDs: [UpsertedID] = []

    public init() {}

    /// Updates and replaces that succeeded yet matched no document and upserted none: for a
    /// conditional write (`{_id, version}` filter, say) the condition no longer held.
    public var updatesMatchingNothing: Int { updates.operations - updates.failed - matched - upserted }

    /// Deletes that succeeded yet found nothing to delete.
    public var deletesMatchingNothing: Int { deletes.operations - deletes.failed - deleted }
}

/// `writeConcern` of a write command.
public struct WriteConcern: Sendable, Equatable {
    public enum Acknowledgement: Sendable, Equatable {
        case majority
        case nodes(Int32)
    }

    public var w: Acknowledgement
    /// How long the server waits for the acknowledgements before answering with a
    /// writeConcernError (the write itself stays applied).
    public var wtimeoutMS: Int32?
    public var journal: Bool?

    public init(w: Acknowledgement, wtimeoutMS: Int32? = nil, journal: Bool? = nil) {
        self.w = w
        self.wtimeoutMS = wtimeoutMS
        self.journal = journal
    }

    public static func majority(wtimeoutMS: Int32? = nil) -> WriteConcern {
        WriteConcern(w: .majority, wtimeoutMS: wtimeoutMS)
    }

    var document: Document {
        var d = Document()
        switch w {
        case .majority: d["w"] = .string("majority")
        case .nodes(let n): d["w"] = .int32(n)
        }
        if let wtimeoutMS { d["wtimeout"] = .int32(wtimeoutMS) }
        if let journal { d["j"] = .bool(journal) }
        return d
    }
}

/// `readConcern.level` of a read.
public enum ReadConcern: String, Sendable {
    case local
    /// Only data acknowledged by a majority, i.e. that cannot be rolled back.
    case majority
}

/// A client borrowed from the pool for the duration of one `withClient` call.
public struct MongoClient {
    let handle: OpaquePointer
    let database: String
    /// Sent as `comment` on every write command (see `MongoClientPool.identity`).
    let identity: String

    /// Used by writes that name no write concern (`MongoClientPool.defaultWriteConcern`).
    let defaultWriteConcern: WriteConcern?

    init(handle: OpaquePointer, database: String, identity: String, defaultWriteConcern: WriteConcern? = nil) {
        self.handle = handle
        self.database = database
        self.identity = identity
        self.defaultWriteConcern = defaultWriteConcern
    }

    /// Largest document the server accepts (BSON's 16 MiB).
    public static let maxDocumentBytes = 16 * 1024 * 1024
    /// Operations in one libmongoc bulk: below the server's `maxWriteBatchSize` (100,000 since
    /// MongoDB 3.6) so libmongoc never splits a bulk into several commands (see `bulkWrite`).
    static let maxOperationsPerBulk = 50_000
    /// Encoded bytes in one libmongoc bulk, far below `maxMessageSizeBytes` (48,000,000), for
    /// the same reason. A single write larger than this goes alone (at most two 16 MiB
    /// documents plus overhead, still below the message limit).
    static let maxBytesPerBulk = 16_000_000
    /// Per-statement overhead of an update/delete statement (`q`, `u`, `upsert`, `limit`
    /// keys, the array index) counted against `maxBytesPerBulk`.
    static let statementOverheadBytes = 64

    public func runCommand(_ command: Document, database: String? = nil) throws(MongoError) -> Document {
        let cmd = try BSONBox(document: command)
        let reply = BSONReplyStorage()
        var error = bson_error_t()
        let ok = mongoc_client_command_simple(handle, database ?? self.database, cmd.pointer, nil, reply.pointer, &error)
        reply.markInitialized()
        guard ok else { throw MongoError.from(error: error, reply: reply.document()) }
        return reply.document()
    }

    private func withCollection<T>(_ name: String, _ body: (OpaquePointer) throws(MongoError) -> T) throws(MongoError) -> T {
        let collection = mongoc_client_get_collection(handle, database, name)!
        defer { mongoc_collection_destroy(collection) }
        return try body(collection)
    }

    // MARK: - Bulk writes

    /// Executes `writes` as unordered bulk writes, each carrying `comment` = this pool's
    /// identity so running writes can be traced to their process (`runningWrites(of:)`).
    ///
    /// libmongoc (1.23 and, per its source, up to 2.0) cannot report an unordered bulk that
    /// mixes command kinds faithfully: the first write error replaces a failed command's
    /// error, and a later successful command erases it, so a bulk whose deletes failed
    /// outright looked like "one validation error" or even like no error at all
    /// (research note A). So the writes are split into one libmongoc bulk per kind (inserts;
    /// updates and replaces; deletes), each small enough to be sent as a single command;
    /// a single command either fails as a whole or reports write errors, never both.
    ///
    /// - Returns: the summed counts; writes the server refused (duplicate key, validation…)
    ///   or that cannot be encoded (over 16 MiB, invalid field names) are in `writeErrors` at
    ///   their index in `writes`, and the others were applied.
    /// - Throws: when a command failed (network, timeout, server error, no server), when
    ///   libmongoc reported failure without an error, or on a writeConcernError (the write was
    ///   applied but not acknowledged as asked). A throw means the batch may be partly
    ///   applied: retry it **as a whole**, which is only safe because every write must be
    ///   idempotent (upserts and deletes by key, inserts with a known `_id` whose duplicate-key
    ///   error the caller reads as "already there").
    ///
    /// No order among the writes is promised (as for any unordered bulk): inserts run first,
    /// then updates and replaces, then deletes, so one call should not hold two writes for
    /// the same document.
    public func bulkWrite(_ writes: [BulkWrite], collection name: String, writeConcern: WriteConcern? = nil) throws(MongoError) -> BulkResult {
        var result = BulkResult()
        guard !writes.isEmpty else { return result }
        var byKind: [[PreparedWrite]] = [[], [], []]
        for (index, write) in writes.enumerated() {
            let kind = PreparedWrite.Kind(write)
            result[kind].operations += 1
            do {
                byKind[kind.rawValue].append(try PreparedWrite(index: index, write: write))
            } catch {
                result.writeErrors.append(BulkWriteError(index: index, code: error.code == 0 ? 10334 : error.code, message: error.message))
                result[kind].failed += 1
            }
        }
        var options: Document = ["ordered": .bool(false), "comment": .string(identity)]
        if let concern = writeConcern ?? defaultWriteConcern { options["writeConcern"] = .document(concern.document) }
        let opts = try BSONBox(document: options)
        try withCollection(name) { (collection: OpaquePointer) throws(MongoError) in
            for prepared in byKind {
                for chunk in Self.chunks(prepared) {
                    try execute(chunk, on: collection, opts: opts, into: &result)
                }
            }
        }
        result.writeErrors.sort { $0.index < $1.index }
        result.upsertedIDs.sort { $0.index < $1.index }
        return result
    }

    /// Splits writes of one kind so each libmongoc bulk stays one server command.
    static func chunks(_ writes: [PreparedWrite]) -> [ArraySlice<PreparedWrite>] {
        var out: [ArraySlice<PreparedWrite>] = []
        var start = 0, bytes = 0
        for (i, write) in writes.enumerated() {
            let count = i - start
            if count > 0 && (count >= maxOperationsPerBulk || bytes + write.bytes > maxBytesPerBulk) {
                out.append(writes[start..<i])
                start = i
                bytes = 0
            }
            bytes += write.bytes
        }
        if start < writes.count { out.append(writes[start...]) }
        return out
    }

    /// One libmongoc bulk of one kind, read as described at `bulkWrite`.
    private func execute(_ chunk: ArraySlice<PreparedWrite>, on collection: OpaquePointer, opts: BSONBox,
                         into result: inout BulkResult) throws(MongoError) {
        guard let kind = chunk.first?.kind else { return }
        guard let bulk = mongoc_collection_create_bulk_operation_with_opts(collection, opts.pointer) else {
            throw MongoError(kind: .server, message: "cannot create bulk operation")
        }
        defer { mongoc_bulk_operation_destroy(bulk) }
        let upsertOpts = try BSONBox(document: ["upsert": .bool(true)])
        // Original index of each write, by its position in this bulk (the reply's `index`).
        var sent: [Int] = []
        for write in chunk {
            var error = bson_error_t()
            let ok: Bool
            switch write.operation {
            case .insert(let document):
                ok = mongoc_bulk_operation_insert_with_opts(bulk, document.pointer, nil, &error)
            case .update(let filter, let update, let upsert):
                ok = mongoc_bulk_operation_update_one_with_opts(bulk, filter.pointer, update.pointer, upsert ? upsertOpts.pointer : nil, &error)
            case .replace(let filter, let replacement, let upsert):
                ok = mongoc_bulk_operation_replace_one_with_opts(bulk, filter.pointer, replacement.pointer, upsert ? upsertOpts.pointer : nil, &error)
            case .delete(let filter):
                ok = mongoc_bulk_operation_remove_one_with_opts(bulk, filter.pointer, nil, &error)
            }
            if ok {
                sent.append(write.index)
            } else {
                result.writeErrors.append(BulkWriteError(index: write.index, code: Int32(bitPattern: error.code), message: MongoError.from(error: error).message))
                result[kind].failed += 1
            }
        }
        guard !sent.isEmpty else { return }
        let reply = BSONReplyStorage()
        var error = bson_error_t()
        let served = mongoc_bulk_operation_execute(bulk, reply.pointer, &error)
        reply.markInitialized()
        let doc = reply.document()
        let labels = MongoError.labels(in: doc)

        if case .array(let concernErrors)? = doc["writeConcernErrors"], case .document(let first)? = concernErrors.first {
            let message: String = if case .string(let m)? = first["errmsg"] { m } else { "write concern not satisfied" }
            throw MongoError(kind: .server, domain: MongoErrorDomain.writeConcern, code: Int32(Self.int(first["code"])),
                             errorLabels: labels, message: "write concern error (the writes were applied): \(message)")
        }
        var writeErrors: [BulkWriteError] = []
        if case .array(let errors)? = doc["writeErrors"] {
            for case .document(let e) in errors {
                let local = Self.int(e["index"])
                guard sent.indices.contains(local) else {
                    throw MongoError(kind: .server, domain: error.domain, code: Int32(bitPattern: error.code), errorLabels: labels,
                                     message: "write error for index \(local) of a \(sent.count)-write bulk")
                }
                let message: String = if case .string(let m)? = e["errmsg"] { m } else { "write error" }
                writeErrors.append(BulkWriteError(index: sent[local], code: Int32(Self.int(e["code"])), message: message))
            }
        }
        let inserted = Self.int(doc["nInserted"])
        if served == 0 && writeErrors.isEmpty {
            if error.code == 0 {
                throw MongoError(kind: .server, domain: error.domain, code: 0, errorLabels: labels,
                                 message: "a \(kind) command failed and libmongoc lost its error; the writes may be partly applied")
            }
            throw MongoError.from(error: error, reply: doc)
        }
        // Every insert is either inserted or refused; fewer means a part of the command was
        // lost the way `bulkWrite` describes (libmongoc split the bulk after all).
        if kind == .insert && inserted + writeErrors.count < sent.count {
            throw MongoError(kind: .server, domain: error.domain, code: Int32(bitPattern: error.code), errorLabels: labels,
                             message: "\(sent.count - inserted - writeErrors.count) of \(sent.count) inserts neither applied nor refused")
        }
        result.inserted += inserted
        result.matched += Self.int(doc["nMatched"])
        result.modified += Self.int(doc["nModified"])
        result.upserted += Self.int(doc["nUpserted"])
        result.deleted += Self.int(doc["nRemoved"])
        result.writeErrors += writeErrors
        result[kind].failed += writeErrors.count
        if case .array(let upserted)? = doc["upserted"] {
            for case .document(let u) in upserted {
                let local = Self.int(u["index"])
                if sent.indices.contains(local), let id = u["_id"] {
                    result.upsertedIDs.append(UpsertedID(index: sent[local], id: id))
                }
            }
        }
    }

    static func int(_ value: Value?) -> Int {
        switch value {
        case .int32(let i)?: Int(i)
        case .int64(let i)?: Int(i)
        case .double(let d)?: Int(d)
        default: 0
        }
    }

    // MARK: - Reads

    /// Reads matching documents from the **primary**, whatever `readPreference` the URL sets:
    /// decisions are made on what a secondary may not have yet. `readConcern: .majority` reads
    /// only what cannot be rolled back.
    public func find(_ filter: Document = Document(), options: Document = Document(), readConcern: ReadConcern? = nil,
                     collection name: String) throws(MongoError) -> [Document] {
        let f = try BSONBox(document: filter)
        let o = try BSONBox(document: Self.findOptions(options, readConcern: readConcern))
        return try withCollection(name) { (collection: OpaquePointer) throws(MongoError) -> [Document] in
            let primary = PrimaryReadPrefs()
            let cursor = mongoc_collection_find_with_opts(collection, f.pointer, o.pointer, primary.pointer)!
            defer { mongoc_cursor_destroy(cursor) }
            var out: [Document] = []
            var current: OpaquePointer?
            while mongoc_cursor_next(cursor, &current) {
                if let current { out.append(BSONReader.document(current)) }
            }
            if let error = Self.cursorError(cursor) { throw error }
            return out
        }
    }

    static func findOptions(_ options: Document, readConcern: ReadConcern?) -> Document {
        var o = options
        if let readConcern, o["readConcern"] == nil { o["readConcern"] = .document(["level": .string(readConcern.rawValue)]) }
        return o
    }

    static func cursorError(_ cursor: OpaquePointer) -> MongoError? {
        var error = bson_error_t()
        var reply: OpaquePointer?
        guard mongoc_cursor_error_document(cursor, &error, &reply) else { return nil }
        return MongoError.from(error: error, reply: reply.map { BSONReader.document($0) })
    }

    public func count(_ filter: Document = Document(), collection name: String) throws(MongoError) -> Int {
        try withCollection(name) { (collection: OpaquePointer) throws(MongoError) -> Int in
            let f = try BSONBox(document: filter)
            let reply = BSONReplyStorage()
            var error = bson_error_t()
            let primary = PrimaryReadPrefs()
            let n = mongoc_collection_count_documents(collection, f.pointer, nil, primary.pointer, reply.pointer, &error)
            reply.markInitialized()
            guard n >= 0 else { throw MongoError.from(error: error, reply: reply.document()) }
            return Int(n)
        }
    }

    public func insertOne(_ document: Document, collection name: String) throws(MongoError) {
        let r = try bulkWrite([.insertOne(document)], collection: name)
        if let e = r.writeErrors.first { throw MongoError(kind: .server, domain: MongoErrorDomain.server, code: e.code, message: e.message) }
    }

    public func updateOne(filter: Document, update: Document, upsert: Bool = false, collection name: String) throws(MongoError) {
        let r = try bulkWrite([.updateOne(filter: filter, update: update, upsert: upsert)], collection: name)
        if let e = r.writeErrors.first { throw MongoError(kind: .server, domain: MongoErrorDomain.server, code: e.code, message: e.message) }
    }

    public func deleteOne(filter: Document, collection name: String) throws(MongoError) {
        let r = try bulkWrite([.deleteOne(filter: filter)], collection: name)
        if let e = r.writeErrors.first { throw MongoError(kind: .server, domain: MongoErrorDomain.server, code: e.code, message: e.message) }
    }

    /// Drops an index by name; an index or collection that is already gone is not an error.
    public func dropIndex(_ name: String, collection: String) throws(MongoError) {
        do {
            _ = try runCommand(["dropIndexes": .string(collection), "index": .string(name)])
        } catch where error.code == 27 || error.code == 26 {
            // IndexNotFound / NamespaceNotFound.
        }
    }

    public func dropCollection(_ name: String) throws(MongoError) {
        do {
            _ = try runCommand(["drop": .string(name)])
        } catch where error.code == 26 {
            // NamespaceNotFound: already gone.
        }
    }

    // MARK: - Operations and server facts

    /// How many write operations of the process named `identity` (a pool's `identity`) the
    /// server is running now. A writer that died may still have writes running on the server
    /// (a killed client does not stop them); its successor waits for 0 before deciding on
    /// what those writes touched.
    ///
    /// Uses `currentOp`; without the `inprog` privilege (code 13) it falls back to
    /// `$currentOp` with `allUsers: false`, which lists the operations of the same user,
    /// i.e. of every bridge process sharing it. See `RunningOperations` for what counts.
    public func runningWrites(of identity: String) throws(MongoError) -> Int {
        let operations: [Document]
        do {
            let reply = try runCommand(["currentOp": .int32(1)], database: "admin")
            guard case .array(let items)? = reply["inprog"] else { return 0 }
            operations = items.compactMap { if case .document(let d) = $0 { d } else { nil } }
        } catch where error.code == 13 && (error.domain == MongoErrorDomain.server || error.domain == MongoErrorDomain.query) {
            operations = try aggregate(database: "admin", pipeline: [["$currentOp": .document(["allUsers": .bool(false)])]])
        }
        return RunningOperations.writes(in: operations, identity: identity)
    }

    /// A database-level `aggregate: 1` (e.g. `$currentOp` on admin), read from the primary.
    func aggregate(database name: String, pipeline: [Document]) throws(MongoError) -> [Document] {
        let p = try BSONBox(document: ["pipeline": .array(pipeline.map(Value.document))])
        let db = mongoc_client_get_database(handle, name)!
        defer { mongoc_database_destroy(db) }
        let primary = PrimaryReadPrefs()
        let cursor = mongoc_database_aggregate(db, p.pointer, nil, primary.pointer)!
        defer { mongoc_cursor_destroy(cursor) }
        var out: [Document] = []
        var current: OpaquePointer?
        while mongoc_cursor_next(cursor, &current) {
            if let current { out.append(BSONReader.document(current)) }
        }
        if let error = Self.cursorError(cursor) { throw error }
        return out
    }

    /// Version, topology role, replica set and clock of the server (see `ServerInfo`).
    public func serverInfo() throws(MongoError) -> ServerInfo {
        let build = try runCommand(["buildInfo": .int32(1)], database: "admin")
        let sentAt = ServerInfo.wallClockMilliseconds()
        let hello = try runCommand(["hello": .int32(1)], database: "admin")
        let receivedAt = ServerInfo.wallClockMilliseconds()
        return ServerInfo(buildInfo: build, hello: hello, sentAt: sentAt, receivedAt: receivedAt)
    }
}

extension BulkResult {
    subscript(kind: PreparedWrite.Kind) -> KindTotals {
        get {
            switch kind {
            case .insert: inserts
            case .update: updates
            case .delete: deletes
            }
        }
        set {
            switch kind {
            case .insert: inserts = newValue
            case .update: updates = newValue
            case .delete: deletes = newValue
            }
        }
    }
}

/// A write encoded for libmongoc, remembering its index in the caller's array.
struct PreparedWrite {
    /// The server command a write belongs to; the raw value orders execution.
    enum Kind: Int, CustomStringConvertible {
        case insert = 0, update, delete

        init(_ write: BulkWrite) {
            switch write {
            case .insertOne: self = .insert
            case .updateOne, .replaceOne: self = .update
            case .deleteOne: self = .delete
            }
        }

        var description: String {
            switch self {
            case .insert: "insert"
            case .update: "update"
            case .delete: "delete"
            }
        }
    }

    enum Operation {
        case insert(BSONBox)
        case update(filter: BSONBox, update: BSONBox, upsert: Bool)
        case replace(filter: BSONBox, replacement: BSONBox, upsert: Bool)
        case delete(filter: BSONBox)
    }

    let index: Int
    let kind: Kind
    let operation: Operation
    /// Encoded size counted against `MongoClient.maxBytesPerBulk`.
    let bytes: Int

    init(index: Int, write: BulkWrite) throws(MongoError) {
        self.index = index
        kind = Kind(write)
        switch write {
        case .insertOne(let document):
            let d = try Self.checked(try BSONBox(document: document))
            operation = .insert(d)
            bytes = d.byteCount + MongoClient.statementOverheadBytes
        case .updateOne(let filter, let update, let upsert):
            let f = try BSONBox(document: filter)
            let u = try Self.checked(try BSONBox(document: update))
            operation = .update(filter: f, update: u, upsert: upsert)
            bytes = f.byteCount + u.byteCount + MongoClient.statementOverheadBytes
        case .replaceOne(let filter, let replacement, let upsert):
            let f = try BSONBox(document: filter)
            let r = try Self.checked(try BSONBox(document: replacement))
            operation = .replace(filter: f, replacement: r, upsert: upsert)
            bytes = f.byteCount + r.byteCount + MongoClient.statementOverheadBytes
        case .deleteOne(let filter):
            let f = try BSONBox(document: filter)
            operation = .delete(filter: f)
            bytes = f.byteCount + MongoClient.statementOverheadBytes
        }
    }

    private static func checked(_ box: BSONBox) throws(MongoError) -> BSONBox {
        if box.byteCount > MongoClient.maxDocumentBytes {
            throw MongoError(kind: .invalidDocument, code: 10334,
                             message: "document is \(box.byteCount) bytes, over MongoDB's 16 MiB limit")
        }
        return box
    }
}

/// `mongoc_read_prefs_t` for the primary, for the duration of one call: reads that feed
/// decisions ignore the URL's `readPreference`.
final class PrimaryReadPrefs {
    let pointer: OpaquePointer

    init() { pointer = mongoc_read_prefs_new(MONGOC_READ_PRIMARY)! }

    deinit { mongoc_read_prefs_destroy(pointer) }
}
