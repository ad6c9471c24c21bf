import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore

/// `nocobridge resync` of the probe table with N rows per side, 10 % different, the bridge
/// stopped; timed as a child process and compared with a raw sorted scan of each side (a
/// resync can go no faster than reading both sides in key order).
struct ResyncRun {
    let harness: Harness
    var settings: Settings { harness.settings }

    func run() throws -> ResyncResult {
        let n = settings.resyncRows
        let table = BenchBase.quoted(BenchBase.probeTable)
        let pg = try harness.base.connect("bench-resync")
        // Written as the bridge's own transaction: present in NocoDB without being captured,
        // as after a restore, so only the resync can find the differences.
        try pg.execute(script: """
            \(BridgeOrigin.begin);
            INSERT INTO \(table) ("externalId", "table_no", "action", "version")
            SELECT 'rs-' || lpad(g::text, 7, '0'), g, 'seat', 1 FROM generate_series(1, \(n)) g;
            COMMIT;
            """)
        for start in stride(from: 1, through: n, by: 1000) {
            let writes: [BulkWrite] = (start..<min(start + 1000, n + 1)).map { g in
                let digits = String(g)
                let key = "rs-" + String(repeating: "0", count: max(0, 7 - digits.count)) + digits
                return .insertOne([RowMapper.keyField: .string(key), "table_no": .int64(Int64(g)),
                                   "action": .string(g % 10 == 0 ? "order" : "seat")])
            }
            let result = try harness.base.mongo.withClient { (c: MongoClient) throws(MongoError) in
                try c.bulkWrite(writes, collection: BenchBase.probeTable)
            }
            if let error = result.writeErrors.first { throw BenchError("resync seed refused: \(error.message)") }
        }

        let scanPG = Clock.micros()
        var rows = 0
        try pg.query("BEGIN")
        try pg.query("DECLARE s NO SCROLL CURSOR FOR SELECT * FROM \(table) ORDER BY \"externalId\" COLLATE \"C\"")
        while true {
            let fetched = try pg.query("FETCH 1000 FROM s").rows.count
            if fetched == 0 { break }
            rows += fetched
        }
        try pg.query("COMMIT")
        let pgScanRate = Double(rows) / Clock.seconds(since: scanPG)

        let scanMongo = Clock.micros()
        let cursor = try MongoCursor(pool: harness.base.mongo, collection: BenchBase.probeTable, filter: Document(),
                                     options: ["sort": .document([RowMapper.keyField: .int32(1)]), "batchSize": .int32(1000),
                                               "allowDiskUse": .bool(true)])
        var documents = 0
        while try cursor.next() != nil { documents += 1 }
        let mongoScanRate = Double(documents) / Clock.seconds(since: scanMongo)

        let started = Clock.micros()
        let resync = try harness.base.cli.makeProcess(["resync", "--tables", BenchBase.probeTable], capture: .triggers)
        try resync.run()
        var peak: Double?
        while resync.isRunning {
            if let p = ProcessMemory.peakMiB(pid: resync.processIdentifier) { peak = max(peak ?? 0, p) }
            usleep(50_000)
        }
        let seconds = Clock.seconds(since: started)
        let keys = Double(rows)
        Progress.note("resync: \(rows) rows per side in \(String(format: "%.1f", seconds)) s")
        return ResyncResult(rowsPerSide: rows, seconds: seconds, keysPerS: keys / seconds, rawScanPgRowsPerS: pgScanRate,
                            rawScanMongoDocsPerS: mongoScanRate, ratioToSlowerScan: keys / seconds / min(pgScanRate, mongoScanRate),
                            peakRssMib: peak, exitStatus: resync.terminationStatus)
    }
}
