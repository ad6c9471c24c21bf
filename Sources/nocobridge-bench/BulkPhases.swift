import Foundation
import Mongo
import Postgres
import SyncCore

/// Bulk edits and backlogs of the bulk table, and what they do to single-row changes of the
/// probe table meanwhile (head-of-line blocking). Trigger capture, the bridge as a child.
///
/// Every bulk sets one marker value in `method` on a key range; the far side's observer
/// counts the records that arrive carrying it. Probes are single-row inserts into the probe
/// table made right after the bulk statement returned (or right after a restarted bridge is
/// ready), so what they measure is the bridge's queueing, not the source server's.
struct BulkPhases {
    let harness: Harness
    let raw: RawBulkRates
    var settings: Settings { harness.settings }
    private var bulkTable: String { BenchBase.quoted(BenchBase.bulkTable) }

    struct Edit {
        let probe: HeadOfLineProbe
        let drain: BulkDrain
        let settleSeconds: Double
    }

    /// New rows inserted in NocoDB (the records every later phase edits), 5,000 a statement
    /// as an import would: the bridge's insert throughput towards MongoDB.
    func seed(_ bridge: BridgeProcess) throws -> BulkDrain {
        let records = settings.seedRecords
        let marker = Direction.toMongo.marker(0)
        let t0 = Clock.micros()
        for from in stride(from: 1, through: records, by: 5000) {
            try harness.source.query("""
                INSERT INTO \(bulkTable) ("externalId", "amount", "currency", "method")
                SELECT \(BulkKeys.sql), g * 0.01, 'EUR', $1 FROM generate_series(\(from), \(min(from + 4999, records))) g
                """, [marker])
        }
        let seconds = try harness.waitForMarker(marker, expected: records, since: t0, check: bridge.checkRunning)
        let drain = BulkDrain(changes: records, seconds: seconds, raw: raw.mongoInsertPerS, rawIs: "raw_bulk.mongo_insert_per_s",
                              verified: try harness.mongoCount(method: marker) == records)
        try harness.barrier(check: bridge.checkRunning)
        Progress.note("seed: \(records) inserts to MongoDB at \(Int(drain.perS))/s")
        return drain
    }

    /// A 20,000-row UPDATE in NocoDB, then probes NocoDB → MongoDB while the bridge applies it.
    func nocodbBulkUpdate(_ bridge: BridgeProcess) throws -> Edit {
        let edit = settings.bulkEdit
        let marker = Direction.toMongo.marker(1)
        let t0 = Clock.micros()
        try updateNocoDB(upTo: edit, marker: marker)
        let probe = try probes(.toMongo, label: "hol-nocodb", during: "a \(edit)-row UPDATE of \(BenchBase.bulkTable) in NocoDB",
                               check: bridge.checkRunning)
        let seconds = try harness.waitForMarker(marker, expected: edit, since: t0, check: bridge.checkRunning)
        let drain = BulkDrain(changes: edit, seconds: seconds, raw: raw.mongoUpsertPerS, rawIs: "raw_bulk.mongo_upsert_per_s",
                              verified: try harness.mongoCount(method: marker) == edit)
        let settle = try harness.barrier(check: bridge.checkRunning)
        Progress.note("NocoDB bulk UPDATE: probes p50 \(ms(probe.probes.p50Ms)), \(probe.arrivedWithinWindow)/\(probe.sent) within \(Int(probe.windowS)) s; bulk \(Int(drain.perS))/s; settled \(String(format: "%.1f", settle)) s later")
        return Edit(probe: probe, drain: drain, settleSeconds: settle)
    }

    /// A 20,000-document updateMany in MongoDB, then probes MongoDB → NocoDB meanwhile.
    func mongoUpdateMany(_ bridge: BridgeProcess) throws -> Edit {
        let edit = settings.bulkEdit
        let marker = Direction.toNocodb.marker(2)
        let t0 = Clock.micros()
        try harness.base.mongo.withClient { (c: MongoClient) throws in
            try MongoBulkEdit.updateMany(c, collection: BenchBase.bulkTable, upTo: edit, method: marker)
        }
        let probe = try probes(.toNocodb, label: "hol-mongo", during: "a \(edit)-document updateMany of \(BenchBase.bulkTable) in MongoDB",
                               check: bridge.checkRunning)
        let seconds = try harness.waitForMarker(marker, expected: edit, since: t0, check: bridge.checkRunning)
        let (rawRate, rawIs) = toNocoDBReference(stream: raw.streamDeliveryPerS, streamIs: "raw_bulk.stream_delivery_per_s")
        let drain = BulkDrain(changes: edit, seconds: seconds, raw: rawRate, rawIs: rawIs,
                              verified: try harness.nocodbCount(method: marker) == edit)
        let settle = try harness.barrier(check: bridge.checkRunning)
        Progress.note("MongoDB updateMany: probes p50 \(ms(probe.probes.p50Ms)), \(probe.arrivedWithinWindow)/\(probe.sent) within \(Int(probe.windowS)) s; bulk \(Int(drain.perS))/s; settled \(String(format: "%.1f", settle)) s later")
        return Edit(probe: probe, drain: drain, settleSeconds: settle)
    }

