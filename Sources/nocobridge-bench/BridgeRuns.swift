import Bridge
import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

/// The bridge as a user runs it (a child `nocobridge run`, release build) on a NocoDB-shaped
/// base, driven by a load generator that stamps each change with its send time; the far side
/// reads the stamp and subtracts (same machine clock).
struct BridgeRuns {
    let settings: Benchmark.Settings
    let raw: [String: Any]
    static let schema = "pnocobridgedemo"

    func run() throws -> [String: Any] {
        var out: [String: Any] = ["rate_per_s": settings.rate]
        let admin = try PostgresConnection(url: settings.pgURL)
        try admin.query("DROP DATABASE IF EXISTS bench_bridge WITH (FORCE)")
        try admin.query("CREATE DATABASE bench_bridge")
        let url = BenchURL.database(settings.pgURL, "bench_bridge")
        let pg = try PostgresConnection(url: url)
        try pg.execute(script: try String(contentsOfFile: "Scripts/demo-schema.sql", encoding: .utf8))
        let mongo = try MongoClientPool(url: settings.mongoURL, database: "bench_bridge")
        try mongo.withClient { (c: MongoClient) throws(MongoError) in _ = try c.runCommand(["dropDatabase": .int32(1)]) }
        let tables = ["waiter_ops", "chef_orders", "cashier_txns"]
        var config = BridgeConfiguration(postgresURL: url, mongoURL: settings.mongoURL, mongoDatabase: "bench_bridge",
                                         tables: tables.map { TableMapping(schema: Self.schema, table: $0, collection: $0) })
        config.batchSize = 1000
        var quiet = Logger(label: "bench")
        quiet.logLevel = .error
        try Installer(configuration: config, logger: quiet).install()
        // Observer for the NocoDB side: NOTIFY the stamp of rows the bridge writes.
        try pg.execute(script: """
            CREATE FUNCTION bench_seen() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('bench_seen', NEW."notes"); RETURN NULL; END $$;
            CREATE TRIGGER bench_seen AFTER INSERT OR UPDATE ON "\(Self.schema)"."waiter_ops"
            FOR EACH ROW WHEN (NEW."notes" LIKE 't:%') EXECUTE FUNCTION bench_seen();
            """)
        var env = ProcessInfo.processInfo.environment
        env["PG_URL"] = url
        env["MONGO_DB"] = "bench_bridge"
        env["SYNC_PG_SCHEMA"] = Self.schema
        env["SYNC_TABLES"] = tables.joined(separator: ",")
        env["LOG_LEVEL"] = "error"
        var bridge = try Child(binary: settings.bridgeBinary, environment: env)
        usleep(1_500_000)

        // 1. Latency NocoDB → MongoDB.
        let watcher = StreamLatency(pool: mongo, collection: "waiter_ops", expected: settings.latencyCount + settings.warmup)
        watcher.field = "notes"
        watcher.start()
        try paced(count: settings.latencyCount + settings.warmup) { i in
            try pg.query("INSERT INTO \"\(Self.schema)\".\"waiter_ops\" (table_no, notes) VALUES ($1, $2)", [String(i), "t:\(nowMicros())"])
        }
        let toMongo = Samples.dropFirst(watcher.wait(), settings.warmup)
        out["to_mongo_latency"] = toMongo.summary
        log("to-mongo p50 \(toMongo.percentile(50)) us")

        // 2. Latency MongoDB → NocoDB.
        let listener = try PostgresConnection(url: url)
        try listener.listen("bench_seen")
        let total = settings.latencyCount + settings.warmup
        let collected = NotifyLatency(connection: listener, expected: total)
        let thread = Thread { collected.run() }
        thread.start()
        try paced(count: total) { i in
            try mongo.withClient { (c: MongoClient) throws(MongoError) in
                try c.insertOne(["externalId": .string("lat-\(i)"), "table_no": .int64(Int64(i)), "notes": .string("t:\(nowMicros())")],
                                collection: "waiter_ops")
            }
        }
        let toNoco = Samples.dropFirst(collected.wait(), settings.warmup)
        out["to_nocodb_latency"] = toNoco.summary
        log("to-nocodb p50 \(toNoco.percentile(50)) us")
        out["rss_after_latency_mib"] = currentRSS(pid: bridge.pid) ?? .nan

        // Overhead: bridge latency minus the raw path (source write + its notification +
        // destination write + the observer's notification), all p50 from this run.
        func p50(_ key: String) -> Double { (raw[key] as? [String: Double])?["p50_us"] ?? .nan }
        out["to_mongo_overhead_p50_us"] = toMongo.percentile(50) - (p50("pg_notify_latency") + p50("mongo_insert_latency") + p50("mongo_change_stream_latency"))
        out["to_nocodb_overhead_p50_us"] = toNoco.percentile(50) - (p50("mongo_change_stream_latency") + p50("pg_insert_latency") + p50("pg_notify_latency"))

        // 3. Throughput, each direction: a continuous load of new records.
        let rows = settings.throughputRows
        let c0 = try countMongo(mongo, "cashier_txns")
        let t0 = nowMicros()
        for _ in 0..<(rows / 1000) {
            try pg.query("INSERT INTO \"\(Self.schema)\".\"cashier_txns\" (amount, currency, method) SELECT g * 0.01, 'EUR', 'card' FROM generate_series(1, 1000) g")
        }
        // The bridge deletes changelog rows only after MongoDB committed them, so an empty
        // backlog means "visible in MongoDB"; polling MongoDB's count would load the server.
        try waitUntil { try self.backlog(pg) == 0 }
        guard try countMongo(mongo, "cashier_txns") >= c0 + rows else { throw BenchError("throughput run lost rows") }
        let toMongoRate = Double(rows) / ((nowMicros() - t0) / 1e6)
        out["to_mongo_throughput_per_s"] = toMongoRate
        out["to_mongo_throughput_ratio"] = toMongoRate / ((raw["mongo_bulk_docs_per_s"] as? Double) ?? .nan)

        let p0 = try countPG(pg, "chef_orders")
        let m0 = nowMicros()
        for batch in 0..<(rows / 1000) {
            let writes: [BulkWrite] = (0..<1000).map {
                .insertOne(["externalId": .string("tp-\(batch)-\($0)"), "status": .string("new"), "items": .array([.int32(Int32($0))])])
            }
            _ = try mongo.withClient { (c: MongoClient) throws(MongoError) in try c.bulkWrite(writes, collection: "chef_orders") }
        }
        try waitUntil { try countPG(pg, "chef_orders") >= p0 + rows }  // PostgreSQL count: cheap
        let toNocoRate = Double(rows) / ((nowMicros() - m0) / 1e6)
        out["to_nocodb_throughput_per_s"] = toNocoRate
        out["to_nocodb_throughput_ratio"] = toNocoRate / ((raw["pg_bulk_rows_per_s"] as? Double) ?? .nan)
        out["to_nocodb_throughput_ratio_vs_source_bulk"] = toNocoRate / ((raw["mongo_bulk_docs_per_s"] as? Double) ?? .nan)

        // 4. Catch-up: bridge stopped, backlog made, bridge started.
        bridge.terminate()
        let backlog = settings.catchUpRows
        let before = try countMongo(mongo, "cashier_txns")
        for _ in 0..<(backlog / 5000) {
            try pg.query("INSERT INTO \"\(Self.schema)\".\"cashier_txns\" (amount, currency, method) SELECT g * 0.01, 'EUR', 'cash' FROM generate_series(1, 5000) g")
        }
        let k0 = nowMicros()
        bridge = try Child(binary: settings.bridgeBinary, environment: env)
        try waitUntil(seconds: 900) { try self.backlog(pg) == 0 }
        let seconds = (nowMicros() - k0) / 1e6
        guard try countMongo(mongo, "cashier_txns") >= before + backlog else { throw BenchError("catch-up lost rows") }
        out["catch_up_changes"] = Double(backlog)
        out["catch_up_seconds"] = seconds
        out["catch_up_per_s"] = Double(backlog) / seconds
        out["catch_up_ratio"] = Double(backlog) / seconds / ((raw["mongo_bulk_docs_per_s"] as? Double) ?? .nan)
        out["rss_after_catch_up_mib"] = currentRSS(pid: bridge.pid) ?? .nan
        out["peak_rss_mib"] = peakRSS(pid: bridge.pid) ?? .nan
        bridge.terminate()

        // 5. Logical replication capture beside the triggers.
        for (key, value) in try logicalCapture(pg: pg, mongo: mongo, config: config, env: env, quiet: quiet) { out[key] = value }

        // 6. Resync: N rows per side, 10% different, bridge stopped; the child `nocobridge
        // resync` is timed and its peak RSS sampled; compared with a raw sorted scan of each side.
        let n = settings.resyncRows
        let waiters = "\"\(Self.schema)\".\"waiter_ops\""
        try pg.execute(script: """
            \(BridgeOrigin.begin);
            INSERT INTO \(waiters) ("externalId", table_no, action, version) SELECT 'rs-' || lpad(g::text, 7, '0'), g, 'seat', 1 FROM generate_series(1, \(n)) g;
            COMMIT;
            """)
        for start in stride(from: 1, through: n, by: 1000) {
            var writes: [BulkWrite] = []
            for g in start..<min(start + 1000, n + 1) {
                let digits = String(g)
                let key: String = "rs-" + String(repeating: "0", count: 7 - digits.count) + digits
                let action: String = g % 10 == 0 ? "order" : "seat"
                let doc: Document = ["externalId": .string(key), "table_no": .int64(Int64(g)), "action": .string(action)]
                writes.append(.insertOne(doc))
            }
            _ = try mongo.withClient { (c: MongoClient) throws(MongoError) in try c.bulkWrite(writes, collection: "waiter_ops") }
        }
        let scanPG = nowMicros()
        try pg.query("BEGIN")
        try pg.query("DECLARE s NO SCROLL CURSOR FOR SELECT * FROM \(waiters) ORDER BY \"externalId\" COLLATE \"C\"")
        var scanned = 0
        while true {
            let r = try pg.query("FETCH 1000 FROM s").rows.count
            if r == 0 { break }
            scanned += r
        }
        try pg.query("COMMIT")
        let pgScanRate = Double(scanned) / ((nowMicros() - scanPG) / 1e6)
        let scanMongo = nowMicros()
        let cursor = try MongoCursor(pool: mongo, collection: "waiter_ops", filter: Document(),
                                     options: ["sort": .document(["externalId": .int32(1)]), "batchSize": .int32(1000), "allowDiskUse": .bool(true)])
        var docsScanned = 0
        while try cursor.next() != nil { docsScanned += 1 }
        let mongoScanRate = Double(docsScanned) / ((nowMicros() - scanMongo) / 1e6)
        let r0 = nowMicros()
        let resync = Process()
        resync.executableURL = URL(fileURLWithPath: settings.bridgeBinary)
        resync.arguments = ["resync", "--tables", "waiter_ops"]
        resync.environment = env
        resync.standardOutput = FileHandle.nullDevice
        try resync.run()
        var resyncPeak = 0.0
        while resync.isRunning {
            resyncPeak = max(resyncPeak, peakRSS(pid: resync.processIdentifier) ?? 0)
            usleep(50_000)
        }
        let resyncSeconds = (nowMicros() - r0) / 1e6
        let keys = Double(scanned)
        out["resync_rows_per_side"] = keys
        out["resync_seconds"] = resyncSeconds
        out["resync_keys_per_s"] = keys / resyncSeconds
        out["raw_scan_pg_rows_per_s"] = pgScanRate
        out["raw_scan_mongo_docs_per_s"] = mongoScanRate
        out["resync_ratio_to_slower_scan"] = keys / resyncSeconds / min(pgScanRate, mongoScanRate)
        out["resync_peak_rss_mib"] = resyncPeak
        out["resync_exit_status"] = Double(resync.terminationStatus)
        try mongo.withClient { (c: MongoClient) throws(MongoError) in _ = try c.runCommand(["dropDatabase": .int32(1)]) }
        try admin.query("DROP DATABASE IF EXISTS bench_bridge WITH (FORCE)")
        return out
    }

