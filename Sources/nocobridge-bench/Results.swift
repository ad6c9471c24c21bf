import Foundation

// The figures one run produces, as written to bench-results.json (keys in snake_case). A
// figure that could not be measured (a percentile falling among changes lost beyond the
// window, a phase not run) is left out of the JSON, never replaced by a made-up number.

struct LatencySummary: Codable, Sendable {
    var count: Int
    /// Changes that did not arrive within the run's window; percentiles falling among them are null.
    var lost: Int
    var p50Ms: Double?
    var p95Ms: Double?
    var p99Ms: Double?
    var maxMs: Double?
}

/// Where the floor's time goes (medians, ms): from the send to the relay holding the change
/// (source write, commit and capture: NOTIFY, logical decoding or the change stream), the
/// relay's read and write until acknowledged, and from there to the observer.
struct FloorHops: Codable, Sendable {
    var captureP50Ms: Double?
    var relayWriteP50Ms: Double?
    var observeP50Ms: Double?
}

extension FloorHops {
    /// Each hop's median over the steady rounds' medians.
    init(medianOf rounds: [FloorHops]) {
        func median(_ values: [Double?]) -> Double? {
            let known = values.compactMap { $0 }.sorted()
            guard !known.isEmpty else { return nil }
            return (known[(known.count - 1) / 2] + known[known.count / 2]) / 2
        }
        self.init(captureP50Ms: median(rounds.map(\.captureP50Ms)), relayWriteP50Ms: median(rounds.map(\.relayWriteP50Ms)),
                  observeP50Ms: median(rounds.map(\.observeP50Ms)))
    }
}

/// One direction at 100 single-row changes/s: the raw relay (floor) and the bridge, measured
/// in alternating rounds on the same servers in the same state, samples pooled.
struct SteadyDirection: Codable, Sendable {
    var floor: LatencySummary
    var floorHops: FloorHops
    var bridge: LatencySummary
    /// bridge p50 / floor p50 (the goal: ≤ 1.5).
    var ratioP50: Double?
    var ratioP99: Double?
    /// How far the load generator fell behind its schedule (a blocked source write), ms.
    var floorSendLagMaxMs: Double
    var bridgeSendLagMaxMs: Double
    /// Floor and bridge rounds each (`SteadyLatency`), and the spread of the p50 ratio
    /// between a bridge round and the floor round of the same number.
    var rounds: Int
    var ratioP50Min: Double?
    var ratioP50Max: Double?
}

struct SteadyMode: Codable, Sendable {
    var toMongo: SteadyDirection
    var toNocodb: SteadyDirection
}

/// Single-row changes to one table made while another table's bulk is being applied.
struct HeadOfLineProbe: Codable, Sendable {
    /// What the bridge was busy with.
    var during: String
    /// Latency of the probes, those not arrived within `window_s` counted as lost.
    var probes: LatencySummary
    /// The same once everything had crossed (no window): how late the lost ones came.
    var eventual: LatencySummary
    var sent: Int
    /// Probes sent before the last record of the bulk arrived on the other side: only these
    /// measure head-of-line blocking (the others met an idle bridge).
    var sentWhileBulkInFlight: Int
    var arrivedWithinWindow: Int
    var windowS: Double
    /// Restart runs: seconds from starting the bridge to its `/readyz`; the probes start then.
    var bridgeReadyS: Double?
}

/// A bulk edit (or a backlog) of `changes` records, from the bulk's first write (or the
/// bridge's start) to the last record seen on the other side, against the raw rate of the
/// same operation measured in the same run.
struct BulkDrain: Codable, Sendable {
    var changes: Int
    var seconds: Double
    var perS: Double
    var rawPerS: Double?
    var ratio: Double?
    /// Which raw figure `raw_per_s` is.
    var rawIs: String
    /// The destination was queried after the drain and held every change.
    var verified: Bool

    init(changes: Int, seconds: Double, raw: Double?, rawIs: String, verified: Bool) {
        self.changes = changes
        self.seconds = seconds
        perS = Double(changes) / seconds
        rawPerS = raw
        ratio = raw.map { Double(changes) / seconds / $0 }
        self.rawIs = rawIs
        self.verified = verified
    }
}

