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
    let settings: Benchmark.Settings
    static let schema = BridgeRuns.schema
    static let tables = ["waiter_ops", "waiter_ops_2", "waiter_ops_3", "waiter_ops_4", "chef_orders", "cashier_txns"]
    var rowsPerTable: Int { settings.quick ? 2000 : 10000 }

    func run() throws -> [String: Any] {
        let admin = try PostgresConnection(url: settings.pgURL)
        try admin.query("DROP DATABASE IF EXISTS bench_instances WITH (FORCE)")
        try admin.query("CREATE DATABASE bench_instances")
        let url = BenchURL.database(settings.pgURL, "bench_instances")
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

        var out: [String: Any] = ["tables": Self.tables.count, "rows_per_table": rowsPerTable]
        var round = 0
        for count in 1...3 {
            round += 1
            var children: [(Child, String)] = []
            for _ in 0..<count {
                let before = try liveInstances(pg)
                let child = try Child(binary: settings.bridgeBinary, environment: env)
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
            let cpu0 = children.map { cpuSeconds(pid: $0.0.pid) ?? .nan }
            let t0 = nowMicros()
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
            let seconds = (nowMicros() - t0) / 1e6
            let total = Double(Self.tables.count * rowsPerTable)
            var instances: [[String: Any]] = []
            for (i, (child, id)) in children.enumerated() {
                let units = held.filter { $0.value == id }.map(\.key).sorted()
                let cpu = (cpuSeconds(pid: child.pid) ?? .nan) - cpu0[i]
                instances.append(["instance": id, "tables": units.count,
                                  "share": Double(units.count) / Double(Self.tables.count),
                                  "changes_per_s": Double(units.count * rowsPerTable) / seconds,
                                  "cpu_seconds": cpu])
            }
            out["instances_\(count)"] = ["seconds": seconds, "changes_per_s": total / seconds, "per_instance": instances]
            log("\(count) instance(s): \(Int(total)) changes in \(String(format: "%.1f", seconds)) s = \(Int(total / seconds))/s")
            for (child, _) in children { child.terminate() }
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

extension Report {
    static func instances(_ r: [String: Any]) -> String {
        var lines = ["", "SEVERAL INSTANCES (\(r["tables"] ?? "?") tables, \(r["rows_per_table"] ?? "?") NocoDB inserts each, drained to MongoDB)"]
        for count in 1...3 {
            guard let run = r["instances_\(count)"] as? [String: Any] else { continue }
            let per = (run["per_instance"] as? [[String: Any]] ?? []).map { i in
                "\(i["tables"] ?? 0) tables (\(String(format: "%.0f%%", (i["share"] as? Double ?? 0) * 100)), cpu \(String(format: "%.1f", i["cpu_seconds"] as? Double ?? .nan)) s)"
            }.joined(separator: ", ")
            lines.append("  \(count) instance\(count == 1 ? " " : "s"): \(num(run["changes_per_s"])) changes/s in \(String(format: "%.1f", run["seconds"] as? Double ?? .nan)) s; \(per)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
