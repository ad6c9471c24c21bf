import CMongoC
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

/// What an unordered bulk write did; failed writes are listed by index so the caller can
/// dead-letter exactly those and keep the rest.
public struct BulkResult: Sendable, Equatable {
    public var inserted = 0
    public var matched = 0
    public var modified = 0
    public var upserted = 0
    public var deleted = 0
    public var writeErrors: [(index: Int, code: Int32, message: String)] = []
    /// `_id`s of documents created by upserts, by write index.
    public var upsertedIDs: [(index: Int, id: Value)] = []

    public static func == (a: BulkResult, b: BulkResult) -> Bool {
        a.inserted == b.inserted && a.matched == b.matched && a.modified == b.modified
            && a.upserted == b.upserted && a.deleted == b.deleted && a.writeErrors.map(\.index) == b.writeErrors.map(\.index)
    }
}

/// A client borrowed from the pool for the duration of one `withClient` call.
public struct MongoClient {
    let handle: OpaquePointer
    let database: String

    init(handle: OpaquePointer, database: String) {
        self.handle = handle
        self.database = database
    }

    /// Largest document the server accepts (BSON's 16 MiB).
    public static let maxDocumentBytes = 16 * 1024 * 1024

    public func runCommand(_ command: Document, database: String? = nil) throws(MongoError) -> Document {
        let cmd = try BSONBox(document: command)
        let reply = BSONReplyStorage()
        var error = bson_error_t()
        let ok = mongoc_client_command_simple(handle, database ?? self.database, cmd.pointer, nil, reply.pointer, &error)
        reply.markInitialized()
        guard ok else { throw MongoError.from(error) }
        return reply.document()
    }

    private func withCollection<T>(_ name: String, _ body: (OpaquePointer) throws(MongoError) -> T) throws(MongoError) -> T {
        let collection = mongoc_client_get_collection(handle, database, name)!
        defer { mongoc_collection_destroy(collection) }
        return try body(collection)
    }

    /// Executes writes as one unordered bulk operation. A write that cannot even be encoded
    /// (over 16 MiB, invalid field name) is reported as a write error at its index and not sent.
    public func bulkWrite(_ writes: [BulkWrite], collection name: String) throws(MongoError) -> BulkResult {
        var result = BulkResult()
        guard !writes.isEmpty else { return result }
        return try withCollection(name) { (collection: OpaquePointer) throws(MongoError) -> BulkResult in
            let opts = try BSONBox(document: ["ordered": .bool(false)])
            guard let bulk = mongoc_collection_create_bulk_operation_with_opts(collection, opts.pointer) else {
                throw MongoError(kind: .server, message: "cannot create bulk operation")
            }
            defer { mongoc_bulk_operation_destroy(bulk) }
            let upsertOpts = try BSONBox(document: ["upsert": .bool(true)])
            var sentIndexes: [Int] = []
            for (index, write) in writes.enumerated() {
                var error = bson_error_t()
                var ok = true
                do {
                    switch write {
                    case .updateOne(let filter, let update, let upsert):
                        let f = try BSONBox(document: filter)
                        let u = try BSONBox(document: update)
                        try Self.checkSize(u)
                        ok = mongoc_bulk_operation_update_one_with_opts(bulk, f.pointer, u.pointer, upsert ? upsertOpts.pointer : nil, &error)
                    case .replaceOne(let filter, let replacement, let upsert):
                        let f = try BSONBox(document: filter)
                        let r = try BSONBox(document: replacement)
                        try Self.checkSize(r)
                        ok = mongoc_bulk_operation_replace_one_with_opts(bulk, f.pointer, r.pointer, upsert ? upsertOpts.pointer : nil, &error)
                    case .deleteOne(let filter):
                        let f = try BSONBox(document: filter)
                        ok = mongoc_bulk_operation_remove_one_with_opts(bulk, f.pointer, nil, &error)
                    case .insertOne(let doc):
                        let d = try BSONBox(document: doc)
                        try Self.checkSize(d)
                        ok = mongoc_bulk_operation_insert_with_opts(bulk, d.pointer, nil, &error)
                    }
                } catch let failure as MongoError {
                    result.writeErrors.append((index, 10334, failure.message))
                    continue
                } catch {
                    result.writeErrors.append((index, 10334, "\(error)"))
                    continue
                }
                if ok {
                    sentIndexes.append(index)
                } else {
                    result.writeErrors.append((index, Int32(error.code), MongoError.from(error).message))
                }
            }
            guard !sentIndexes.isEmpty else { return result }
            let reply = BSONReplyStorage()
            var error = bson_error_t()
            let served = mongoc_bulk_operation_execute(bulk, reply.pointer, &error)
            reply.markInitialized()
            let doc = reply.document()
            result.inserted = Self.int(doc["nInserted"])
            result.matched = Self.int(doc["nMatched"])
            result.modified = Self.int(doc["nModified"])
            result.upserted = Self.int(doc["nUpserted"])
            result.deleted = Self.int(doc["nRemoved"])
            if case .array(let upserted)? = doc["upserted"] {
                for case .document(let u) in upserted {
                    let local = Self.int(u["index"])
                    if let id = u["_id"] {
                        result.upsertedIDs.append((local < sentIndexes.count ? sentIndexes[local] : local, id))
                    }
                }
            }
            var hadWriteErrors = false
            if case .array(let errors)? = doc["writeErrors"] {
                for case .document(let e) in errors {
                    hadWriteErrors = true
                    let local = Self.int(e["index"])
                    let original = local < sentIndexes.count ? sentIndexes[local] : local
                    let message: String = if case .string(let m)? = e["errmsg"] { m } else { "write error" }
                    result.writeErrors.append((original, Int32(Self.int(e["code"])), message))
                }
            }
            if served == 0 && !hadWriteErrors {
                throw MongoError.from(error)
            }
            result.writeErrors.sort { $0.index < $1.index }
            return result
        }
    }

