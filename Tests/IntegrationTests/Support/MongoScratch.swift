import Foundation
import Mongo
import SyncCore

/// A database of one test's own on the shared SecantusDB (or on an `OwnSecantus`), with
/// pools named by fresh instance ids so failpoints can be scoped to one pool's `appName`.
struct MongoScratch {
    let url: String
    let database: String

    init(url: String? = nil) throws {
        if let url {
            self.url = url
        } else {
            guard let shared = ProcessInfo.processInfo.environment["MONGO_URL"] else {
                throw SetupError("MONGO_URL is not set: run the tests with Scripts/test.sh, which starts SecantusDB")
            }
            self.url = shared
        }
        database = "mft_" + randomSuffix(8)
    }

    /// `url` with extra options (`appName=x`, `readPreference=secondary`, …).
    func url(adding options: String) -> String {
        url + (url.contains("?") ? "&" : "/?") + options
    }

    func pool(instance: String = "t" + randomSuffix(6), options: String? = nil, socketTimeoutMS: Int32 = 10_000) throws -> MongoClientPool {
        try MongoClientPool(url: options.map { url(adding: $0) } ?? url, database: database, instance: instance, socketTimeoutMS: socketTimeoutMS)
    }

    /// A collection whose documents must have an int `n` of at most 10 (a `$jsonSchema`
    /// validator: writes breaking it fail with 121 DocumentValidationFailure).
    func createValidated(_ collection: String, on pool: MongoClientPool) throws {
        let schema: Document = [
            "bsonType": .string("object"),
            "properties": .document(["n": .document(["bsonType": .string("int"), "maximum": .int32(10)])]),
        ]
        _ = try pool.command(["create": .string(collection), "validator": .document(["$jsonSchema": .document(schema)])])
    }
}

/// `failCommand` failpoints. SecantusDB keeps one failpoint at a time (configuring one clears
/// the others), so the tests setting them run serialized, and every failpoint names the
/// `appName` of the test's own pool so concurrently running suites never meet it.
enum FailPoint {
    static func failCommand(on pool: MongoClientPool, times: Int32, appName: String, _ data: Document) throws {
        var d = data
        d["appName"] = .string(appName)
        _ = try pool.command(["configureFailPoint": .string("failCommand"), "mode": .document(["times": .int32(times)]),
                              "data": .document(d)], database: "admin")
    }

    static func off(on pool: MongoClientPool) {
        _ = try? pool.command(["configureFailPoint": .string("failCommand"), "mode": .string("off")], database: "admin")
    }
}

extension MongoClientPool {
    func command(_ command: Document, database: String? = nil) throws(MongoError) -> Document {
        try withClient { (c: MongoClient) throws(MongoError) -> Document in try c.runCommand(command, database: database) }
    }

    func bulk(_ writes: [BulkWrite], _ collection: String, writeConcern: WriteConcern? = nil) throws(MongoError) -> BulkResult {
        try withClient { (c: MongoClient) throws(MongoError) -> BulkResult in
            try c.bulkWrite(writes, collection: collection, writeConcern: writeConcern)
        }
    }

    func documents(_ collection: String, _ filter: Document = Document(), readConcern: ReadConcern? = nil) throws(MongoError) -> [Document] {
        try withClient { (c: MongoClient) throws(MongoError) -> [Document] in
            try c.find(filter, options: ["sort": .document(["_id": .int32(1)])], readConcern: readConcern, collection: collection)
        }
    }

    /// `{_id: n}` → the document's `n`, for collections of small test documents.
    func numbers(_ collection: String) throws(MongoError) -> [Int32: Int32] {
        var out: [Int32: Int32] = [:]
        for d in try documents(collection) {
            if case .int32(let id)? = d["_id"], case .int32(let n)? = d["n"] { out[id] = n }
        }
        return out
    }
}

func numbered(_ id: Int32, n: Int32) -> Document { ["_id": .int32(id), "n": .int32(n)] }

func setN(_ id: Int32, _ n: Int32) -> BulkWrite {
    .updateOne(filter: ["_id": .int32(id)], update: ["$set": .document(["n": .int32(n)])], upsert: false)
}

func deleteID(_ id: Int32) -> BulkWrite { .deleteOne(filter: ["_id": .int32(id)]) }
