import Bridge
import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

/// What record history costs the bridge: the same NocoDB → MongoDB decisions made with and
/// without it, alternating round by round so the machine's drift hits both alike. Measured
/// per batch: the PostgreSQL write stage (where the history INSERT runs, inside the batch's
/// transaction) and the whole batch (decide, write MongoDB, commit); and the bytes an entry
/// takes on disk with its indexes. Inserts are the largest entries (every field in `changed`).
struct HistoryCost {
    let settings: Settings

    func run() throws -> HistoryCostResult {
        let admin = try PostgresConnection(url: settings.pgURL)
        try admin.query("DROP DATABASE IF EXISTS bench_history WITH (FORCE)")
        try admin.query("CREATE DATABASE bench_history")
        let url = PostgresConnection.url(settings.pgURL, database: "bench_history")
        let pg = try PostgresConnection(url: url)
        try pg.execute(script: try String(contentsOfFile: "Scripts/demo-schema.sql", encoding: .utf8))
        // Its own statements (dropping a database of thousands of documents on a loaded
        // server) outlast the bridge pools' 10 s socket timeout, as in `BenchBase`.
        let mongo = try MongoClientPool(url: settings.mongoURL, database: "bench_history", socketTimeoutMS: 300_000)
        try mongo.withClient { (c: MongoClient) throws(MongoError) in _ = try c.runCommand(["dropDatabase": .int32(1)]) }
        let schema = BenchBase.schema
        let config = BridgeConfiguration(postgresURL: url, mongoURL: settings.mongoURL, mongoDatabase: "bench_history",
                                         tables: [TableMapping(schema: schema, table: "waiter_ops", collection: "waiter_ops")])
        var quiet = Logger(label: "bench")
        quiet.logLevel = .error
        try Installer(configuration: config, logger: quiet).install()
        let shape = try TableCatalog.shape(of: config.tables[0], on: pg, columnKinds: [:], fieldNames: [:])
        let journal = WriteJournal(url: url, instanceID: config.instanceID)
        let on = RecordSynchronizer(shape: shape, policy: config.policy, optimisticInserts: true, journal: journal, history: HistoryLog(days: 30))
        let off = RecordSynchronizer(shape: shape, policy: config.policy, optimisticInserts: true, journal: journal, history: nil)
        let writer = try PostgresConnection(url: url)
        var serial = 0
        func batch(_ size: Int, _ sync: RecordSynchronizer) throws -> (pgWrite: Double, total: Double) {
            let first = serial
            serial += size
            try pg.query("""
                INSERT INTO "\(schema)"."waiter_ops" ("externalId", table_no, action, notes, updated_by)
                SELECT 'h-' || g, g, 'seat', 'window table, two guests', 'us_bench' FROM generate_series($1::int, $2::int) g
                """, [String(first), String(first + size - 1)])
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let hints = (first..<(first + size)).map { RecordSynchronizer.Hint(key: "h-\($0)", changedAt: now) }
            let t0 = Clock.micros()
            // As the pipelines do (`bridgeTransaction`): one transaction marked as the bridge's.
            try writer.execute(script: BridgeOrigin.begin)
            let outcome = try sync.synchronize(mode: .change(.nocodb), hints: hints, connection: writer, mongo: mongo)
            try writer.query("COMMIT")
            return (outcome.timings.postgresWrite * 1000, Clock.micros() - t0)
        }
        var out = HistoryCostResult()
        for (size, rounds) in [(1, settings.quick ? 200 : 1000), (100, settings.quick ? 30 : 100), (1000, settings.quick ? 8 : 30)] {
            var pgOn = Samples(), pgOff = Samples(), totalOn = Samples(), totalOff = Samples()
            for round in 0..<rounds {
                // Alternate which goes first, so neither always follows the other.
                let order = round % 2 == 0 ? [true, false] : [false, true]
                for withHistory in order {
                    let r = try batch(size, withHistory ? on : off)
                    if withHistory { pgOn.add(r.pgWrite); totalOn.add(r.total) } else { pgOff.add(r.pgWrite); totalOff.add(r.total) }
                }
            }
            func ms(_ us: Double?) -> Double? { us.map { $0 / 1000 } }
            out.batches.append(HistoryCostResult.Batch(
                size: size, rounds: rounds,
                postgresWriteP50MsWith: ms(pgOn.percentile(50)), postgresWriteP50MsWithout: ms(pgOff.percentile(50)),
                batchP50MsWith: ms(totalOn.percentile(50)), batchP50MsWithout: ms(totalOff.percentile(50)),
                batchP90MsWith: ms(totalOn.percentile(90)), batchP90MsWithout: ms(totalOff.percentile(90))))
            Progress.note("history, batches of \(size): pg_write p50 \(Int(pgOn.percentile(50) ?? 0)) us with, \(Int(pgOff.percentile(50) ?? 0)) us without; batch p50 \(Int(totalOn.percentile(50) ?? 0)) / \(Int(totalOff.percentile(50) ?? 0)) us")
        }
        try pg.query("VACUUM ANALYZE nocobridge.history")
        let size = try pg.query("""
            SELECT count(*), pg_total_relation_size('nocobridge.history'), pg_relation_size('nocobridge.history')
            FROM nocobridge.history
            """).rows[0]
        let entries = Double(size[0] ?? "0") ?? 0
        out.entries = Int(entries)
        out.bytesPerEntryWithIndexes = entries > 0 ? (Double(size[1] ?? "0") ?? 0) / entries : nil
        out.bytesPerEntryHeap = entries > 0 ? (Double(size[2] ?? "0") ?? 0) / entries : nil
        try admin.query("DROP DATABASE IF EXISTS bench_history WITH (FORCE)")
        try mongo.withClient { (c: MongoClient) throws(MongoError) in _ = try c.runCommand(["dropDatabase": .int32(1)]) }
        return out
    }
}

/// Record history's cost per batch size (medians and p90, ms) and its size on disk.
struct HistoryCostResult: Codable, Sendable {
    struct Batch: Codable, Sendable {
        var size: Int
        var rounds: Int
        var postgresWriteP50MsWith: Double?
        var postgresWriteP50MsWithout: Double?
        var batchP50MsWith: Double?
        var batchP50MsWithout: Double?
        var batchP90MsWith: Double?
        var batchP90MsWithout: Double?
    }

    var batches: [Batch] = []
    var entries = 0
    var bytesPerEntryWithIndexes: Double?
    var bytesPerEntryHeap: Double?
}
