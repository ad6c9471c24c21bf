import Foundation
import Mongo
import Postgres
import Synchronization
import SyncCore

/// Bulk edits and backlogs of the bulk table, and what they do to single-row changes of the
/// probe table meanwhile (head-of-line blocking). Trigger capture, the bridge as a child.
///
/// Every bulk sets one marker value in `method` on a key range; the far side's observer
/// counts the records that arrive carrying it. Probes are single-row inserts into the probe
/// table, started once the first record of the bulk has crossed (or once a restarted bridge
/// answers `/readyz`), so they meet the bulk while the bridge applies it.
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

    /// New documents inserted in MongoDB, 1,000 a bulk write, under keys of their own: the
    /// bridge's insert throughput towards NocoDB.
    func mongoInserts(_ bridge: BridgeProcess) throws -> BulkDrain {
        let records = settings.mongoInsertRecords
        let marker = Direction.toNocodb.marker(5)
        let t0 = Clock.micros()
        for from in stride(from: 1, through: records, by: 1000) {
            let writes: [BulkWrite] = try (from...min(from + 999, records)).map { n in
                .insertOne([RowMapper.keyField: .string(BulkKeys.key(n, prefix: "d")), "amount": .decimal(try Decimal128Text("\(n).00")),
                            "currency": .string("EUR"), "method": .string(marker)])
            }
            let result = try harness.base.mongo.withClient { (c: MongoClient) throws(MongoError) in
                try c.bulkWrite(writes, collection: BenchBase.bulkTable)
            }
            if let error = result.writeErrors.first { throw BenchError("insert refused: \(error.message)") }
        }
        let seconds = try harness.waitForMarker(marker, expected: records, since: t0, check: bridge.checkRunning)
        let (rawRate, rawIs) = slowerHop((raw.streamInsertDeliveryPerS, "raw_bulk.stream_insert_delivery_per_s"),
                                         (raw.pgInsertRowsPerS, "raw_bulk.pg_insert_rows_per_s"))
        let drain = BulkDrain(changes: records, seconds: seconds, raw: rawRate, rawIs: rawIs,
                              verified: try harness.nocodbCount(method: marker) == records)
        try harness.barrier(check: bridge.checkRunning)
        Progress.note("inserts to NocoDB: \(records) at \(Int(drain.perS))/s")
        return drain
    }

    /// A 20,000-row UPDATE in NocoDB, then probes NocoDB → MongoDB while the bridge applies it.
    func nocodbBulkUpdate(_ bridge: BridgeProcess) throws -> Edit {
        let edit = settings.bulkEdit
        let marker = Direction.toMongo.marker(1)
        let t0 = Clock.micros()
        try updateNocoDB(upTo: edit, marker: marker)
        let during = "a \(edit)-row UPDATE of \(BenchBase.bulkTable) in NocoDB"
        let run = try probesOnceApplying(.toMongo, marker: marker, label: "hol-nocodb", check: bridge.checkRunning)
        let seconds = try harness.waitForMarker(marker, expected: edit, since: t0, check: bridge.checkRunning)
        let drain = BulkDrain(changes: edit, seconds: seconds, raw: raw.mongoUpsertPerS, rawIs: "raw_bulk.mongo_upsert_per_s",
                              verified: try harness.mongoCount(method: marker) == edit)
        let settle = try harness.barrier(check: bridge.checkRunning)
        let probe = report(run, during: during, bulkEnded: t0 + seconds * 1e6)
        note("NocoDB bulk UPDATE", probe, drain, settle: settle)
        return Edit(probe: probe, drain: drain, settleSeconds: settle)
    }

    /// A 20,000-document updateMany in MongoDB, and probes MongoDB → NocoDB meanwhile. The
    /// server applies an updateMany over seconds while the bridge already reads its events,
    /// so the probes are sent while it runs (SecantusDB interleaves other writes with it).
    func mongoUpdateMany(_ bridge: BridgeProcess) throws -> Edit {
        let edit = settings.bulkEdit
        let marker = Direction.toNocodb.marker(2)
        let t0 = Clock.micros()
        let mongo = harness.base.mongo
        let update = Background {
            try mongo.withClient { (c: MongoClient) throws in
                try MongoBulkEdit.updateMany(c, collection: BenchBase.bulkTable, upTo: edit, method: marker)
            }
        }
        let during = "a \(edit)-document updateMany of \(BenchBase.bulkTable) in MongoDB"
        let run = try probesOnceApplying(.toNocodb, marker: marker, label: "hol-mongo", check: bridge.checkRunning)
        try update.join()
        let seconds = try harness.waitForMarker(marker, expected: edit, since: t0, check: bridge.checkRunning)
        let (rawRate, rawIs) = slowerHop((raw.streamDeliveryPerS, "raw_bulk.stream_delivery_per_s"), pgUpsert)
        let drain = BulkDrain(changes: edit, seconds: seconds, raw: rawRate, rawIs: rawIs,
                              verified: try harness.nocodbCount(method: marker) == edit)
        let settle = try harness.barrier(check: bridge.checkRunning)
        let probe = report(run, during: during, bulkEnded: t0 + seconds * 1e6)
        note("MongoDB updateMany", probe, drain, settle: settle)
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
        let reference = slowerHop((raw.streamCatchUpPerS, "raw_bulk.stream_catch_up_per_s"), pgUpsert)
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
        let run = try probes(direction, label: "restart-\(direction.rawValue)", check: bridge.checkRunning)
        let seconds = try harness.waitForMarker(marker, expected: records, since: t0, check: bridge.checkRunning)
        let drain = BulkDrain(changes: records, seconds: seconds, raw: reference.0, rawIs: reference.1, verified: try verify())
        try harness.barrier(check: bridge.checkRunning)
        var probe = report(run, during: "catching up \(records) changes made in \(side) while it was stopped", bulkEnded: t0 + seconds * 1e6)
        probe.bridgeReadyS = ready
        note("catch-up \(direction.rawValue) (ready after \(String(format: "%.2f", ready)) s)", probe, drain, settle: nil)
        return Restart(probe: probe, drain: drain, bridge: bridge)
    }

    struct ProbeRun {
        let outcome: PacedLoad.Outcome
        let samples: Samples
    }

    /// Probes from the moment the first record of the bulk reached the other side (the
    /// bridge is applying it), so they meet the bulk in flight rather than a bridge that has
    /// not seen it yet.
    private func probesOnceApplying(_ direction: Direction, marker: String, label: String,
                                    check: @escaping () throws -> Void) throws -> ProbeRun {
        _ = try harness.waitForMarker(marker, expected: 1, since: Clock.micros(), check: check)
        return try probes(direction, label: label, check: check)
    }

    /// The probe table's single-row inserts, `probeCount` at `probeRate`/s, each given
    /// `probeWindow` seconds to arrive.
    private func probes(_ direction: Direction, label: String, check: @escaping () throws -> Void) throws -> ProbeRun {
        let load = PacedLoad(direction: direction, label: label, count: settings.probeCount, rate: settings.probeRate)
        let outcome = try load.run { stamp, i in try harness.sendProbe(direction, stamp: stamp, number: i, key: "\(label)-\(i)") }
        return ProbeRun(outcome: outcome, samples: try harness.collector(window: settings.probeWindow, also: check).collect(outcome))
    }

    /// Called after a barrier, when every probe has crossed: adds how late the lost ones came.
    private func report(_ run: ProbeRun, during: String, bulkEnded: Double) -> HeadOfLineProbe {
        let eventual = LatencyCollector(arrivals: harness.arrivals, window: .infinity, check: {}).samples(run.outcome)
        return HeadOfLineProbe(during: during, probes: run.samples.summary, eventual: eventual.summary, sent: run.outcome.sent.count,
                               sentWhileBulkInFlight: run.outcome.sent.filter { $0.micros < bulkEnded }.count,
                               arrivedWithinWindow: run.samples.arrived(within: settings.probeWindow), windowS: settings.probeWindow)
    }

    private func note(_ what: String, _ probe: HeadOfLineProbe, _ drain: BulkDrain, settle: Double?) {
        Progress.note("\(what): probes p50 \(ms(probe.probes.p50Ms)) (eventually \(ms(probe.eventual.p50Ms))), "
                      + "\(probe.arrivedWithinWindow)/\(probe.sent) within \(Int(probe.windowS)) s, \(probe.sentWhileBulkInFlight) sent while the bulk was in flight; "
                      + "bulk \(drain.changes) in \(String(format: "%.1f", drain.seconds)) s = \(Int(drain.perS))/s"
                      + (settle.map { String(format: "; settled %.2f s later", $0) } ?? ""))
    }

    /// Towards NocoDB the bridge reads the change stream and writes PostgreSQL: the raw
    /// reference is the slower of the two hops (with its JSON key).
    private func slowerHop(_ stream: (Double, String), _ postgres: (Double, String)) -> (Double, String) {
        stream.0 <= postgres.0 ? stream : postgres
    }

    private var pgUpsert: (Double, String) { (raw.pgUpsertRowsPerS, "raw_bulk.pg_upsert_rows_per_s") }

    /// One UPDATE statement over a key range, as a NocoDB bulk edit (or a script) runs it.
    private func updateNocoDB(upTo last: Int, marker: String) throws {
        let result = try harness.source.query(
            "UPDATE \(bulkTable) SET \"method\" = $1, \"amount\" = \"amount\" + 1 WHERE \"externalId\" BETWEEN $2 AND $3",
            [marker, BulkKeys.key(1), BulkKeys.key(last)])
        guard result.affected == last else { throw BenchError("the NocoDB bulk UPDATE changed \(result.affected) of \(last) rows") }
    }

    private func ms(_ value: Double?) -> String { value.map { String(format: "%.1f ms", $0) } ?? "> window" }
}

/// A blocking call (an updateMany the server applies over seconds) on a thread of its own,
/// so the benchmark can probe while it runs.
final class Background: Sendable {
    private let failure = Mutex<String?>(nil)
    private let done = DispatchSemaphore(value: 0)

    init(_ body: @escaping @Sendable () throws -> Void) {
        Thread { [self] in
            do { try body() } catch { failure.withLock { $0 = "\(error)" } }
            done.signal()
        }.start()
    }

    func join() throws {
        done.wait()
        if let message = failure.withLock({ $0 }) { throw BenchError(message) }
    }
}
