import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

@Suite struct OperationsTests {
    /// A MongoDB document the table cannot hold goes to dead letters; once fixed in MongoDB,
    /// `dlq retry` puts it through the normal policy and removes the entry.
    @Test func deadLetterRetryAfterTheDocumentIsFixed() throws {
        let f = try BridgeFixture()
        let bridge = f.startBridge()
        try f.mongoWrite { c throws(MongoError) in
            try c.insertOne(["externalId": .string("bad-1"), "table_no": .string("seven")], collection: "waiter_ops")
            try c.insertOne(["externalId": .string("good-1"), "table_no": .int32(8)], collection: "waiter_ops")
        }
        let t = f.table("waiter_ops")
        try eventually("good document crosses") { try f.sql("SELECT 1 FROM \(t) WHERE \"externalId\" = 'good-1'").rows.count == 1 }
        try eventually("bad document dead-lettered") { try f.deadLetters().rows.count == 1 }
        bridge.shutdown()
        let entry = try f.deadLetters().rows[0]
        #expect(entry[0] == "\(f.schema).waiter_ops" && entry[1] == "bad-1" && entry[2] == "table_no")
        #expect(entry[3]?.contains("expected an integer, got string") == true, "\(entry[3] ?? "")")

        let list = try runCLI(["dlq", "list"], environment: f.environment)
        #expect(list.status == 0 && list.output.contains("bad-1") && list.output.contains("table_no"))
        let stillBad = try runCLI(["dlq", "retry", "--all"], environment: f.environment)
        #expect(stillBad.status == 1 && stillBad.output.contains("still failing 1"))
        #expect(try f.sql("SELECT retries FROM nocobridge.dead_letters").rows[0][0] == "1")

        try f.mongoWrite { c throws(MongoError) in
            try c.updateOne(filter: ["externalId": .string("bad-1")], update: ["$set": .document(["table_no": .int32(7)])], collection: "waiter_ops")
        }
        let id = try #require(f.sql("SELECT id FROM nocobridge.dead_letters").rows[0][0])
        let fixed = try runCLI(["dlq", "retry", id], environment: f.environment)
        #expect(fixed.status == 0 && fixed.output.contains("resolved 1"), "\(fixed.output)")
        #expect(try f.sql("SELECT table_no FROM \(t) WHERE \"externalId\" = 'bad-1'").rows.first?[0] == "7")
        #expect(try f.deadLetters().rows.isEmpty)
        let gone = try runCLI(["dlq", "show", id], environment: f.environment)
        #expect(gone.status == 1 && gone.output.contains("does not exist"))
    }

    /// Two instances share the tables (2/2); SIGKILL one and the other takes its tables over
    /// within a tick or two of the killed session ending (its instance lock is free), not after
    /// the lease runs out, and delivers everything written meanwhile, once.
    @Test func aSecondInstanceTakesOverEveryTableAfterSigkill() throws {
        let f = try BridgeFixture()
        let t = f.table("waiter_ops")
        let first = try BridgeProcess(environment: f.environment)
        try f.sql("INSERT INTO \(t) (table_no) VALUES (1)")
        try eventually("first instance works") { try f.count("waiter_ops") == 1 }
        let second = try BridgeProcess(environment: f.environment.merging(["LOG_LEVEL": "info"]) { $1 })
        try eventually("the tables are shared 2/2", seconds: 30) {
            try f.sql("SELECT count(DISTINCT holder), count(*) FROM nocobridge.leases WHERE holder IS NOT NULL AND expires_at > now()").rows[0] == ["2", "4"]
        }
        first.kill(SIGKILL)
        first.wait()
        let killedAt = Date()
        try f.sql("INSERT INTO \(t) (table_no) SELECT g FROM generate_series(2, 200) g")
        try f.mongoWrite { c throws(MongoError) in try c.insertOne(["externalId": .string("after-kill"), "table_no": .int32(999)], collection: "waiter_ops") }
        try eventually("the second took over and delivered everything", seconds: 30) {
            try f.count("waiter_ops") == 201 && f.sql("SELECT count(*) FROM \(t)").rows[0][0] == "201" && f.backlog() == 0
        }
        let takeover = Date().timeIntervalSince(killedAt)
        #expect(takeover < 10, "takeover took \(takeover) s")
        try eventually("the second holds all four tables", seconds: 10) {
            try f.sql("SELECT count(DISTINCT holder), count(*) FROM nocobridge.leases WHERE holder IS NOT NULL AND expires_at > now()").rows[0] == ["1", "4"]
        }
        #expect(second.log.contains(" acquired"))
        #expect(Set(try f.documents("waiter_ops").compactMap { $0["externalId"] }).count == 201)
        second.kill(SIGTERM)
        #expect(second.wait() == 0)
    }

    /// `LOG_FORMAT=json` gives one JSON object per line with the batch metadata; a password in
    /// the URLs never appears.
    @Test func jsonLogsCarryBatchesAndNoSecrets() throws {
        let f = try BridgeFixture()
        var env = f.environment
        env["LOG_FORMAT"] = "json"
        env["LOG_LEVEL"] = "info"
        // The test cluster trusts local connections, so a password in the URL is accepted unused.
        env["PG_URL"] = f.configuration.postgresURL.replacingOccurrences(of: "://\(f.role)@", with: "://\(f.role):pg-s3cret@")
        env["MONGO_URL"] = f.servers.mongoURL
        let bridge = try BridgeProcess(environment: env)
        try f.sql("INSERT INTO \(f.table("waiter_ops")) (action) VALUES ('seat')")
        try eventually("delivered") { try f.count("waiter_ops") == 1 }
        try eventually("batch logged") { bridge.log.contains("batch applied") }
        bridge.kill(SIGTERM)
        #expect(bridge.wait() == 0)
        let lines = bridge.log.split(separator: "\n").filter { !$0.isEmpty }
        #expect(!lines.isEmpty)
        var sawBatch = false
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] != nil && object?["message"] != nil, "not a JSON log line: \(line)")
            if object?["message"] as? String == "batch applied", let meta = object?["metadata"] as? [String: String] {
                if meta["direction"] == "to-mongo" && meta["changes"] == "1" { sawBatch = true }
            }
        }
        #expect(sawBatch)
        #expect(!bridge.log.contains("pg-s3cret"))
    }

    @Test func sigtermExitsCleanlyWithinTheBound() throws {
        let f = try BridgeFixture()
        let bridge = try BridgeProcess(environment: f.environment)
        try f.sql("INSERT INTO \(f.table("cashier_txns")) (amount) SELECT g FROM generate_series(1, 3000) g")
        try eventually("bridge running") { try f.count("cashier_txns") > 0 }
        let sent = Date()
        bridge.kill(SIGTERM)
        let status = bridge.wait()
        let took = Date().timeIntervalSince(sent)
        #expect(status == 0)
        #expect(took < 10, "SIGTERM took \(took) s")
        // Whatever was in flight is either committed or still queued: a restart delivers the rest.
        let again = try BridgeProcess(environment: f.environment)
        try eventually("rest delivered", seconds: 60) { try f.backlog() == 0 && f.count("cashier_txns") == 3000 }
        again.kill(SIGTERM)
        #expect(again.wait() == 0)
    }
}
