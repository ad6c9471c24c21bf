import Foundation
import Mongo
import Postgres
import Synchronization
import SyncCore

/// What every phase uses: the base, the observers (running for the whole run, so they cost
/// the same in every measurement), the benchmark's NocoDB connection, and the way single
/// stamped changes are written on either side.
final class Harness {
    let settings: Settings
    let base: BenchBase
    let arrivals = Arrivals()
    let source: PostgresConnection
    private let mongoObserver: MongoObserver
    private let postgresObserver: PostgresObserver
    private let observerPool: MongoClientPool
    /// Highest VmHWM of any bridge process this run.
    private(set) var bridgePeakMiB: Double = 0
    /// Bridges still running, stopped when the benchmark fails or is interrupted: a child
    /// left behind would keep syncing (and reconnecting) after the benchmark is gone.
    let children: ChildProcesses

    init(settings: Settings, base: BenchBase, children: ChildProcesses) throws {
        self.settings = settings
        self.base = base
        self.children = children
        source = try base.connect()
        observerPool = try MongoClientPool(url: base.mongoURL, database: BenchBase.database, instance: "bench-observer")
        mongoObserver = MongoObserver(pool: observerPool, collections: BenchBase.observedCollections, arrivals: arrivals)
        postgresObserver = PostgresObserver(url: base.url, arrivals: arrivals)
        try mongoObserver.start()
        try postgresObserver.start()
    }

    func stopObservers() {
        mongoObserver.stop()
        postgresObserver.stop()
    }

    func checkObservers() throws {
        try mongoObserver.check()
        try postgresObserver.check()
    }

    func collector(window: Double, also check: @escaping () throws -> Void = {}) -> LatencyCollector {
        LatencyCollector(arrivals: arrivals, window: window) { [self] in
            try checkObservers()
            try check()
        }
    }

    func startBridge(_ capture: NocoBridgeCLI.Capture) throws -> BridgeProcess {
        let bridge = try base.cli.startBridge(capture: capture)
        children.add(bridge.process.processIdentifier)
        return bridge
    }

    func stop(_ bridge: BridgeProcess) {
        bridge.stop()
        children.remove(bridge.process.processIdentifier)
        bridgePeakMiB = max(bridgePeakMiB, bridge.peakMiB)
    }

    // MARK: single stamped changes

    /// A new row in NocoDB's probe table, as NocoDB inserts it (no key: the bridge makes one).
    func insertProbeRow(stamp: String, number: Int, table: String = BenchBase.probeTable, key: String? = nil) throws {
        if let key {
            try source.query("INSERT INTO \(BenchBase.quoted(table)) (\"externalId\", \"table_no\", \"notes\") VALUES ($1, $2, $3)",
                             [key, String(number), stamp])
        } else {
            try source.query("INSERT INTO \(BenchBase.quoted(table)) (\"table_no\", \"notes\") VALUES ($1, $2)", [String(number), stamp])
        }
    }

    /// A new document in MongoDB's probe collection, as an application inserts it.
    func insertProbeDocument(stamp: String, number: Int, key: String, collection: String = BenchBase.probeTable) throws {
        try base.mongo.withClient { (c: MongoClient) throws(MongoError) in
            try c.insertOne([RowMapper.keyField: .string(key), "table_no": .int64(Int64(number)), "notes": .string(stamp)],
                            collection: collection)
        }
    }

    /// One probe through the bridge's tables, made on `direction`'s source side.
    func sendProbe(_ direction: Direction, stamp: String, number: Int, key: String) throws {
        switch direction {
        case .toMongo: try insertProbeRow(stamp: stamp, number: number)
        case .toNocodb: try insertProbeDocument(stamp: stamp, number: number, key: key)
        }
    }