    /// Calls `body` `count` times at `settings.rate` per second (open loop).
    func paced(count: Int, _ body: (Int) throws -> Void) throws {
        let interval = 1e6 / settings.rate
        let start = nowMicros()
        for i in 0..<count {
            let due = start + Double(i) * interval
            let wait = due - nowMicros()
            if wait > 0 { usleep(UInt32(wait)) }
            try body(i)
        }
    }

    func waitUntil(seconds: Double = 300, _ condition: () throws -> Bool) throws {
        let deadline = nowMicros() + seconds * 1e6
        while nowMicros() < deadline {
            if try condition() { return }
            usleep(20_000)
        }
        throw BenchError("timed out after \(seconds) s")
    }

    func countMongo(_ pool: MongoClientPool, _ collection: String) throws -> Int {
        try pool.withClient { (c: MongoClient) throws(MongoError) in try c.count(collection: collection) }
    }

    func backlog(_ pg: PostgresConnection) throws -> Int {
        Int(try pg.query("SELECT count(*) FROM nocobridge.changelog").rows[0][0] ?? "0") ?? 0
    }

    func countPG(_ pg: PostgresConnection, _ table: String) throws -> Int {
        Int(try pg.query("SELECT count(*) FROM \"\(Self.schema)\".\"\(table)\"").rows[0][0] ?? "0") ?? 0
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

extension Samples {
    static func dropFirst(_ s: Samples, _ n: Int) -> Samples {
        var out = Samples()
        for v in s.values.dropFirst(n) { out.add(v) }
        return out
    }
}

/// Collects `bench_seen` notifications (stamp → latency) on its own thread.
final class NotifyLatency: @unchecked Sendable {
    // @unchecked: the connection and samples are used by the collecting thread only until `wait()`.
    private let connection: PostgresConnection
    private let expected: Int
    private var samples = Samples()
    private let done = DispatchSemaphore(value: 0)

    init(connection: PostgresConnection, expected: Int) {
        self.connection = connection
        self.expected = expected
    }

    func run() {
        var idle = 0
        while samples.values.count < expected && idle < 50 {
            guard let notes = try? connection.waitForNotifications(timeoutMilliseconds: 200) else { break }
            let now = nowMicros()
            if notes.isEmpty { idle += 1; continue }
            idle = 0
            for n in notes where n.payload.hasPrefix("t:") {
                if let t0 = Double(n.payload.dropFirst(2)) { samples.add(now - t0) }
            }
        }
        done.signal()
    }

    func wait() -> Samples {
        done.wait()
        return samples
    }
}

/// A `nocobridge run` child process.
struct Child {
    let process = Process()
    var pid: Int32 { process.processIdentifier }

    init(binary: String, environment: [String: String]) throws {
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["run"]
        process.environment = environment
        try process.run()
    }

    func terminate() {
        process.terminate()
        process.waitUntilExit()
    }
}
