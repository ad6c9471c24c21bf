import Foundation
import Mongo
import Postgres
import SyncCore

/// Fault run: application writers on both sides issue a seeded stream of inserts, updates and
/// deletes while the bridge is SIGKILLed, PostgreSQL and the MongoDB server are restarted and
/// resyncs run; at the end both databases must equal each other and the state the writers'
/// operations imply. Started by `Scripts/chaos.sh`, which owns the servers.
@main
struct Chaos {
    struct Settings {
        var faults = 20
        var seed: UInt64 = 1
        var pgURL: String
        var mongoURL: String
        var bridgeBinary: String
        var servicesDirectory: String
        var scriptsDirectory: String
        /// Pause between faults, so each lands on a bridge under load.
        var faultIntervalMilliseconds = 1500
        var convergeTimeoutSeconds = 180.0
        /// `triggers` or `logical` (SYNC_CAPTURE of the bridge under test).
        var capture = "triggers"
        /// Bridge processes sharing the tables through leases; a SIGKILL picks one at random.
        var instances = 1
        /// `SYNC_LEASE_SECONDS` with several instances: short, so a frozen one loses its
        /// leases within the run's pace.
        var leaseSeconds = 3
    }

    static let schema = "pnocobridgedemo"
    static let database = "chaos"

    static func main() {
        do {
            let ok = try run(settings: settings())
            exit(ok ? 0 : 1)
        } catch {
            say("chaos run failed: \(error)")
            exit(1)
        }
    }

    static func settings() throws -> Settings {
        let env = ProcessInfo.processInfo.environment
        guard let pg = env["PG_URL"], let mongo = env["MONGO_URL"], let dir = env["NB_SERVICES_DIR"] else {
            say("PG_URL, MONGO_URL and NB_SERVICES_DIR must be set: run Scripts/chaos.sh")
            exit(2)
        }
        var s = Settings(pgURL: pg, mongoURL: mongo, bridgeBinary: env["NOCOBRIDGE_BIN"] ?? ".build/debug/nocobridge",
                         servicesDirectory: dir, scriptsDirectory: env["NB_SCRIPTS_DIR"] ?? "Scripts")
        let args = CommandLine.arguments
        func value(_ flag: String) -> String? {
            args.firstIndex(of: flag).flatMap { $0 + 1 < args.count ? args[$0 + 1] : nil }
        }
        if let v = value("--faults") { guard let n = Int(v), n > 0 else { throw ChaosError("--faults takes a positive number") }; s.faults = n }
        if let v = value("--capture") {
            guard ["triggers", "logical"].contains(v) else { throw ChaosError("--capture takes triggers or logical") }
            s.capture = v
        }
        if let v = value("--instances") {
            guard let n = Int(v), (1...8).contains(n) else { throw ChaosError("--instances takes a number from 1 to 8") }
            s.instances = n
        }
        if let v = value("--seed") { guard let n = UInt64(v) else { throw ChaosError("--seed takes a number") }; s.seed = n }
        return s
    }

    static func run(settings s: Settings) throws -> Bool {
        let admin = try PostgresConnection(url: s.pgURL, applicationName: "chaos-setup")
        try admin.query("DROP DATABASE IF EXISTS \(database) WITH (FORCE)")
        try admin.query("CREATE DATABASE \(database)")
        let url = PostgresConnection.url(s.pgURL, database: database)
        try PostgresConnection(url: url).execute(script: String(contentsOfFile: "\(s.scriptsDirectory)/demo-schema.sql", encoding: .utf8))
        let mongo = try MongoClientPool(url: s.mongoURL, database: database)
        try mongo.withClient { (c: MongoClient) throws(MongoError) in _ = try c.runCommand(["dropDatabase": .int32(1)]) }

        var env = ProcessInfo.processInfo.environment
        env["PG_URL"] = url
        env["MONGO_DB"] = database
        env["SYNC_PG_SCHEMA"] = schema
        env["SYNC_TABLES"] = ChaosTables.names.joined(separator: ",")
        env["STATUS_ADDR"] = "off"
        env["LOG_LEVEL"] = env["LOG_LEVEL"] ?? "warning"
        env["SYNC_CAPTURE"] = s.capture
        if s.instances > 1 { env["SYNC_LEASE_SECONDS"] = String(s.leaseSeconds) }
        let logPath = "\(s.servicesDirectory)/chaos-bridge.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        func cli(_ arguments: [String]) throws {
            let status = try ChildProcess(s.bridgeBinary, arguments, environment: env, logFD: log.fileDescriptor).wait()
            guard status == 0 else { throw ChaosError("nocobridge \(arguments.joined(separator: " ")) exited \(status); see \(logPath)") }
        }
        try cli(s.capture == "logical" ? ["install", "--replica-identity-full"] : ["install"])
        // The script stops a bridge left behind by an interrupted run through this file.
        let pidFile = "\(s.servicesDirectory)/bridge.pid"
        var bridges: [ChildProcess] = []
        func writePIDs() throws {
            try bridges.map { "\($0.pid)\n" }.joined().write(toFile: pidFile, atomically: true, encoding: .utf8)
        }
        func startBridge() throws -> ChildProcess {
            try ChildProcess(s.bridgeBinary, ["run"], environment: env, logFD: log.fileDescriptor)
        }
        for _ in 0..<s.instances {
            bridges.append(try startBridge())
            try writePIDs()
        }

