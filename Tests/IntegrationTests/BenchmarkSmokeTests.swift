import Foundation
import Testing

/// `nocobridge-bench --quick` must finish and write valid JSON with every figure present.
/// No timing assertions: speed goals are checked by reading the benchmark's ratios.
@Suite struct BenchmarkSmokeTests {
    @Test func quickBenchmarkProducesValidJSON() throws {
        let servers = try TestServers.fromEnvironment()
        let root = packageRoot()
        let bin = try nocobridgeBinary()
        let bench = URL(fileURLWithPath: bin).deletingLastPathComponent().appendingPathComponent("nocobridge-bench")
        let json = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(randomSuffix()).json")
        defer { try? FileManager.default.removeItem(at: json) }
        let process = Process()
        process.executableURL = bench
        process.arguments = ["--quick", "--json", json.path]
        process.currentDirectoryURL = root
        var env = ProcessInfo.processInfo.environment
        env["PG_URL"] = servers.adminURL
        env["MONGO_URL"] = servers.mongoURL
        env["NOCOBRIDGE_BIN"] = bin
        process.environment = env
        let output = Pipe()
        process.standardOutput = output
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(randomSuffix()).err")
        FileManager.default.createFile(atPath: errors.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errors) }
        process.standardError = try FileHandle(forWritingTo: errors)
        try process.run()
        let table = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let stderr = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
        #expect(process.terminationStatus == 0, "bench stderr: \(stderr.suffix(2000))")
        #expect(table.contains("RAW BASELINES") && table.contains("to_mongo latency"))
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as? [String: Any]
        let raw = try #require(object?["raw"] as? [String: Any])
        let bridge = try #require(object?["bridge"] as? [String: Any])
        for key in ["pg_insert_latency", "pg_notify_latency", "mongo_insert_latency", "mongo_change_stream_latency",
                    "pg_bulk_rows_per_s", "mongo_bulk_docs_per_s"] {
            #expect(raw[key] != nil, "raw.\(key) missing")
        }
        for key in ["to_mongo_latency", "to_nocodb_latency", "to_mongo_throughput_per_s", "to_nocodb_throughput_per_s",
                    "catch_up_seconds", "peak_rss_mib"] {
            #expect(bridge[key] != nil, "bridge.\(key) missing")
        }
        let history = try #require(bridge["history"] as? [String: Any])
        for size in [1, 100, 1000] {
            let h = try #require(history["batch_\(size)"] as? [String: Double], "history.batch_\(size) missing")
            #expect((h["pg_write_p50_us_on"] ?? 0) > 0 && (h["pg_write_p50_us_off"] ?? 0) > 0)
        }
        #expect((history["bytes_per_entry_with_indexes"] as? Double ?? 0) > 0)
        #expect(table.contains("record history, batches of 1000"))
        let latency = try #require(bridge["to_mongo_latency"] as? [String: Double])
        #expect(latency["count"] ?? 0 >= 250, "too few latency samples arrived")
    }
}
