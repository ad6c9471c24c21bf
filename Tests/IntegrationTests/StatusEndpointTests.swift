import Bridge
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Mongo
import Postgres
import SyncCore
import Testing

@Suite struct StatusEndpointTests {
    func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

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
        let port = freePort()
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
        #expect(try get(base + "/readyz", token: "s3cret-token").status == 200)

        let metrics = try get(base + "/metrics", token: "s3cret-token")
        #expect(metrics.status == 200)
        for line in metrics.body.split(separator: "\n") where !line.hasPrefix("#") {
            // Prometheus exposition: name{labels} value
            let parts = line.split(separator: " ")
            #expect(parts.count == 2 && Double(parts[1]) != nil && parts[0].contains("{") && parts[0].hasSuffix("}"), "bad sample: \(line)")
        }
        #expect(metrics.body.contains("nocobridge_up{server=\"postgres\"} 1"))
        #expect(metrics.body.contains("nocobridge_changes_applied_total{direction=\"to-mongo\",table=\"\(f.schema).waiter_ops\"} 1"))
        bridge.kill(SIGTERM)
        #expect(bridge.wait() == 0)
    }

    @Test func aServerDownMakesTheStatusDegraded() throws {
        let f = try BridgeFixture()
        var config = f.configuration
        config.mongoURL = "mongodb://127.0.0.1:1/?replicaSet=secantus&serverSelectionTimeoutMS=200"
        let health = BridgeHealth.collect(configuration: config, toMongo: PipelineStatistics(), toNocoDB: PipelineStatistics())
        #expect(health.status == .degraded && health.postgres && !health.mongo)
        #expect(health.prometheus().contains("nocobridge_up{server=\"mongo\"} 0"))
        config.postgresURL = "postgresql://nobody@127.0.0.1:1/none"
        #expect(BridgeHealth.collect(configuration: config, toMongo: PipelineStatistics(), toNocoDB: PipelineStatistics()).status == .down)
    }
}
