import Bridge
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Mongo
import Postgres
import StatusServer
import SyncCore
import Testing

@Suite struct StatusEndpointTests {

    func get(_ url: String, token: String? = nil) throws -> (status: Int, body: String) {
        var request = URLRequest(url: URL(string: url)!)
        request.timeoutInterval = 10
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: (Int, String)?
        URLSession.shared.dataTask(with: request) { data, response, _ in
            result = ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data ?? Data(), as: UTF8.self))
            done.signal()
        }.resume()
        done.wait()
        guard let result else { throw SetupError("no response from \(url)") }
        return result
    }

    @Test func statusMetricsHealthAndToken() throws {
        let f = try BridgeFixture()
        let port = try freeTCPPort()
        var env = f.environment
        env["STATUS_ADDR"] = "127.0.0.1:\(port)"
        env["STATUS_TOKEN"] = "s3cret-token"
        let bridge = try BridgeProcess(environment: env)
        let base = "http://127.0.0.1:\(port)"
        try eventually("endpoint up") { (try? get(base + "/healthz").status) == 200 }
        try f.sql("INSERT INTO \(f.table("waiter_ops")) (action) VALUES ('seat')")
        try eventually("delivered") { try f.count("waiter_ops") == 1 }

        #expect(try get(base + "/status").status == 401)
        #expect(try get(base + "/status", token: "wrong").status == 401)
        #expect(try get(base + "/metrics").status == 401)
        try eventually("status ok") { try get(base + "/status", token: "s3cret-token").status == 200 }
        let status = try get(base + "/api/sync/status", token: "s3cret-token")
        #expect(status.status == 200)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(status.body.utf8)) as? [String: Any])
        #expect(json["status"] as? String == "ok" && json["postgres"] as? Bool == true && json["mongo"] as? Bool == true)
        let toMongo = try #require((json["directions"] as? [String: Any])?["to-mongo"] as? [String: Any])
        let table = try #require((toMongo["tables"] as? [String: Any])?["\(f.schema).waiter_ops"] as? [String: Any])
        #expect(table["applied"] as? Int == 1 && table["backlog"] as? Int == 0 && toMongo["running"] as? Bool == true)
        #expect(!status.body.contains("s3cret"))
        // Both servers run on this host: their clocks agree within what the reading can tell.
        try eventually("the clock skew is reported") {
            let body = try get(base + "/api/sync/status", token: "s3cret-token").body
            let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            guard let skew = json?["clockSkew"] as? [String: Any], let ms = skew["milliseconds"] as? Int,
                  let uncertainty = skew["uncertaintyMilliseconds"] as? Int else { return false }
            return uncertainty >= 0 && abs(ms) <= uncertainty + 50
        }
        #expect(try get(base + "/readyz", token: "s3cret-token").status == 200)

        let metrics = try get(base + "/metrics", token: "s3cret-token")
        #expect(metrics.status == 200)
        // Prometheus text exposition 0.0.4: every sample `name{labels} value` of a family
        // declared by a `# TYPE` line before it.
        var families: [String: String] = [:]
        let sample = #/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$/#
        for line in metrics.body.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                families[String(parts[2])] = String(parts[3])
                continue
            }
            if line.hasPrefix("#") { continue }
            let match = try #require(line.wholeMatch(of: sample), "bad sample: \(line)")
            let name = String(match.1)
            let family = families[name] ?? ["_bucket", "_sum", "_count"].lazy
                .filter { name.hasSuffix($0) }.compactMap { families[String(name.dropLast($0.count))] }.first
            #expect(family != nil, "sample before its TYPE line: \(line)")
        }
        #expect(families["nocobridge_apply_duration_seconds"] == "histogram" && families["nocobridge_batch_size"] == "histogram")
        #expect(metrics.body.contains("nocobridge_apply_duration_seconds_count{direction=\"to-mongo\"} 1"))
        #expect(metrics.body.contains("nocobridge_up{server=\"postgres\"} 1"))
        #expect(metrics.body.contains("nocobridge_changes_applied_total{direction=\"to-mongo\",table=\"\(f.schema).waiter_ops\"} 1"))

        // `nocobridge status` reads the running bridge's endpoint, then the databases.
        let cli = try runCLI(["status", "--json"], environment: env)
        #expect(cli.status == 0)
        let both = try #require(try JSONSerialization.jsonObject(with: Data(cli.output.utf8)) as? [String: Any], "\(cli.output)")
        let live = try #require(both["bridge"] as? [String: Any])
        #expect(live["status"] as? String == "ok")
        #expect(((both["databases"] as? [String: Any])?["tables"] as? [Any])?.count == BridgeFixture.tables.count)
        let readable = try runCLI(["status"], environment: env)
        #expect(readable.output.contains("bridge: ok") && readable.output.contains("to-mongo"))
        bridge.kill(SIGTERM)
        #expect(bridge.wait() == 0)
        let stopped = try runCLI(["status"], environment: env)
        #expect(stopped.status == 0 && stopped.output.contains("bridge: no answer at 127.0.0.1:\(port)"))
        #expect(stopped.output.contains("BACKLOG") && !stopped.output.contains("s3cret"))
    }

    @Test func aServerDownMakesTheStatusDegraded() throws {
        let f = try BridgeFixture()
        var config = f.configuration
        config.mongoURL = "mongodb://127.0.0.1:1/?replicaSet=secantus&serverSelectionTimeoutMS=200"
        let health = BridgeService(configuration: config, logger: testLogger()).health()
        #expect(health.status == .degraded && health.postgres && !health.mongo)
        #expect(MetricsExport().text(after: health).contains("nocobridge_up{server=\"mongo\"} 0"))
        config.postgresURL = "postgresql://nobody@127.0.0.1:1/none"
        #expect(BridgeService(configuration: config, logger: testLogger()).health().status == .down)
    }
}