    /// Waits until a sentinel written to each bridged table on each side has crossed: by then
    /// the bridge has worked off everything queued before it in every table (its echoes
    /// included, for a bridge that keeps one order per table). Returns the seconds it took.
    @discardableResult
    func barrier(check: () throws -> Void = {}, timeout: Double = 1800) throws -> Double {
        let label = "bar-\(Int(Clock.micros()))"
        let start = Clock.micros()
        var stamps: [String] = []
        for direction in Direction.allCases {
            let probe = direction.stamp(label + "-p"), bulk = direction.stamp(label + "-b")
            let probeKey = "zbar-\(label)-\(direction.rawValue)-p", bulkKey = "zbar-\(label)-\(direction.rawValue)-b"
            switch direction {
            case .toMongo:
                try insertProbeRow(stamp: probe, number: 0)
                try source.query("INSERT INTO \(BenchBase.quoted(BenchBase.bulkTable)) (\"externalId\", \"currency\", \"method\") VALUES ($1, 'EUR', $2)",
                                 [bulkKey, bulk])
            case .toNocodb:
                try insertProbeDocument(stamp: probe, number: 0, key: probeKey)
                try base.mongo.withClient { (c: MongoClient) throws(MongoError) in
                    try c.insertOne([RowMapper.keyField: .string(bulkKey), "currency": .string("EUR"), "method": .string(bulk)],
                                    collection: BenchBase.bulkTable)
                }
            }
            stamps += [probe, bulk]
        }
        try Clock.wait(timeout: timeout, every: 0.005, "the barrier's sentinels") {
            try checkObservers()
            try check()
            return stamps.allSatisfy { arrivals.arrival(of: $0) != nil }
        }
        return Clock.seconds(since: start)
    }

    /// Waits until `expected` records carrying `marker` arrived; returns the seconds from
    /// `start` to the last one. Gives up only when nothing new arrived for `stallTimeout` s.
    func waitForMarker(_ marker: String, expected: Int, since start: Double, check: () throws -> Void = {},
                       stallTimeout: Double = 180) throws -> Double {
        var last = (count: -1, at: Clock.micros())
        while true {
            try checkObservers()
            try check()
            let progress = arrivals.progress(of: marker)
            if progress.count >= expected { return (progress.lastMicros - start) / 1e6 }
            if progress.count != last.count {
                last = (progress.count, Clock.micros())
            } else if Clock.seconds(since: last.at) > stallTimeout {
                throw BenchError("\(marker): \(progress.count) of \(expected) records arrived, none for \(Int(stallTimeout)) s")
            }
            Clock.sleep(seconds: 0.01)
        }
    }

    // MARK: verification

    func mongoCount(method: String) throws -> Int {
        try base.mongo.withClient { (c: MongoClient) throws(MongoError) in
            try c.count(["method": .string(method)], collection: BenchBase.bulkTable)
        }
    }

    func nocodbCount(method: String) throws -> Int {
        let rows = try source.query("SELECT count(*) FROM \(BenchBase.quoted(BenchBase.bulkTable)) WHERE \"method\" = $1", [method])
        return Int(rows.rows.first?.first.flatMap { $0 } ?? "0") ?? 0
    }
}

/// The child processes the benchmark started and has not stopped yet, by PID.
final class ChildProcesses: Sendable {
    private let pids = Mutex<Set<Int32>>([])

    func add(_ pid: Int32) { pids.withLock { _ = $0.insert(pid) } }
    func remove(_ pid: Int32) { pids.withLock { _ = $0.remove(pid) } }

    /// SIGTERM to each, then waits up to 15 s for them to exit (the bridge finishes its batch).
    func terminateAll() {
        let running = pids.withLock { p in
            defer { p.removeAll() }
            return p
        }
        for pid in running { kill(pid, SIGTERM) }
        let deadline = Clock.micros() + 15e6
        for pid in running {
            var status: Int32 = 0
            while waitpid(pid, &status, WNOHANG) == 0 && Clock.micros() < deadline { usleep(50_000) }
        }
    }
}

/// Keys of the bulk table: `c0000001` … in both databases, so a range of records is the same
/// range on both sides (and a key range is an index range scan in MongoDB).
enum BulkKeys {
    static func key(_ n: Int, prefix: String = "c") -> String {
        let digits = String(n)
        return prefix + String(repeating: "0", count: max(0, 7 - digits.count)) + digits
    }

    /// SQL for the same key, from a generate_series value `g`.
    static let sql = "'c' || lpad(g::text, 7, '0')"
}