        let expected = ExpectedState()
        let nocodbWriter = WriterLoop(writer: NocoDBWriter(url: url, schema: schema),
                                      stream: OperationStream(side: "nocodb", seed: s.seed), expected: expected, pauseMicroseconds: 8000)
        let mongoWriter = WriterLoop(writer: MongoAppWriter(pool: mongo),
                                     stream: OperationStream(side: "mongo", seed: s.seed), expected: expected, pauseMicroseconds: 8000)
        let integrationWriter = WriterLoop(writer: IntegrationWriter(url: url, schema: schema),
                                           stream: OperationStream(side: "etl", seed: s.seed), expected: expected, pauseMicroseconds: 16000)
        let servers = ServerControl(scriptsDirectory: s.scriptsDirectory, servicesDirectory: s.servicesDirectory, logFD: log.fileDescriptor)
        var rng = SeededRandom(seed: s.seed)
        var injected: [Fault: Int] = [:]
        let started = Date()
        // A bridge that ends by itself (no fault of ours killed it) is a defect even when the
        // sides later converge: said, counted, and restarted as a service manager would.
        var selfExits: [String] = []
        func checkBridges(_ when: String) throws {
            for i in bridges.indices {
                guard let status = bridges[i].exited() else { continue }
                selfExits.append("exit \(status) \(when)")
                say("a bridge exited by itself with status \(status) \(when); restarting it")
                bridges[i] = try startBridge()
                try writePIDs()
            }
        }
        for (i, fault) in Fault.schedule(count: s.faults, instances: s.instances, using: &rng).enumerated() {
            usleep(UInt32(Int.random(in: s.faultIntervalMilliseconds / 2...s.faultIntervalMilliseconds * 3 / 2, using: &rng) * 1000))
            try checkBridges("before fault \(i + 1)")
            say("fault \(i + 1)/\(s.faults): \(fault.rawValue) (\(expected.operations) operations so far)")
            switch fault {
            case .killBridge:
                let victim = Int.random(in: 0..<bridges.count, using: &rng)
                bridges[victim].kill(SIGKILL)
                bridges[victim].wait()
                bridges[victim] = try startBridge()
                try writePIDs()
            case .freezeBridge:
                let victim = Int.random(in: 0..<bridges.count, using: &rng)
                bridges[victim].kill(SIGSTOP)
                usleep(UInt32((s.leaseSeconds * 1000 + 1500) * 1000))
                bridges[victim].kill(SIGCONT)
            case .restartPostgres: try servers.restartPostgres()
            case .restartMongo: try servers.restartMongo()
            case .crashMongo: try servers.restartMongo(crash: true)
            case .resync: try retrying { try cli(["resync"]) }
            case .failover: try retrying { try Failover.inject(mongo: mongo, using: &rng) }
            }
            injected[fault, default: 0] += 1
        }
        nocodbWriter.stop()
        mongoWriter.stop()
        integrationWriter.stop()
        try retrying { try Failover.end(mongo: mongo) }
        try checkBridges("after the last fault")
        let loadSeconds = Date().timeIntervalSince(started)
        say("load stopped after \(String(format: "%.1f", loadSeconds)) s; waiting for both sides to converge")

        let checker = try PostgresConnection(url: url, applicationName: "chaos-check")
        let stoppedAt = Date()
        let deadline = stoppedAt.addingTimeInterval(s.convergeTimeoutSeconds)
        var comparison = try Comparison.run(expected: expected.records, postgres: checker, schema: schema, mongo: mongo)
        while !comparison.mismatches.isEmpty && Date() < deadline {
            sleep(1)
            comparison = try Comparison.run(expected: expected.records, postgres: checker, schema: schema, mongo: mongo)
        }
        let convergeSeconds = Date().timeIntervalSince(stoppedAt)
        try checkBridges("while converging")
        for bridge in bridges { bridge.kill(SIGTERM) }
        let exitStatus = bridges.map { $0.wait() }.max() ?? 0

        let faults = Fault.allCases.map { "\($0.rawValue) ×\(injected[$0] ?? 0)" }.joined(separator: ", ")
        say("""

            CHAOS SUMMARY (seed \(s.seed), \(s.capture) capture, \(s.instances) instance\(s.instances == 1 ? "" : "s"))
              operations issued:  \(expected.operations) (retried after errors: \([nocodbWriter, mongoWriter, integrationWriter].map { $0.retries.load(ordering: .relaxed) }.reduce(0, +)))
              faults injected:    \(injected.values.reduce(0, +)) (\(faults))
              records compared:   \(comparison.records)
              mismatches:         \(comparison.mismatches.count)
              load time:          \(String(format: "%.1f", loadSeconds)) s; converged \(String(format: "%.1f", convergeSeconds)) s after the load stopped
              bridge exit on SIGTERM: \(exitStatus) (the highest of every instance's)
              bridge exits by itself: \(selfExits.isEmpty ? "none" : selfExits.joined(separator: ", "))
            """)
        for m in comparison.mismatches.prefix(20) { say("  mismatch: \(m)") }
        for (table, key) in comparison.mismatchedKeys.prefix(3) {
            say("  history of \(table) \(key):")
            for line in (try? Comparison.history(table: table, key: key, postgres: checker)) ?? ["(not readable)"] { say("    \(line)") }
        }
        return comparison.mismatches.isEmpty && exitStatus == 0 && selfExits.isEmpty
    }

    /// A resync started just as a server comes back may fail to connect; the operator would
    /// run it again. More attempts than a failover fault fails commands (at most five), so a resync that
    /// alone meets every failure of the failpoint still runs in the end.
    static func retrying(_ body: () throws -> Void) throws {
        for attempt in 1...8 {
            do { return try body() } catch where attempt < 8 { sleep(2) }
        }
    }
}

func say(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
