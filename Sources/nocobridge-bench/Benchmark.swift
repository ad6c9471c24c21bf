import Foundation

/// What one run measures and how much of it.
struct Settings: Sendable {
    enum Phase: String, CaseIterable, Sendable {
        /// Steady single-row latency with trigger capture (floor and bridge), NocoDB's INSERT.
        case steady
        /// The same with logical capture.
        case logical
        /// Raw bulk rates, bulk edits with head-of-line probes, backlogs after a restart.
        case bulk
        case resync
        /// What record history costs per batch, with and without it.
        case history
        /// 1, 2 and 3 bridges sharing six tables through leases.
        case instances
    }

    var quick = false
    var pgURL: String
    var mongoURL: String
    var bridgeBinary: String
    var jsonPath: String?
    var bridgeLogPath: String
    var bridgeLogLevel: String
    var phases = Set(Phase.allCases)

    /// Single-row changes per second in the steady runs (the 100/s).
    let rate = 100.0
    var latencyCount: Int { quick ? 300 : 2000 }
    var warmup: Int { quick ? 30 : 100 }
    /// Floor and bridge rounds of the steady runs, `latencyCount` changes split among them.
    let steadyRounds = 4
    /// How long after its send a steady-run change may still arrive.
    let steadyWindow = 30.0
    /// The bulk edit: 20,000 records, in both modes.
    let bulkEdit = 20_000
    var catchUpRecords: Int { quick ? 10_000 : 100_000 }
    /// Records in the bulk table: enough for the bulk edit and for the backlog.
    var seedRecords: Int { max(bulkEdit, catchUpRecords) }
    /// Raw upserts timed (on the first records of the seeded collection): a rate, flat in
    /// the collection's size on this server, so the quick run times a quarter of the bulk
    /// edit and the full one the bulk edit, not the whole backlog, to stay within minutes.
    var rawUpsertRecords: Int { quick ? 5_000 : bulkEdit }
    /// New documents inserted in MongoDB for the insert throughput towards NocoDB.
    var mongoInsertRecords: Int { quick ? 5_000 : 20_000 }
    var resyncRows: Int { quick ? 10_000 : 100_000 }
    /// Head-of-line probes: 50 single-row inserts at 10/s, each given 60 s to arrive.
    let probeCount = 50
    let probeRate = 10.0
    let probeWindow = 60.0

    static func parse(_ arguments: [String], environment env: [String: String]) throws -> Settings {
        guard let pg = env["PG_URL"], let mongo = env["MONGO_URL"] else {
            throw BenchError("PG_URL and MONGO_URL must be set (Scripts/bench.sh starts servers)")
        }
        var settings = Settings(pgURL: pg, mongoURL: mongo, bridgeBinary: env["NOCOBRIDGE_BIN"] ?? ".build/release/nocobridge",
                                bridgeLogPath: "",
                                bridgeLogLevel: env["BENCH_BRIDGE_LOG_LEVEL"] ?? "error")
        var i = 1
        while i < arguments.count {
            switch arguments[i] {
            case "--quick": settings.quick = true
            case "--json":
                i += 1
                guard i < arguments.count else { throw BenchError("--json needs a path") }
                settings.jsonPath = arguments[i]
            case "--phases":
                i += 1
                guard i < arguments.count else { throw BenchError("--phases needs a list") }
                settings.phases = Set(try arguments[i].split(separator: ",").map { name in
                    guard let phase = Phase(rawValue: String(name)) else {
                        throw BenchError("unknown phase \(name) (\(Phase.allCases.map(\.rawValue).joined(separator: ", ")))")
                    }
                    return phase
                })
            default:
                throw BenchError("unknown argument \(arguments[i]) (--quick, --json PATH, --phases LIST)")
            }
            i += 1
        }
        // Beside the JSON, as Scripts/bench.sh puts it; never in the working directory, which
        // for the smoke test is the checkout.
        settings.bridgeLogPath = env["BENCH_BRIDGE_LOG"]
            ?? settings.jsonPath.map { ($0.hasSuffix(".json") ? String($0.dropLast(5)) : $0) + "-bridge.log" }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("nocobridge-bench-bridge.log").path
        return settings
    }
}

