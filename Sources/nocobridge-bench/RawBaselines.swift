import Foundation
import Mongo
import Postgres
import SyncCore

/// What PostgreSQL and MongoDB do on their own, through the same libpq and libmongoc.
struct RawBaselines {
    let settings: Benchmark.Settings

    func run() throws -> [String: Any] {
        var out: [String: Any] = [:]
        let admin = try PostgresConnection(url: settings.pgURL)
        try admin.query("DROP DATABASE IF EXISTS bench_raw WITH (FORCE)")
        try admin.query("CREATE DATABASE bench_raw")
        let url = BenchURL.database(settings.pgURL, "bench_raw")
        let pg = try PostgresConnection(url: url)
        try pg.query("CREATE TABLE raw_t (id serial PRIMARY KEY, payload text)")
        let n = settings.quick ? 200 : 1000

        var insert = Samples()
        for i in 0..<n {
            let t0 = nowMicros()
            try pg.query("INSERT INTO raw_t (payload) VALUES ($1)", ["row \(i)"])
            insert.add(nowMicros() - t0)
        }
        out["pg_insert_latency"] = insert.summary
        log("pg insert p50 \(insert.percentile(50)) us")

        let listener = try PostgresConnection(url: url)
        try listener.listen("raw")
        var notify = Samples()
        for _ in 0..<n {
            let t0 = nowMicros()
            try pg.query("NOTIFY raw")
            var got = false
            while !got { got = !(try listener.waitForNotifications(timeoutMilliseconds: 1000)).isEmpty }
            notify.add(nowMicros() - t0)
        }
        out["pg_notify_latency"] = notify.summary

        let rows = settings.quick ? 20_000 : 100_000
        let t0 = nowMicros()
        for _ in 0..<(rows / 1000) {
            try pg.query("INSERT INTO raw_t (payload) SELECT 'bulk ' || g FROM generate_series(1, 1000) g")
        }
        out["pg_bulk_rows_per_s"] = Double(rows) / ((nowMicros() - t0) / 1e6)

        let pool = try MongoClientPool(url: settings.mongoURL, database: "bench_raw")
        try pool.withClient { (c: MongoClient) throws(MongoError) in
            _ = try c.runCommand(["dropDatabase": .int32(1)])
            _ = try c.runCommand(["createIndexes": .string("raw_u"), "indexes": .array([.document(["key": .document(["k": .int32(1)]), "name": .string("k")])])])
        }
        var minsert = Samples()
        for i in 0..<n {
            let t = nowMicros()
            try pool.withClient { (c: MongoClient) throws(MongoError) in try c.insertOne(["i": .int32(Int32(i))], collection: "raw_i") }
            minsert.add(nowMicros() - t)
        }
        out["mongo_insert_latency"] = minsert.summary

        // Change stream delivery: insert → event on a watcher thread.
        let watched = StreamLatency(pool: pool, collection: "raw_cs", expected: n)
        watched.start()
        usleep(300_000)
        for i in 0..<n {
            try pool.withClient { (c: MongoClient) throws(MongoError) in
                try c.insertOne(["t0": .double(nowMicros()), "i": .int32(Int32(i))], collection: "raw_cs")
            }
            usleep(2000)
        }
        out["mongo_change_stream_latency"] = watched.wait().summary

        let docs = settings.quick ? 10_000 : 30_000
        let b0 = nowMicros()
        for batch in 0..<(docs / 1000) {
            let writes: [BulkWrite] = (0..<1000).map { .insertOne(["b": .int32(Int32(batch)), "i": .int32(Int32($0))]) }
            _ = try pool.withClient { (c: MongoClient) throws(MongoError) in try c.bulkWrite(writes, collection: "raw_bulk") }
        }
        out["mongo_bulk_docs_per_s"] = Double(docs) / ((nowMicros() - b0) / 1e6)

        let upserts = settings.quick ? 2000 : 5000
        let u0 = nowMicros()
        for batch in 0..<(upserts / 1000) {
            let writes: [BulkWrite] = (0..<1000).map {
                .updateOne(filter: ["k": .string("k\(batch)-\($0)")], update: ["$set": .document(["v": .int32(1)])], upsert: true)
            }
            _ = try pool.withClient { (c: MongoClient) throws(MongoError) in try c.bulkWrite(writes, collection: "raw_u") }
        }
        out["mongo_bulk_upserts_per_s"] = Double(upserts) / ((nowMicros() - u0) / 1e6)
        try pool.withClient { (c: MongoClient) throws(MongoError) in _ = try c.runCommand(["dropDatabase": .int32(1)]) }
        try admin.query("DROP DATABASE IF EXISTS bench_raw WITH (FORCE)")
        return out
    }
}

/// Watches a collection on its own thread and records now − `t0` (µs) per event.
final class StreamLatency: @unchecked Sendable {
    // @unchecked: `samples` is written by the watcher thread only and read after `wait()`.
    let pool: MongoClientPool
    let collection: String
    let expected: Int
    private var samples = Samples()
    private let done = DispatchSemaphore(value: 0)
    private let ready = DispatchSemaphore(value: 0)
    var field = "t0"

    init(pool: MongoClientPool, collection: String, expected: Int) {
        self.pool = pool
        self.collection = collection
        self.expected = expected
    }

    func start() {
        Thread { [self] in
            var options = ChangeStreamOptions()
            options.fullDocumentUpdateLookup = false
            options.maxAwaitMilliseconds = 100
            guard let stream = try? pool.watch(collection: collection, options: options) else { ready.signal(); done.signal(); return }
            ready.signal()
            var idle = 0
            while samples.values.count < expected && idle < 100 {
                guard let event = try? stream.next() else { idle += 1; continue }
                let now = nowMicros()
                idle = 0
                var doc: Document?
                if case .document(let d)? = event["fullDocument"] { doc = d }
                if case .document(let u)? = event["updateDescription"], case .document(let f)? = u["updatedFields"] { doc = f }
                if case .double(let t0)? = doc?[field] { samples.add(now - t0) }
                if case .string(let s)? = doc?[field], s.hasPrefix("t:"), let t0 = Double(s.dropFirst(2)) { samples.add(now - t0) }
            }
            done.signal()
        }.start()
        ready.wait()
    }

    func wait() -> Samples {
        done.wait()
        return samples
    }
}

enum BenchURL {
    static func database(_ base: String, _ name: String) -> String { PostgresConnection.url(base, database: name) }
}