/// What the servers do on their own through the same C libraries, in the same run, against
/// tables and collections indexed like the bridge's.
struct RawBulkRates: Codable, Sendable {
    /// Records in the collection (and rows in the table).
    var records: Int
    /// MongoDB upserts timed, on the first records of the collection.
    var upsertsTimed: Int
    /// MongoDB unordered bulk insert, 1,000 a batch, bridge-like change stream open.
    var mongoInsertPerS: Double
    /// Those inserts until the bridge-like stream had read them all (reference for inserts
    /// towards NocoDB, with PostgreSQL's insert rate when that is lower).
    var streamInsertDeliveryPerS: Double
    /// MongoDB unordered bulk upserts by externalId ($set, upsert), 1,000 a batch, stream open:
    /// the reference for bulk edits and catch-up towards MongoDB.
    var mongoUpsertPerS: Double
    /// The same without any change stream but the observer's (information).
    var mongoUpsertNoStreamPerS: Double
    /// updateMany applied and its events read by a bridge-like stream, live (reference for a
    /// bulk edit towards NocoDB, with the PostgreSQL upsert rate when that is lower).
    var streamDeliveryPerS: Double
    var updateManySeconds: Double
    /// The same events read back after the fact by a stream resuming before them (reference
    /// for catch-up towards NocoDB).
    var streamCatchUpPerS: Double
    /// PostgreSQL multi-row INSERT, 1,000 rows a statement.
    var pgInsertRowsPerS: Double
    /// PostgreSQL INSERT … ON CONFLICT ("externalId") DO UPDATE, 1,000 rows a statement.
    var pgUpsertRowsPerS: Double
}

struct NocoDBInsertLatency: Codable, Sendable {
    /// NocoDB's own single-row INSERT with the bridge's capture triggers attached.
    var withCaptureTriggers: LatencySummary?
    /// The same under logical capture (only the key trigger left).
    var logicalCapture: LatencySummary?
}

struct Throughput: Codable, Sendable {
    /// New rows inserted in NocoDB (the seed of the bulk table), 5,000 a statement.
    var toMongoInsert: BulkDrain
    /// New documents inserted in MongoDB, 1,000 a bulk write.
    var toNocodbInsert: BulkDrain
    /// A 20,000-row UPDATE in NocoDB while the bridge runs.
    var toMongoBulkUpdate: BulkDrain
    /// A 20,000-document updateMany in MongoDB while the bridge runs.
    var toNocodbBulkUpdate: BulkDrain
    /// After each bulk: seconds until a sentinel per table crossed each way (echoes drained).
    var settleAfterToMongoBulkS: Double
    var settleAfterToNocodbBulkS: Double
}

struct HeadOfLine: Codable, Sendable {
    var duringNocodbBulkUpdate: HeadOfLineProbe
    var duringMongoUpdateMany: HeadOfLineProbe
    var afterRestartWithNocodbBacklog: HeadOfLineProbe
    var afterRestartWithMongoBacklog: HeadOfLineProbe
}

struct CatchUp: Codable, Sendable {
    var toMongo: BulkDrain
    var toNocodb: BulkDrain
}

struct BridgeMemory: Codable, Sendable {
    /// The last steady round's bridge (each round starts its own).
    var afterSteadyMib: Double?
    var afterCatchUpMib: Double?
    var peakMib: Double?
}

struct ResyncResult: Codable, Sendable {
    var rowsPerSide: Int
    var seconds: Double
    var keysPerS: Double
    var rawScanPgRowsPerS: Double
    var rawScanMongoDocsPerS: Double
    var ratioToSlowerScan: Double
    var peakRssMib: Double?
    var exitStatus: Int32
}

struct BenchResults: Codable, Sendable {
    var mode: String
    var started: String
    var rateOfSingleChangesPerS: Double
    var bulkEditRecords: Int
    var catchUpRecords: Int
    var steady: [String: SteadyMode] = [:]
    var nocodbInsert = NocoDBInsertLatency()
    var rawBulk: RawBulkRates?
    var throughput: Throughput?
    var headOfLine: HeadOfLine?
    var catchUp: CatchUp?
    var bridgeMemory = BridgeMemory()
    var resync: ResyncResult?
    var history: HistoryCostResult?
    var instances: InstancesResult?
    var seconds: Double?
}