/// Measures, in one run on one machine, the bridge (a child `nocobridge run`, whatever the
/// binary holds) against raw floors measured on the same servers in the same state, and
/// reports ratios beside the absolute figures, since on a shared machine absolute figures
/// drift from run to run while ratios measured back to back hold.
@main
struct Benchmark {
    static func main() {
        let children = ChildProcesses()
        let signals = interruptHandlers(children)
        defer { withExtendedLifetime(signals) {} }
        do {
            let settings = try Settings.parse(CommandLine.arguments, environment: ProcessInfo.processInfo.environment)
            let results = try run(settings, children: children)
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data = try encoder.encode(results)
            if let path = settings.jsonPath { try data.write(to: URL(fileURLWithPath: path)) }
            FileHandle.standardOutput.write(Data(Report(results).table().utf8))
        } catch {
            children.terminateAll()
            Progress.note("failed: \(error)")
            exit(1)
        }
    }

    static func run(_ settings: Settings, children: ChildProcesses) throws -> BenchResults {
        let started = Clock.micros()
        var results = BenchResults(mode: settings.quick ? "quick" : "full", started: ISO8601DateFormatter().string(from: Date()),
                                   rateOfSingleChangesPerS: settings.rate, bulkEditRecords: settings.bulkEdit,
                                   catchUpRecords: settings.catchUpRecords)
        let base = try BenchBase.create(settings: settings)
        let harness = try Harness(settings: settings, base: base, children: children)

        // Latency first, on fresh servers: SecantusDB slows as its oplog grows.
        let steady = SteadyLatency(harness: harness)
        if settings.phases.contains(.steady) {
            let outcome = try steady.run(.triggers)
            results.steady["triggers"] = outcome.mode
            results.nocodbInsert.withCaptureTriggers = outcome.nocodbInsert
            results.bridgeMemory.afterSteadyMib = outcome.bridgeMiB
        }
        if settings.phases.contains(.logical) {
            try base.cli.run(["install", "--replica-identity-full"], capture: .logical)
            let outcome = try steady.run(.logical)
            results.steady["logical"] = outcome.mode
            results.nocodbInsert.logicalCapture = outcome.nocodbInsert
            // Back to triggers: install retires the slot and resyncs what it had not delivered.
            try base.cli.run(["install"], capture: .triggers)
        }
        if settings.phases.contains(.bulk) {
            let raw = try RawBulk(harness: harness).run()
            results.rawBulk = raw
            let phases = BulkPhases(harness: harness, raw: raw)
            var bridge = try harness.startBridge(.triggers)
            try bridge.waitReady()
            try harness.barrier(check: bridge.checkRunning)
            let seed = try phases.seed(bridge)
            let inserts = try phases.mongoInserts(bridge)
            let toMongo = try phases.nocodbBulkUpdate(bridge)
            let toNocoDB = try phases.mongoUpdateMany(bridge)
            let nocodbBacklog = try phases.nocodbBacklog(stopping: bridge)
            bridge = nocodbBacklog.bridge
            let mongoBacklog = try phases.mongoBacklog(stopping: bridge)
            bridge = mongoBacklog.bridge
            results.bridgeMemory.afterCatchUpMib = bridge.currentMiB
            harness.stop(bridge)
            results.throughput = Throughput(toMongoInsert: seed, toNocodbInsert: inserts, toMongoBulkUpdate: toMongo.drain, toNocodbBulkUpdate: toNocoDB.drain,
                                            settleAfterToMongoBulkS: toMongo.settleSeconds, settleAfterToNocodbBulkS: toNocoDB.settleSeconds)
            results.headOfLine = HeadOfLine(duringNocodbBulkUpdate: toMongo.probe, duringMongoUpdateMany: toNocoDB.probe,
                                            afterRestartWithNocodbBacklog: nocodbBacklog.probe,
                                            afterRestartWithMongoBacklog: mongoBacklog.probe)
            results.catchUp = CatchUp(toMongo: nocodbBacklog.drain, toNocodb: mongoBacklog.drain)
        }
        if settings.phases.contains(.resync) {
            results.resync = try ResyncRun(harness: harness).run()
        }
        if settings.phases.contains(.history) {
            results.history = try HistoryCost(settings: settings).run()
        }
        if settings.phases.contains(.instances) {
            results.instances = try InstanceRuns(settings: settings).run()
        }
        results.bridgeMemory.peakMib = harness.bridgePeakMiB > 0 ? harness.bridgePeakMiB : nil
        harness.stopObservers()
        try base.drop()
        results.seconds = Clock.seconds(since: started)
        return results
    }

    /// SIGTERM/SIGINT stop the bridges this run started before the benchmark exits.
    private static func interruptHandlers(_ children: ChildProcesses) -> [DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                children.terminateAll()
                exit(128 + number)
            }
            source.resume()
            return source
        }
    }
}
