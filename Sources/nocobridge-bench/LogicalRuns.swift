import Bridge
import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

extension BridgeRuns {
    /// Trigger capture beside logical capture on the same base: NocoDB's own write latency with
    /// and without the capture triggers, then logical capture's end-to-end latency and
    /// throughput (the bridge stopped on entry and on return; the slot is dropped at the end).
    func logicalCapture(pg: PostgresConnection, mongo: MongoClientPool, config: BridgeConfiguration,
                        env: [String: String], quiet: Logger) throws -> [String: Any] {
        var out: [String: Any] = [:]
        let waiters = "\"\(Self.schema)\".\"waiter_ops\""
        func insertLatency(_ label: String) throws -> Samples {
            var samples = Samples()
            for i in 0..<settings.latencyCount {
                let t0 = nowMicros()
                try pg.query("INSERT INTO \(waiters) (\"externalId\", table_no, action) VALUES ($1, $2, 'seat')", ["\(label)-\(i)", String(i)])
                samples.add(nowMicros() - t0)
            }
            return samples
        }
        let withTriggers = try insertLatency("wt")
        out["nocodb_insert_with_triggers"] = withTriggers.summary

        var logical = config
        logical.capture = .logical
        try Installer(configuration: logical, logger: quiet).install(createMongoIndexes: false, replicaIdentityFull: true)
        let withoutTriggers = try insertLatency("wo")
        out["nocodb_insert_without_triggers"] = withoutTriggers.summary
        log("NocoDB INSERT p50 with triggers \(withTriggers.percentile(50)) us, without \(withoutTriggers.percentile(50)) us")

        var logicalEnv = env
        logicalEnv["SYNC_CAPTURE"] = "logical"
        let bridge = try Child(binary: settings.bridgeBinary, environment: logicalEnv)
        defer { bridge.terminate() }
        let slot = try LogicalSlot.name(on: pg)
        func caughtUp() throws {
            guard let target = try pg.query("SELECT pg_current_wal_lsn()::text").rows[0][0] else { return }
            try waitUntil {
                try pg.query("SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = $2", [target, slot]).rows.first?[0] == "t"
            }
        }
        try caughtUp()  // the rows the triggers captured above, drained first

        let watcher = StreamLatency(pool: mongo, collection: "waiter_ops", expected: settings.latencyCount + settings.warmup)
        watcher.field = "notes"
        watcher.start()
        try paced(count: settings.latencyCount + settings.warmup) { i in
            try pg.query("INSERT INTO \(waiters) (\"externalId\", table_no, notes) VALUES ($1, $2, $3)", ["lg-\(i)", String(i), "t:\(nowMicros())"])
        }
        let latency = Samples.dropFirst(watcher.wait(), settings.warmup)
        out["logical_to_mongo_latency"] = latency.summary
        log("logical to-mongo p50 \(latency.percentile(50)) us")

        let rows = settings.throughputRows
        let c0 = try countMongo(mongo, "cashier_txns")
        let t0 = nowMicros()
        for _ in 0..<(rows / 1000) {
            try pg.query("INSERT INTO \"\(Self.schema)\".\"cashier_txns\" (\"externalId\", amount, currency, method) SELECT gen_random_uuid()::text, g * 0.01, 'EUR', 'card' FROM generate_series(1, 1000) g")
        }
        try caughtUp()
        guard try countMongo(mongo, "cashier_txns") >= c0 + rows else { throw BenchError("logical throughput run lost rows") }
        let rate = Double(rows) / ((nowMicros() - t0) / 1e6)
        out["logical_to_mongo_throughput_per_s"] = rate
        out["logical_to_mongo_throughput_ratio"] = rate / ((raw["mongo_bulk_docs_per_s"] as? Double) ?? .nan)
        bridge.terminate()
        try pg.query("SELECT pg_drop_replication_slot($1)", [slot])
        return out
    }
}