    private static func checkSize(_ box: BSONBox) throws(MongoError) {
        if box.byteCount > maxDocumentBytes {
            throw MongoError(kind: .invalidDocument, code: 10334,
                             message: "document is \(box.byteCount) bytes, over MongoDB's 16 MiB limit")
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

    public func find(_ filter: Document = Document(), options: Document = Document(), collection name: String) throws(MongoError) -> [Document] {
        try withCollection(name) { (collection: OpaquePointer) throws(MongoError) -> [Document] in
            let f = try BSONBox(document: filter)
            let o = try BSONBox(document: options)
            let cursor = mongoc_collection_find_with_opts(collection, f.pointer, o.pointer, nil)!
            defer { mongoc_cursor_destroy(cursor) }
            var out: [Document] = []
            var current: OpaquePointer?
            while mongoc_cursor_next(cursor, &current) {
                if let current { out.append(BSONReader.document(current)) }
            }
            var error = bson_error_t()
            if mongoc_cursor_error(cursor, &error) { throw MongoError.from(error) }
            return out
        }
    }

    public func count(_ filter: Document = Document(), collection name: String) throws(MongoError) -> Int {
        try withCollection(name) { (collection: OpaquePointer) throws(MongoError) -> Int in
            let f = try BSONBox(document: filter)
            var error = bson_error_t()
            let n = mongoc_collection_count_documents(collection, f.pointer, nil, nil, nil, &error)
            guard n >= 0 else { throw MongoError.from(error) }
            return Int(n)
        }
    }

    public func insertOne(_ document: Document, collection name: String) throws(MongoError) {
        let r = try bulkWrite([.insertOne(document)], collection: name)
        if let e = r.writeErrors.first { throw MongoError(kind: .server, code: e.code, message: e.message) }
    }

    public func updateOne(filter: Document, update: Document, upsert: Bool = false, collection name: String) throws(MongoError) {
        let r = try bulkWrite([.updateOne(filter: filter, update: update, upsert: upsert)], collection: name)
        if let e = r.writeErrors.first { throw MongoError(kind: .server, code: e.code, message: e.message) }
    }

    public func deleteOne(filter: Document, collection name: String) throws(MongoError) {
        let r = try bulkWrite([.deleteOne(filter: filter)], collection: name)
        if let e = r.writeErrors.first { throw MongoError(kind: .server, code: e.code, message: e.message) }
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
}
