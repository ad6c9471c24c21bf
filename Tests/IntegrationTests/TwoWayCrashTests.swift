import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

@Suite struct TwoWayCrashTests {
    /// A bridge SIGKILLed in the middle of a bulk write leaves that write running in the
    /// MongoDB server. Rows NocoDB deletes meanwhile must stay deleted: the next instance
    /// waits for its predecessor's writes to end before it decides anything, so a late insert
    /// cannot bring a deleted record back on both sides.
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func writesOfAKilledBridgeCannotReviveDeletedRows(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let t = f.table("waiter_ops")
        var bridge = try BridgeProcess(environment: f.environment)
        try f.sql("INSERT INTO \(t) (action, notes) VALUES ('seat', 'probe')")
        try eventually("bridge running") { try f.count("waiter_ops") == 1 }
        for round in 0..<3 {
            try f.sql("INSERT INTO \(t) (action, notes) SELECT 'order', 'r\(round)-' || g FROM generate_series(1, 4000) g")
            let before = try f.count("waiter_ops")
            try eventually("bulk write under way", seconds: 60) { try f.count("waiter_ops") > before }
            bridge.kill(SIGKILL)
            bridge.wait()
            try f.sql("DELETE FROM \(t) WHERE notes LIKE 'r\(round)-%'")
            bridge = try BridgeProcess(environment: f.environment)
        }
        try f.waitCaughtUp(seconds: 180)
        // Time for a late write, and for its change event to come back through the bridge.
        try? eventually("deletes applied", seconds: 30) { try f.count("waiter_ops") == 1 }
        sleep(3)
        try f.waitCaughtUp()
        let documents = try f.count("waiter_ops")
        let rows = try f.sql("SELECT count(*) FROM \(t) WHERE NOT \"__nc_deleted\"").rows[0][0]
        #expect(documents == 1)
        #expect(rows == "1")
        bridge.kill(SIGTERM)
        #expect(bridge.wait() == 0)
    }

    /// Writes on both sides while the bridge is SIGKILLed again and again; after a clean
    /// restart both sides hold the same live records with the same content: nothing lost,
    /// nothing duplicated.
    @Test func sigkillDuringTwoWayLoadConverges() throws {
        let f = try BridgeFixture()
        let t = f.table("chef_orders")
        var bridge = try BridgeProcess(environment: f.environment)
        var changes = 0
        var kills = 0
        for round in 0..<6 {
            try f.sql("INSERT INTO \(t) (status, items) SELECT 'new', json_build_array(g, \(round)) FROM generate_series(1, 300) g")
            changes += 300
            let updated = try f.sql("UPDATE \(t) SET status = 'cooking' WHERE id % 5 = \(round % 5)").affected
            changes += updated
            var docs: [Document] = []
            for i in 0..<300 {
                docs.append(["externalId": .string("m-\(round)-\(i)"), "status": .string("ready"), "items": .array([.int32(Int32(i))])])
            }
            try f.mongoWrite { c throws(MongoError) in
                _ = try c.bulkWrite(docs.map { .insertOne($0) }, collection: "chef_orders")
                changes += 300
                var updates: [BulkWrite] = []
                for i in stride(from: 0, to: 300, by: 3) {
                    updates.append(.updateOne(filter: ["externalId": .string("m-\(round)-\(i)")],
                                              update: ["$set": .document(["status": .string("served")])], upsert: false))
                }
                for i in stride(from: 1, to: 300, by: 10) {
                    updates.append(.deleteOne(filter: ["externalId": .string("m-\(round)-\(i)")]))
                }
                _ = try c.bulkWrite(updates, collection: "chef_orders")
                changes += updates.count
            }
            try f.sql("DELETE FROM \(t) WHERE id % 19 = \(round)")
            usleep(UInt32.random(in: 100_000...400_000))
            bridge.kill(SIGKILL)
            bridge.wait()
            kills += 1
            bridge = try BridgeProcess(environment: f.environment)
        }
        #expect(changes >= 5000)
        func snapshot() throws -> (nocodb: [String: String], mongo: [String: String], mongoCount: Int) {
            let rows = try f.sql("SELECT \"externalId\", status FROM \(t) WHERE NOT \"__nc_deleted\"").rows
            let docs = try f.documents("chef_orders")
            var mongo: [String: String] = [:]
            for d in docs {
                if case .string(let k)? = d["externalId"], case .string(let s)? = d["status"] { mongo[k] = s }
            }
            return (Dictionary(uniqueKeysWithValues: rows.map { ($0[0] ?? "", $0[1] ?? "") }), mongo, docs.count)
        }
        try eventually("both sides equal", seconds: 180) {
            let s = try snapshot()
            return try f.backlog() == 0 && s.nocodb == s.mongo && s.mongoCount == s.mongo.count
        }
        bridge.kill(SIGTERM)
        #expect(bridge.wait() == 0)
        let s = try snapshot()
        #expect(s.nocodb.count > 2500)
        #expect(kills == 6)
        #expect(try f.deadLetters().rows.isEmpty)
    }
}
