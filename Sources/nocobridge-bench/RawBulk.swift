import Foundation
import Mongo
import Postgres
import SyncCore

/// The raw bulk rates the bridge's bulk figures are divided by, measured in the same run
/// with the bridge stopped, on the floor copies of the bulk table (the bridge's indexes on
/// both sides), with the same record count and the same kind of edit:
/// - towards MongoDB: unordered bulk upserts by `externalId` ($set, 1,000 a batch) while a
///   bridge-like change stream reads every event (the bridge's stream is always open and
///   reads its own writes back);
/// - towards NocoDB: the rate at which a bridge-like stream delivers the events of the same
///   `updateMany` (live, and read back later as a catch-up does), and PostgreSQL's own
///   multi-row upsert rate; the slower of the two hops is the reference.
struct RawBulk {
    let harness: Harness
    var settings: Settings { harness.settings }
    private var table: String { BenchBase.floorBulkTable }

    func run() throws -> RawBulkRates {
        let records = settings.seedRecords
        let pg = try harness.base.connect("bench-raw")
        let pgInsert = try timed(records) {
            for (from, to) in batches(records) {
                try pg.query("""
                    INSERT INTO \(BenchBase.quoted(table)) ("externalId", "amount", "currency", "method", "updatedAt", "source", "version")
                    SELECT \(BulkKeys.sql), g * 0.01, 'EUR', 'raw-seed', now(), 'nocodb', 1 FROM generate_series(\(from), \(to)) g
                    """)
            }
        }
        let pgUpsert = try timed(records) {
            for (from, to) in batches(records) {
                try pg.query("""
                    INSERT INTO \(BenchBase.quoted(table)) ("externalId", "amount", "currency", "method", "updatedAt", "source", "version")
                    SELECT \(BulkKeys.sql), g * 0.01 + 1, 'EUR', 'raw-upsert', now(), 'mongo', 2 FROM generate_series(\(from), \(to)) g
                    ON CONFLICT ("externalId") DO UPDATE SET "amount" = EXCLUDED."amount", "method" = EXCLUDED."method",
                      "updatedAt" = EXCLUDED."updatedAt", "source" = EXCLUDED."source", "version" = EXCLUDED."version"
                    """)
            }
        }
        Progress.note("raw PostgreSQL: insert \(Int(pgInsert))/s, upsert \(Int(pgUpsert))/s")

        let stream = BridgeLikeStream(pool: harness.base.mongo, collection: table)
        try stream.start()
        let i0 = Clock.micros()
        let mongoInsert = try timed(records) {
            for (from, to) in batches(records) {
                try bulk((from...to).map { .insertOne(try document($0, method: "raw-seed")) })
            }
        }
        try catchUp(stream, label: "insert")
        let insertDelivery = Double(records) / Clock.seconds(since: i0)
        let upserts = settings.rawUpsertRecords
        let mongoUpsert = try timed(upserts) {
            for (from, to) in batches(upserts) {
                try bulk(try (from...to).map { try upsert($0, method: "raw-upsert") })
            }
        }
        try catchUp(stream, label: "upsert")
        Progress.note("raw MongoDB (bridge-like stream open): insert \(Int(mongoInsert))/s (read by the stream \(Int(insertDelivery))/s), upsert \(Int(mongoUpsert))/s")

        // The events of one updateMany, as the bridge's stream would read them while it runs.
        let edit = settings.bulkEdit
        stream.count(marker: "raw-live", expecting: edit)
        let t0 = Clock.micros()
        try updateMany(upTo: edit, method: "raw-live")
        let updateManySeconds = Clock.seconds(since: t0)
        let delivered = try stream.waitForCount(timeout: 1800)
        let delivery = Double(edit) / ((delivered - t0) / 1e6)
        stream.stop()

        let noStream = try timed(upserts) {
            for (from, to) in batches(upserts) {
                try bulk(try (from...to).map { try upsert($0, method: "raw-upsert-2") })
            }
        }

        // The same kind of events stored while nobody read them, read back from a token
        // taken before them: what a bridge restarted after a stop reads.
        let backlog = settings.catchUpRecords
        let token = try BridgeLikeStream.currentToken(pool: harness.base.mongo, collection: table)
        try updateMany(upTo: backlog, method: "raw-stored")
        let reader = BridgeLikeStream(pool: harness.base.mongo, collection: table, resumeAfter: token)
        reader.count(marker: "raw-stored", expecting: backlog)
        let r0 = Clock.micros()
        try reader.start()
        let read = try reader.waitForCount(timeout: 1800)
        reader.stop()
        let stored = Double(backlog) / ((read - r0) / 1e6)
        Progress.note("raw change stream: \(Int(delivery))/s live (updateMany \(String(format: "%.1f", updateManySeconds)) s), \(Int(stored))/s stored; upsert without stream \(Int(noStream))/s")

        return RawBulkRates(records: records, upsertsTimed: upserts, mongoInsertPerS: mongoInsert, streamInsertDeliveryPerS: insertDelivery, mongoUpsertPerS: mongoUpsert,
                            mongoUpsertNoStreamPerS: noStream, streamDeliveryPerS: delivery, updateManySeconds: updateManySeconds,
                            streamCatchUpPerS: stored, pgInsertRowsPerS: pgInsert, pgUpsertRowsPerS: pgUpsert)
    }

