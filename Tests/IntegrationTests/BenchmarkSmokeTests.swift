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
        defer {
            try? FileManager.default.removeItem(at: json)
            try? FileManager.default.removeItem(atPath: String(json.path.dropLast(5)) + "-bridge.log")
        }
        let process = Process()
        process.executableURL = bench
        // Steady latency (floor and bridge) and history cost: the phases that run in seconds;
        // the bulk and resync phases run in `Scripts/bench.sh`.
        process.arguments = ["--quick", "--phases", "steady,history", "--json", json.path]
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
        #expect(table.contains("STEADY LATENCY") && table.contains("RECORD HISTORY, batches of 1000"), "\(table)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as? [String: Any])
        let steady = try #require((object["steady"] as? [String: Any])?["triggers"] as? [String: Any])
        for direction in ["to_mongo", "to_nocodb"] {
            let d = try #require(steady[direction] as? [String: Any], "steady.triggers.\(direction) missing")
            let floor = try #require(d["floor"] as? [String: Any]), bridge = try #require(d["bridge"] as? [String: Any])
            #expect((floor["p50_ms"] as? Double ?? 0) > 0 && (bridge["p50_ms"] as? Double ?? 0) > 0, "\(direction): \(d)")
            #expect((bridge["count"] as? Int ?? 0) >= 250 && (bridge["lost"] as? Int ?? 1) == 0, "\(direction): changes lost")
            #expect(d["ratio_p50"] is Double)
            #expect(d["rounds"] as? Int == 4 && d["ratio_p50_min"] is Double && d["ratio_p50_max"] is Double, "\(direction): \(d)")
        }
        let history = try #require(object["history"] as? [String: Any])
        let batches = try #require(history["batches"] as? [[String: Any]])
        #expect(batches.compactMap { $0["size"] as? Int } == [1, 100, 1000])
        for b in batches {
            #expect((b["postgres_write_p50_ms_with"] as? Double ?? 0) > 0 && (b["postgres_write_p50_ms_without"] as? Double ?? 0) > 0, "\(b)")
        }
        #expect((history["bytes_per_entry_with_indexes"] as? Double ?? 0) > 0)
    }
}
