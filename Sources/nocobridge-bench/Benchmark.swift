import Bridge
import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

/// Measures, in one run on one machine: the databases' raw speeds through the same C
/// libraries, then the bridge (a child `nocobridge run`) on the same servers, and reports
/// ratios, since absolute figures on a shared machine drift and ratios hold.
@main
struct Benchmark {
    struct Settings {
        var quick = false
        var pgURL: String
        var mongoURL: String
        var bridgeBinary: String
        var jsonPath: String?
        var rate = 200.0
        var latencyCount: Int { quick ? 300 : 2000 }
        var warmup: Int { quick ? 30 : 100 }
        var throughputRows: Int { quick ? 5000 : 20000 }
        var catchUpRows: Int { quick ? 10000 : 100000 }
        var resyncRows: Int { quick ? 10000 : 100000 }
    }

    static func main() {
        do {
            try runAll()
        } catch {
            log("failed: \(error)")
            exit(1)
        }
    }

    static func runAll() throws {
        let env = ProcessInfo.processInfo.environment
        let args = CommandLine.arguments
        guard let pg = env["PG_URL"], let mongo = env["MONGO_URL"] else {
            log("PG_URL and MONGO_URL must be set (Scripts/bench.sh starts servers)")
            exit(2)
        }
        var settings = Settings(pgURL: pg, mongoURL: mongo, bridgeBinary: env["NOCOBRIDGE_BIN"] ?? ".build/release/nocobridge")
        settings.quick = args.contains("--quick")
        if let i = args.firstIndex(of: "--json"), i + 1 < args.count { settings.jsonPath = args[i + 1] }
        var results: [String: Any] = ["mode": settings.quick ? "quick" : "full", "started": ISO8601DateFormatter().string(from: Date())]
        if args.contains("--instances-only") {
            // Only the scale-out phase: 1, 2 and 3 bridges sharing the tables.
            let instances = try InstanceRuns(settings: settings).run()
            results["instances"] = instances
            let data = try JSONSerialization.data(withJSONObject: jsonSafe(results), options: [.prettyPrinted, .sortedKeys])
            if let path = settings.jsonPath { try data.write(to: URL(fileURLWithPath: path)) }
            FileHandle.standardOutput.write(Data(Report.instances(instances).utf8))
            return
        }
        let raw = try RawBaselines(settings: settings).run()
        results["raw"] = raw
        var bridge = try BridgeRuns(settings: settings, raw: raw).run()
        bridge["history"] = try HistoryCost(settings: settings).run()
        results["bridge"] = bridge
        let instances = try InstanceRuns(settings: settings).run()
        results["instances"] = instances
        let data = try JSONSerialization.data(withJSONObject: jsonSafe(results), options: [.prettyPrinted, .sortedKeys])
        if let path = settings.jsonPath { try data.write(to: URL(fileURLWithPath: path)) }
        FileHandle.standardOutput.write(Data((Report.table(raw: raw, bridge: bridge) + Report.instances(instances)).utf8))
    }
}

/// JSON has no NaN or infinity: a figure that could not be measured is written as null.
func jsonSafe(_ value: Any) -> Any {
    switch value {
    case let d as Double: return d.isFinite ? d : NSNull()
    case let dict as [String: Any]: return dict.mapValues(jsonSafe)
    case let array as [Any]: return array.map(jsonSafe)
    default: return value
    }
}

enum Report {
    static func ms(_ us: Any?) -> String {
        guard let v = us as? Double, v.isFinite else { return "-" }
        return String(format: "%.2f", v / 1000)
    }

    static func num(_ v: Any?) -> String {
        guard let v = v as? Double, v.isFinite else { return "-" }
        return String(format: "%.0f", v)
    }