    /// Waits until the stream has read everything written so far (a sentinel document), so
    /// the next measurement does not start with the stream still busy with the last one.
    private func catchUp(_ stream: BridgeLikeStream, label: String) throws {
        let marker = "raw-sync-\(label)"
        stream.count(marker: marker, expecting: 1)
        try bulk([.insertOne([RowMapper.keyField: .string("zraw-\(label)"), "method": .string(marker)])])
        _ = try stream.waitForCount(timeout: 1800)
    }

    private func batches(_ count: Int) -> [(Int, Int)] {
        stride(from: 1, through: count, by: 1000).map { ($0, min($0 + 999, count)) }
    }

    private func timed(_ count: Int, _ body: () throws -> Void) throws -> Double {
        let t0 = Clock.micros()
        try body()
        return Double(count) / Clock.seconds(since: t0)
    }

    /// A record as the bridge writes the bulk table's rows into MongoDB.
    private func document(_ n: Int, method: String) throws -> Document {
        [RowMapper.keyField: .string(BulkKeys.key(n)), "updatedAt": .date(Int64(Clock.micros() / 1000)), "source": .string("nocodb"),
         "version": .int64(1), "amount": .decimal(try Decimal128Text(String(format: "%.2f", Double(n) / 100))),
         "currency": .string("EUR"), "method": .string(method)]
    }

    private func upsert(_ n: Int, method: String) throws -> BulkWrite {
        let set: Document = ["updatedAt": .date(Int64(Clock.micros() / 1000)), "source": .string("nocodb"), "version": .int64(2),
                             "amount": .decimal(try Decimal128Text(String(format: "%.2f", Double(n) / 100 + 1))), "method": .string(method)]
        return .updateOne(filter: [RowMapper.keyField: .string(BulkKeys.key(n))], update: ["$set": .document(set)], upsert: true)
    }

    private func bulk(_ writes: [BulkWrite]) throws {
        let result = try harness.base.mongo.withClient { (c: MongoClient) throws(MongoError) in try c.bulkWrite(writes, collection: table) }
        if let error = result.writeErrors.first { throw BenchError("raw bulk write refused: \(error.message)") }
    }

    private func updateMany(upTo last: Int, method: String) throws {
        try harness.base.mongo.withClient { (c: MongoClient) throws in
            try MongoBulkEdit.updateMany(c, collection: table, upTo: last, method: method)
        }
    }
}

/// The bulk edit an application makes in MongoDB: one `updateMany` over a key range.
enum MongoBulkEdit {
    static func updateMany(_ client: MongoClient, collection: String, upTo last: Int, method: String) throws {
        let filter: Document = [RowMapper.keyField: .document(["$gte": .string(BulkKeys.key(1)), "$lte": .string(BulkKeys.key(last))])]
        let reply = try client.runCommand([
            "update": .string(collection),
            "updates": .array([.document(["q": .document(filter), "u": .document(["$set": .document(["method": .string(method)])]),
                                          "multi": .bool(true)])]),
        ])
        let modified: Int
        switch reply["nModified"] {
        case .int32(let n)?: modified = Int(n)
        case .int64(let n)?: modified = Int(n)
        default: modified = -1
        }
        guard modified == last else { throw BenchError("updateMany of \(collection) modified \(modified) of \(last) documents") }
    }
}
