import Bridge
import Foundation
import Mongo
import Postgres
import Testing

/// deploy/alerts.yml and deploy/grafana-dashboard.json against a live bridge: promtool
/// accepts the rules and their unit tests pass, and every metric they name is exported by a
/// bridge that has done what each metric counts (logical capture for the slot gauge, a
/// conflict, a dead letter, a reconnect).
@Suite struct MonitoringTests {
    func checkMonitoring(_ scrape: URL) throws -> (status: Int32, output: String) {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("check-monitoring-\(randomSuffix()).log")
        defer { try? FileManager.default.removeItem(at: log) }
        let pid = try spawnProcess(["/bin/bash", packageRoot().appendingPathComponent("Scripts/check-monitoring.sh").path, scrape.path], log: log.path)
        let status = waitProcess(pid)
        return ((status >> 8) & 0xff, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }

    @Test func everyMetricTheAlertsAndTheDashboardNameIsExported() throws {
        let f = try BridgeFixture(capture: .logical)
        let ops = f.table("waiter_ops")
        let port = try freeTCPPort()
        var env = f.environment
        env["STATUS_ADDR"] = "127.0.0.1:\(port)"
        let base = "http://127.0.0.1:\(port)"
        var bridge = try BridgeProcess(environment: env)
        try f.sql("INSERT INTO \(ops) (\"externalId\", action) VALUES ('m-1', 'seat')")
        try eventually("crossed", seconds: 30) { try f.document("waiter_ops", key: "m-1") != nil }
        bridge.kill(SIGTERM)
        #expect(bridge.wait() == 0)
        try f.sql("UPDATE \(ops) SET action = 'cooking' WHERE \"externalId\" = 'm-1'")
        try f.mongoWrite { c throws(MongoError) in
            try c.updateOne(filter: ["externalId": .string("m-1")], update: ["$set": .document(["action": .string("served")])], collection: "waiter_ops")
            try c.insertOne(["externalId": .string("m-2"), "table_no": .string("twelve")], collection: "waiter_ops")
        }
        bridge = try BridgeProcess(environment: env)
        try eventually("conflict and dead letter", seconds: 30) {
            try f.sql("SELECT (SELECT count(*) FROM nocobridge.conflicts) || '/' || (SELECT count(*) FROM nocobridge.dead_letters)").rows[0][0] == "1/1"
        }
        // A reconnect: PostgreSQL ends the MongoDB → NocoDB flows' sessions (one per
        // collection, so the counter reaches one per flow that was connected).
        let ended = try f.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE 'nocobridge-to-nocodb/%' AND datname = current_database()").rows[0][0]
        #expect((Int(ended ?? "0") ?? 0) >= 1)
        try eventually("reconnected", seconds: 30) {
            let body = (try? HTTPExchange.send(base + "/metrics").body) ?? ""
            let line = body.split(separator: "\n").first { $0.hasPrefix("nocobridge_reconnects_total{direction=\"to-nocodb\"} ") }
            return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { $0 >= 1 } == true
        }
        let scrape = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(randomSuffix()).txt")
        defer { try? FileManager.default.removeItem(at: scrape) }
        let body = try HTTPExchange.send(base + "/metrics").body
        try Data(body.utf8).write(to: scrape)
        let result = try checkMonitoring(scrape)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("SUCCESS: 9 rules found") && result.output.contains("all ") && result.output.contains("named metrics exported"))
        _ = bridge

        // The check fails for a metric that is not there.
        let partial = body.split(separator: "\n").filter { !$0.hasPrefix("nocobridge_leader") }.joined(separator: "\n")
        try Data(partial.utf8).write(to: scrape)
        let failed = try checkMonitoring(scrape)
        #expect(failed.status == 1 && failed.output.contains("nocobridge_leader is named in deploy/ but not exported"), "\(failed.output)")
    }
}
