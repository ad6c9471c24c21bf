import Bridge
import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

/// Several bridges sharing the tables through leases: the same backlog of NocoDB inserts
/// spread over six tables is drained by 1, 2 and 3 `nocobridge run` processes. Reports the
/// total rate and each instance's share (the rows of the tables it held, and the CPU time it
/// used), which on a machine with few cores shows what limits scaling out: the processes
/// share the cores with PostgreSQL and MongoDB.
struct InstanceRuns {
    let settings: Settings
    static let schema = BenchBase.schema
    static let tables = ["waiter_ops", "waiter_ops_2", "waiter_ops_3", "waiter_ops_4", "chef_orders", "cashier_txns"]
    var rowsPerTable: Int { settings.quick ? 2000 : 10000 }

    func run() throws -> InstancesResult {
        let admin = try PostgresConnection(url: settings.pgURL)
        try admin.query("DROP DATABASE IF EXISTS bench_instances WITH (FORCE)")
        try admin.query("CREATE DATABASE bench_instances")
        let url = PostgresConnection.url(settings.pgURL, database: "bench_instances")
        let pg = try PostgresConnection(url: url)
        try pg.execute(script: try String(contentsOfFile: "Scripts/demo-schema.sql", encoding: .utf8))
        let q = PostgresConnection.quoteIdentifier(Self.schema)
        for copy in Self.tables where copy.hasPrefix("waiter_ops_") {
            try pg.query("CREATE TABLE \(q).\(PostgresConnection.quoteIdentifier(copy)) (LIKE \(q).\"waiter_ops\" INCLUDING ALL)")
        }
        let mongo = try MongoClientPool(url: settings.mongoURL, database: "bench_instances")
        try mongo.withClient { (c: MongoClient) throws(MongoError) in _ = try c.runCommand(["dropDatabase": .int32(1)]) }
        var config = BridgeConfiguration(postgresURL: url, mongoURL: settings.mongoURL, mongoDatabase: "bench_instances",
                                         tables: Self.tables.map { TableMapping(schema: Self.schema, table: $0, collection: $0) })
        config.batchSize = 1000
        var quiet = Logger(label: "bench")
        quiet.logLevel = .error
        try Installer(configuration: config, logger: quiet).install()
        var env = ProcessInfo.processInfo.environment
        env["PG_URL"] = url
        env["MONGO_DB"] = "bench_instances"
        env["SYNC_PG_SCHEMA"] = Self.schema
        env["SYNC_TABLES"] = Self.tables.joined(separator: ",")
        env["LOG_LEVEL"] = "error"
        env["STATUS_ADDR"] = "off"

        var out = InstancesResult(tables: Self.tables.count, rowsPerTable: rowsPerTable)
        var round = 0
        for count in 1...3 {
            round += 1
            var children: [(Process, String)] = []
            for _ in 0..<count {
                let before = try liveInstances(pg)
                let child = Process()
                child.executableURL = URL(fileURLWithPath: settings.bridgeBinary)
                child.arguments = ["run"]
                child.environment = env
                child.standardOutput = FileHandle.nullDevice
                try child.run()
                var id = ""
                try waitUntil(seconds: 60) {
                    id = try liveInstances(pg).subtracting(before).first ?? ""
                    return !id.isEmpty
                }
                children.append((child, id))
            }
            // Wait until the tables are spread evenly, then stop NocoDB's writes from racing it.
            try waitUntil(seconds: 60) {
                let held = try holders(pg)
                let counts = Dictionary(grouping: held.values, by: { $0 }).mapValues(\.count)
                return held.count == Self.tables.count && counts.count == count
                    && counts.values.allSatisfy { $0 == Self.tables.count / count || $0 == Self.tables.count / count + 1 }
            }
            let held = try holders(pg)
            let cpu0 = children.map { cpuSeconds(pid: $0.0.processIdentifier) ?? .nan }
            let t0 = Clock.micros()
            for table in Self.tables {
                let t = "\(q).\(PostgresConnection.quoteIdentifier(table))"
                switch table {
                case "chef_orders":
                    try pg.query("INSERT INTO \(t) (\"externalId\", status, items) SELECT 'r\(round)-' || g, 'new', '[]' FROM generate_series(1, \(rowsPerTable)) g")
                case "cashier_txns":
                    try pg.query("INSERT INTO \(t) (\"externalId\", amount, currency) SELECT 'r\(round)-' || g, g * 0.01, 'EUR' FROM generate_series(1, \(rowsPerTable)) g")
                default:
                    try pg.query("INSERT INTO \(t) (\"externalId\", table_no, notes) SELECT 'r\(round)-' || g, g, 'bench' FROM generate_series(1, \(rowsPerTable)) g")
                }
            }
            try waitUntil(seconds: 600) {
                Int(try pg.query("SELECT count(*) FROM nocobridge.changelog").rows[0][0] ?? "1") == 0
            }
            let seconds = Clock.seconds(since: t0)
            let total = Double(Self.tables.count * rowsPerTable)
            var instances: [InstancesResult.Share] = []
            for (i, (child, id)) in children.enumerated() {
                let units = held.filter { $0.value == id }.map(\.key).sorted()
                let cpu = cpuSeconds(pid: child.processIdentifier).map { $0 - cpu0[i] }
                instances.append(.init(instance: id, tables: units.count, share: Double(units.count) / Double(Self.tables.count),
                                       changesPerS: Double(units.count * rowsPerTable) / seconds, cpuSeconds: cpu))
            }
            out.runs.append(.init(instances: count, seconds: seconds, changesPerS: total / seconds, perInstance: instances))
            Progress.note("\(count) instance(s): \(Int(total)) changes in \(String(format: "%.1f", seconds)) s = \(Int(total / seconds))/s")
            for (child, _) in children { child.terminate(); child.waitUntilExit() }
        }
        return out
    }

    private func liveInstances(_ pg: PostgresConnection) throws -> Set<String> {
        Set(try pg.query("SELECT id FROM nocobridge.instances WHERE expires_at > now()").rows.compactMap { $0[0] })
    }

    private func holders(_ pg: PostgresConnection) throws -> [String: String] {
        var out: [String: String] = [:]
        for r in try pg.query("SELECT unit, holder FROM nocobridge.leases WHERE holder IS NOT NULL AND expires_at > now()").rows {
            if let u = r[0], let h = r[1] { out[u] = h }
        }
        return out
    }

    private func waitUntil(seconds: Double, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return }
            usleep(100_000)
        }
        throw BenchError("timed out after \(seconds) s")
    }

    /// User plus system CPU time of a process, from /proc (Linux).
    private func cpuSeconds(pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14, stime 15 (1-based) → 11 and 12 here.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// 1, 2 and 3 bridges draining the same backlog: the total rate and each one's share.
struct InstancesResult: Codable, Sendable {
    struct Share: Codable, Sendable {
        var instance: String
        var tables: Int
        var share: Double
        var changesPerS: Double
        /// CPU time the process used during the drain (user + system).
        var cpuSeconds: Double?
    }

    struct Run: Codable, Sendable {
        var instances: Int
        var seconds: Double
        var changesPerS: Double
        var perInstance: [Share]
    }

    var tables: Int
    var rowsPerTable: Int
    var runs: [Run] = []
}