    static func table(raw: [String: Any], bridge: [String: Any]) -> String {
        var lines: [String] = ["", "RAW BASELINES (same run)"]
        for (name, key) in [("PG single-row INSERT commit", "pg_insert_latency"), ("PG NOTIFY delivery", "pg_notify_latency"),
                            ("Mongo insertOne", "mongo_insert_latency"), ("Mongo change stream delivery", "mongo_change_stream_latency")] {
            let s = raw[key] as? [String: Double] ?? [:]
            lines.append("  \(name.padding(toLength: 32, withPad: " ", startingAt: 0)) p50 \(ms(s["p50_us"])) ms  p99 \(ms(s["p99_us"])) ms")
        }
        lines.append("  PG multi-row INSERT (1000/stmt)   \(num(raw["pg_bulk_rows_per_s"])) rows/s")
        lines.append("  Mongo bulk insert (1000/batch)    \(num(raw["mongo_bulk_docs_per_s"])) docs/s")
        lines.append("  Mongo bulk upsert by key (1000)   \(num(raw["mongo_bulk_upserts_per_s"])) docs/s")
        lines.append("")
        lines.append("BRIDGE")
        for dir in ["to_mongo", "to_nocodb"] {
            let s = bridge["\(dir)_latency"] as? [String: Double] ?? [:]
            lines.append("  \(dir) latency @\(num(bridge["rate_per_s"]))/s: p50 \(ms(s["p50_us"])) ms  p95 \(ms(s["p95_us"])) ms  p99 \(ms(s["p99_us"])) ms  max \(ms(s["max_us"])) ms  (n=\(num(s["count"])))")
            lines.append("  \(dir) overhead over raw write+notification (p50): \(ms(bridge["\(dir)_overhead_p50_us"])) ms")
            lines.append("  \(dir) throughput: \(num(bridge["\(dir)_throughput_per_s"])) changes/s = \(String(format: "%.0f%%", (bridge["\(dir)_throughput_ratio"] as? Double ?? 0) * 100)) of the destination's raw bulk rate")
        }
        let withT = bridge["nocodb_insert_with_triggers"] as? [String: Double] ?? [:]
        let withoutT = bridge["nocodb_insert_without_triggers"] as? [String: Double] ?? [:]
        let logical = bridge["logical_to_mongo_latency"] as? [String: Double] ?? [:]
        lines.append("  NocoDB single-row INSERT: with capture triggers p50 \(ms(withT["p50_us"])) ms p99 \(ms(withT["p99_us"])) ms; without (logical capture) p50 \(ms(withoutT["p50_us"])) ms p99 \(ms(withoutT["p99_us"])) ms")
        lines.append("  logical capture to_mongo latency: p50 \(ms(logical["p50_us"])) ms  p95 \(ms(logical["p95_us"])) ms  p99 \(ms(logical["p99_us"])) ms  max \(ms(logical["max_us"])) ms; throughput \(num(bridge["logical_to_mongo_throughput_per_s"])) changes/s = \(String(format: "%.0f%%", (bridge["logical_to_mongo_throughput_ratio"] as? Double ?? 0) * 100)) of raw bulk")
        lines.append("  catch-up: \(num(bridge["catch_up_changes"])) changes drained in \(String(format: "%.1f", bridge["catch_up_seconds"] as? Double ?? .nan)) s = \(num(bridge["catch_up_per_s"])) /s (\(String(format: "%.0f%%", (bridge["catch_up_ratio"] as? Double ?? 0) * 100)) of raw bulk insert)")
        lines.append("  bridge peak RSS: \(String(format: "%.1f", bridge["peak_rss_mib"] as? Double ?? .nan)) MiB (after latency runs \(String(format: "%.1f", bridge["rss_after_latency_mib"] as? Double ?? .nan)) MiB, after catch-up \(String(format: "%.1f", bridge["rss_after_catch_up_mib"] as? Double ?? .nan)) MiB)")
        let history = bridge["history"] as? [String: Any] ?? [:]
        for size in [1, 100, 1000] {
            let h = history["batch_\(size)"] as? [String: Double] ?? [:]
            lines.append("  record history, batches of \(size): PostgreSQL writes p50 \(ms(h["pg_write_p50_us_on"])) ms with, \(ms(h["pg_write_p50_us_off"])) ms without; whole batch p50 \(ms(h["batch_p50_us_on"])) / \(ms(h["batch_p50_us_off"])) ms")
        }
        lines.append("  record history: \(num(history["bytes_per_entry_with_indexes"])) bytes per entry with indexes (\(num(history["bytes_per_entry_heap"])) in the table)")
        lines.append("  resync: \(num(bridge["resync_rows_per_side"])) rows per side, 10% different: \(String(format: "%.1f", bridge["resync_seconds"] as? Double ?? .nan)) s = \(num(bridge["resync_keys_per_s"])) keys/s = \(String(format: "%.0f%%", (bridge["resync_ratio_to_slower_scan"] as? Double ?? 0) * 100)) of the slower raw sorted scan (PostgreSQL \(num(bridge["raw_scan_pg_rows_per_s"])) rows/s, MongoDB \(num(bridge["raw_scan_mongo_docs_per_s"])) docs/s); peak RSS \(String(format: "%.1f", bridge["resync_peak_rss_mib"] as? Double ?? .nan)) MiB")
        return lines.joined(separator: "\n") + "\n"
    }
}