    struct Restart {
        let probe: HeadOfLineProbe
        let drain: BulkDrain
        let bridge: BridgeProcess
    }

    /// Stops the bridge, updates `catchUpRecords` rows in NocoDB, starts it again: catch-up
    /// time from the start, and probes NocoDB → MongoDB from the moment it is ready.
    func nocodbBacklog(stopping bridge: BridgeProcess) throws -> Restart {
        harness.stop(bridge)
        let records = settings.catchUpRecords
        let marker = Direction.toMongo.marker(3)
        try updateNocoDB(upTo: records, marker: marker)
        return try restart(.toMongo, marker: marker, records: records, raw: (raw.mongoUpsertPerS, "raw_bulk.mongo_upsert_per_s")) {
            try harness.mongoCount(method: marker) == records
        }
    }

    /// The same with the backlog made in MongoDB (one updateMany while the bridge is down).
    func mongoBacklog(stopping bridge: BridgeProcess) throws -> Restart {
        harness.stop(bridge)
        let records = settings.catchUpRecords
        let marker = Direction.toNocodb.marker(4)
        try harness.base.mongo.withClient { (c: MongoClient) throws in
            try MongoBulkEdit.updateMany(c, collection: BenchBase.bulkTable, upTo: records, method: marker)
        }
        let reference = toNocoDBReference(stream: raw.streamCatchUpPerS, streamIs: "raw_bulk.stream_catch_up_per_s")
        return try restart(.toNocodb, marker: marker, records: records, raw: reference) {
            try harness.nocodbCount(method: marker) == records
        }
    }

    private func restart(_ direction: Direction, marker: String, records: Int, raw reference: (Double, String),
                         verify: () throws -> Bool) throws -> Restart {
        let bridge = try harness.startBridge(.triggers)
        let t0 = bridge.startedMicros
        let ready = try bridge.waitReady()
        let side = direction == .toMongo ? "NocoDB" : "MongoDB"
        var probe = try probes(direction, label: "restart-\(direction.rawValue)",
                               during: "catching up \(records) changes made in \(side) while it was stopped", check: bridge.checkRunning)
        probe.bridgeReadyS = ready
        let seconds = try harness.waitForMarker(marker, expected: records, since: t0, check: bridge.checkRunning)
        let drain = BulkDrain(changes: records, seconds: seconds, raw: reference.0, rawIs: reference.1, verified: try verify())
        try harness.barrier(check: bridge.checkRunning)
        Progress.note("catch-up \(direction.rawValue): \(records) in \(String(format: "%.1f", seconds)) s (\(Int(drain.perS))/s, ready after \(String(format: "%.2f", ready)) s); probes p50 \(ms(probe.probes.p50Ms)), \(probe.arrivedWithinWindow)/\(probe.sent) within \(Int(probe.windowS)) s")
        return Restart(probe: probe, drain: drain, bridge: bridge)
    }

    /// The probe table's single-row inserts, `probeCount` at `probeRate`/s.
    private func probes(_ direction: Direction, label: String, during: String, check: @escaping () throws -> Void) throws -> HeadOfLineProbe {
        let load = PacedLoad(direction: direction, label: label, count: settings.probeCount, rate: settings.probeRate)
        let outcome = try load.run { stamp, i in try harness.sendProbe(direction, stamp: stamp, number: i, key: "\(label)-\(i)") }
        let samples = try harness.collector(window: settings.probeWindow, also: check).collect(outcome)
        return HeadOfLineProbe(during: during, probes: samples.summary, sent: settings.probeCount,
                               arrivedWithinWindow: samples.arrived(within: settings.probeWindow), windowS: settings.probeWindow)
    }

    /// Towards NocoDB the bridge reads the change stream and writes PostgreSQL: the slower hop.
    private func toNocoDBReference(stream: Double, streamIs: String) -> (Double, String) {
        stream <= raw.pgUpsertRowsPerS ? (stream, streamIs) : (raw.pgUpsertRowsPerS, "raw_bulk.pg_upsert_rows_per_s")
    }

    /// One UPDATE statement over a key range, as a NocoDB bulk edit (or a script) runs it.
    private func updateNocoDB(upTo last: Int, marker: String) throws {
        let result = try harness.source.query(
            "UPDATE \(bulkTable) SET \"method\" = $1, \"amount\" = \"amount\" + 1 WHERE \"externalId\" BETWEEN $2 AND $3",
            [marker, BulkKeys.key(1), BulkKeys.key(last)])
        guard result.affected == last else { throw BenchError("the NocoDB bulk UPDATE changed \(result.affected) of \(last) rows") }
    }

    private func ms(_ value: Double?) -> String { value.map { String(format: "%.1f ms", $0) } ?? "> window" }
}
