import Bridge
import Foundation
import Mongo
import Postgres
import StatusServer
import SyncCore
import Testing

/// MongoDB → NocoDB, conflicts and echo suppression, with both directions running.
@Suite struct TwoWayTests {
    @Test func mongoInsertUpdateDeleteReachNocoDBTheWayNocoDBWritesRows() throws {
        let f = try BridgeFixture()
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (table_no, action, nc_order) VALUES (1, 'existing', 41)")
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        try f.mongoWrite { c throws(MongoError) in
            try c.insertOne(["externalId": .string("w-1"), "table_no": .int32(7), "action": .string("seat"),
                             "updatedAt": .date(1_760_000_000_000), "appOnly": .bool(true)], collection: "waiter_ops")
        }
        try eventually("insert reaches NocoDB") { try f.sql("SELECT 1 FROM \(t) WHERE \"externalId\" = 'w-1'").rows.count == 1 }
        let row = try f.sql("""
            SELECT table_no, action, source, version, created_at IS NOT NULL, nc_order, updated_at IS NULL, "updatedAt", id > 1
            FROM \(t) WHERE "externalId" = 'w-1'
            """).rows[0]
        #expect(row[0] == "7" && row[1] == "seat" && row[2] == "mongo" && row[3] == "1")
        #expect(row[4] == "t" && row[5] == "42" && row[6] == "t" && row[8] == "t")
        #expect(row[7] == "2025-10-09 08:53:20")

        try f.mongoWrite { c throws(MongoError) in
            try c.updateOne(filter: ["externalId": .string("w-1")], update: ["$set": .document(["action": .string("order")])], collection: "waiter_ops")
        }
        try eventually("update reaches NocoDB") { try f.sql("SELECT action FROM \(t) WHERE \"externalId\" = 'w-1'").rows.first?[0] == "order" }
        #expect(try f.sql("SELECT updated_at IS NOT NULL, version FROM \(t) WHERE \"externalId\" = 'w-1'").rows[0] == ["t", "2"])

        try f.mongoWrite { c throws(MongoError) in try c.deleteOne(filter: ["externalId": .string("w-1")], collection: "waiter_ops") }
        try eventually("delete is NocoDB's soft delete") {
            try f.sql("SELECT \"__nc_deleted\" FROM \(t) WHERE \"externalId\" = 'w-1'").rows.first?[0] == "t"
        }
        #expect(try f.deadLetters().rows.isEmpty)
    }

    /// A delete event carries only `_id`; the key map finds the record.
    @Test func deleteOfADocumentWithAnObjectIdFindsItsRecord() throws {
        let f = try BridgeFixture()
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let oid = try #require(ObjectID(hex: "65a1b2c3d4e5f60718293a4b"))
        try f.mongoWrite { c throws(MongoError) in
            try c.insertOne(["_id": .objectId(oid), "externalId": .string("c-1"), "status": .string("new")], collection: "chef_orders")
        }
        let t = f.table("chef_orders")
        try eventually("insert reaches NocoDB") { try f.sql("SELECT 1 FROM \(t) WHERE \"externalId\" = 'c-1'").rows.count == 1 }
        try f.mongoWrite { c throws(MongoError) in try c.deleteOne(filter: ["_id": .objectId(oid)], collection: "chef_orders") }
        try eventually("delete reaches NocoDB") {
            try f.sql("SELECT \"__nc_deleted\" FROM \(t) WHERE \"externalId\" = 'c-1'").rows.first?[0] == "t"
        }
    }

    @Test func documentsWithoutExternalIdGetOneOnBothSides() throws {
        let f = try BridgeFixture()
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        // 50 app inserts without a key, concurrently: none may fail (the partial unique index).
        DispatchQueue.concurrentPerform(iterations: 50) { i in
            try? f.mongoWrite { c throws(MongoError) in
                try c.insertOne(["status": .string("new"), "items": .array([.int32(Int32(i))])], collection: "chef_orders")
            }
        }
        #expect(try f.count("chef_orders") == 50)
        try eventually("all keyed in MongoDB and present in NocoDB") {
            let keyed = try f.mongo.withClient { (c: MongoClient) throws(MongoError) in
                try c.count(["externalId": .document(["$type": .string("string")])], collection: "chef_orders")
            }
            let rows = Int(try f.sql("SELECT count(*) FROM \(f.table("chef_orders"))").rows[0][0] ?? "0")
            return keyed == 50 && rows == 50
        }
        let docs = try f.documents("chef_orders")
        for doc in docs {
            guard case .objectId(let oid)? = doc["_id"] else { Issue.record("no ObjectId"); continue }
            #expect(doc["externalId"] == .string(oid.description))
        }
        #expect(Set(try f.sql("SELECT \"externalId\" FROM \(f.table("chef_orders"))").rows.map { $0[0] }).count == 50)
    }

    /// One user edit = exactly one write on the other side and none back.
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func noPingPong(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("cashier_txns")
        let key = try #require(f.sql("INSERT INTO \(t) (\"externalId\", amount, currency, method) VALUES (gen_random_uuid()::text, 9.99, 'EUR', 'card') RETURNING \"externalId\"").rows[0][0])
        try eventually("insert crosses") { try f.document("cashier_txns", key: key) != nil }
        try eventually("quiet") { try f.backlog() == 0 }
        usleep(300_000)

        // NocoDB edit: one MongoDB write, no PostgreSQL write back.
        let stream = try f.watch("cashier_txns")
        try f.sql("UPDATE \(t) SET method = 'cash' WHERE \"externalId\" = $1", [key])
        let xminAfterEdit = try f.xmin("cashier_txns", key: key)
        try eventually("edit crosses") { try f.document("cashier_txns", key: key)?["method"] == .string("cash") }
        let events = try countEvents(stream)
        #expect(events.count == 1, "MongoDB saw \(events.count) writes")
        #expect(try f.xmin("cashier_txns", key: key) == xminAfterEdit, "the bridge wrote the row back")

        // MongoDB edit: one PostgreSQL write, no MongoDB write back.
        let stream2 = try f.watch("cashier_txns")
        let before = try f.xmin("cashier_txns", key: key)
        try f.mongoWrite { c throws(MongoError) in
            try c.updateOne(filter: ["externalId": .string(key)], update: ["$set": .document(["currency": .string("USD")])], collection: "cashier_txns")
        }
        try eventually("edit crosses back") { try f.sql("SELECT currency FROM \(t) WHERE \"externalId\" = $1", [key]).rows[0][0] == "USD" }
        let written = try f.xmin("cashier_txns", key: key)
        #expect(written != before)
        let events2 = try countEvents(stream2)
        #expect(events2.count == 1, "MongoDB saw \(events2.count) writes (the app's own only)")
        #expect(try f.xmin("cashier_txns", key: key) == written, "more than one write to NocoDB")
        // Triggers count every edit (insert, NocoDB edit, the bridge's write); without them only
        // the bridge's own write counts.
        #expect(try f.sql("SELECT version FROM \(t) WHERE \"externalId\" = $1", [key]).rows[0][0] == (capture == .triggers ? "3" : "1"))
        #expect(try f.sql("SELECT count(*) FROM nocobridge.conflicts").rows[0][0] == "0")
    }

    struct PolicyCase: Sendable, CustomTestStringConvertible {
        let policy: ConflictPolicy
        /// MongoDB's edit time relative to NocoDB's (ms).
        let mongoLater: Bool
        let expectedStatus: String
        let expectedNote: String?
        let winner: String
        var testDescription: String { "\(policy.rule.rawValue) mongoLater=\(mongoLater) → \(winner)" }
    }

    /// Both sides edit the same order while the bridge is down; on start both converge to the
    /// documented winner and the conflict is logged.
    @Test(arguments: [
        PolicyCase(policy: .init(), mongoLater: true, expectedStatus: "cooking", expectedNote: nil, winner: "nocodb"),
        PolicyCase(policy: .init(rule: .sourcePriority, nocodbPriority: 1, mongoPriority: 3), mongoLater: false,
                   expectedStatus: "served", expectedNote: nil, winner: "mongo"),
        PolicyCase(policy: .init(rule: .lastWriteWins), mongoLater: true, expectedStatus: "served", expectedNote: nil, winner: "mongo"),
        PolicyCase(policy: .init(rule: .lastWriteWins), mongoLater: false, expectedStatus: "cooking", expectedNote: nil, winner: "nocodb"),
        PolicyCase(policy: .init(rule: .fieldMerge), mongoLater: true, expectedStatus: "cooking", expectedNote: "[\"extra\"]", winner: "merged"),
    ])
    func concurrentEditsConvergeToThePolicysWinner(_ c: PolicyCase) throws {
        let f = try BridgeFixture()
        let t = f.table("chef_orders")
        let key = try #require(f.sql("INSERT INTO \(t) (status, items) VALUES ('new', '[]') RETURNING \"externalId\"").rows[0][0])
        var bridge = f.startBridge(policy: c.policy)
        try eventually("record on both sides") { try f.document("chef_orders", key: key) != nil }
        try eventually("agreed") { try f.sql("SELECT count(*) FROM nocobridge.agreed_state").rows[0][0] == "1" }
        bridge.shutdown()

        try f.sql("UPDATE \(t) SET status = 'cooking' WHERE \"externalId\" = $1", [key])
        let nocoText = try f.sql("SELECT \"updatedAt\" FROM \(t) WHERE \"externalId\" = $1", [key]).rows[0][0] ?? ""
        let nocoAt = try Timestamps.parseMilliseconds(nocoText)
        let mongoAt = nocoAt + (c.mongoLater ? 60_000 : -60_000)
        var set: Document = ["status": .string("served"), "updatedAt": .date(mongoAt)]
        if c.policy.rule == .fieldMerge { set = ["items": .array([.string("extra")]), "updatedAt": .date(mongoAt)] }
        try f.mongoWrite { m throws(MongoError) in
            try m.updateOne(filter: ["externalId": .string(key)], update: ["$set": .document(set)], collection: "chef_orders")
        }
        let metrics = MetricsExport()
        bridge = f.startBridge(policy: c.policy, metrics: metrics.factory)
        defer { bridge.shutdown() }
        try eventually("both sides converge") {
            let row = try f.sql("SELECT status, items::text FROM \(t) WHERE \"externalId\" = $1", [key]).rows[0]
            let doc = try f.document("chef_orders", key: key)
            let itemsOK = c.expectedNote.map { row[1].map { $0.replacingOccurrences(of: " ", with: "") } == $0 } ?? true
            let backlog = try f.backlog()
            return row[0] == c.expectedStatus && doc?["status"] == .string(c.expectedStatus) && itemsOK
                && (c.expectedNote == nil || doc?["items"] == .array([.string("extra")]))
                && backlog == 0
        }
        usleep(300_000)
        let log = try f.sql("SELECT winner, rule, external_id FROM nocobridge.conflicts").rows
        #expect(log.count == 1)
        #expect(log.first?[0] == c.winner && log.first?[1] == c.policy.rule.rawValue && log.first?[2] == key)
        let counted = metrics.registry.emitToString().split(separator: "\n")
            .filter { $0.hasPrefix("nocobridge_conflicts_total{") && $0.contains("rule=\"\(c.policy.rule.rawValue)\"") }
            .compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }
        #expect(counted.reduce(0, +) == 1, "conflicts by rule in /metrics")
    }

    /// `last_write_wins` needs the time of a NocoDB edit. With triggers the trigger stamps
    /// `updatedAt`; with logical capture nothing does, and the edit is dated by NocoDB's own
    /// `updated_at` and the commit time instead of the stale `updatedAt`.
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func lastWriteWinsDatesNocoDBEditsInBothCaptureModes(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let t = f.table("chef_orders")
        let policy = ConflictPolicy(rule: .lastWriteWins)
        try f.sql("INSERT INTO \(t) (\"externalId\", status, items) VALUES ('k-lww', 'new', '[]')")
        var bridge = f.startBridge(policy: policy)
        try eventually("record on both sides") { try f.document("chef_orders", key: "k-lww") != nil }
        try eventually("agreed") { try f.sql("SELECT count(*) FROM nocobridge.agreed_state").rows[0][0] == "1" }
        bridge.shutdown()
        // MongoDB first, NocoDB 50 ms later, as NocoDB's API edits: `updated_at`, not `updatedAt`.
        try f.mongoWrite { m throws(MongoError) in
            try m.updateOne(filter: ["externalId": .string("k-lww")],
                            update: ["$set": .document(["status": .string("served"), "updatedAt": .date(Int64(Date().timeIntervalSince1970 * 1000))])],
                            collection: "chef_orders")
        }
        usleep(50_000)
        try f.sql("UPDATE \(t) SET status = 'cooking', updated_at = now() AT TIME ZONE 'UTC' WHERE \"externalId\" = 'k-lww'")
        bridge = f.startBridge(policy: policy)
        defer { bridge.shutdown() }
        try eventually("both sides converge") {
            let row = try f.sql("SELECT status FROM \(t) WHERE \"externalId\" = 'k-lww'").rows[0][0]
            let doc = try f.document("chef_orders", key: "k-lww")
            return row != "new" && row.map(Value.string) == doc?["status"]
        }
        try f.waitCaughtUp()
        usleep(300_000)
        #expect(try f.sql("SELECT status FROM \(t) WHERE \"externalId\" = 'k-lww'").rows[0][0] == "cooking")
        #expect(try f.document("chef_orders", key: "k-lww")?["status"] == .string("cooking"))
        #expect(try f.sql("SELECT winner FROM nocobridge.conflicts").rows.map { $0[0] } == ["nocodb"])
    }

    @Test func updateAgainstDeleteFollowsThePolicyAndTombstonesHold() throws {
        let f = try BridgeFixture()
        let t = f.table("waiter_ops")
        let a = try #require(f.sql("INSERT INTO \(t) (action) VALUES ('a') RETURNING \"externalId\"").rows[0][0])
        let b = try #require(f.sql("INSERT INTO \(t) (action) VALUES ('b') RETURNING \"externalId\"").rows[0][0])
        var bridge = f.startBridge()
        try eventually("both records synced") { try f.count("waiter_ops") == 2 && f.backlog() == 0 }
        try eventually("agreed") { try f.sql("SELECT count(*) FROM nocobridge.agreed_state").rows[0][0] == "2" }
        bridge.shutdown()
        // a: MongoDB deletes while NocoDB edits → source_priority: NocoDB's edit wins, the
        // document comes back.  b: NocoDB deletes while MongoDB edits → NocoDB's delete wins.
        try f.sql("UPDATE \(t) SET action = 'a2' WHERE \"externalId\" = $1", [a])
        try f.sql("DELETE FROM \(t) WHERE \"externalId\" = $1", [b])
        try f.mongoWrite { m throws(MongoError) in
            try m.deleteOne(filter: ["externalId": .string(a)], collection: "waiter_ops")
            try m.updateOne(filter: ["externalId": .string(b)], update: ["$set": .document(["action": .string("b2")])], collection: "waiter_ops")
        }
        bridge = f.startBridge()
        defer { bridge.shutdown() }
        try eventually("converged") {
            try f.document("waiter_ops", key: a)?["action"] == .string("a2") && f.document("waiter_ops", key: b) == nil
        }
        usleep(500_000)
        #expect(try f.document("waiter_ops", key: b) == nil)
        #expect(try f.sql("SELECT count(*) FROM \(t) WHERE \"externalId\" = $1", [b]).rows[0][0] == "0")
        #expect(try f.sql("SELECT count(*) FROM nocobridge.conflicts").rows[0][0] == "2")
        // A stale app upsert of the deleted record (older than the delete) does not bring it back.
        try f.mongoWrite { m throws(MongoError) in
            try m.updateOne(filter: ["externalId": .string(b)], update: ["$set": .document(["action": .string("zombie"), "updatedAt": .date(1_000)])],
                            upsert: true, collection: "waiter_ops")
        }
        try eventually("tombstone re-deletes the stale document") { try f.document("waiter_ops", key: b) == nil }
        #expect(try f.sql("SELECT count(*) FROM \(t) WHERE \"externalId\" = $1", [b]).rows[0][0] == "0")
    }

    /// NocoDB's paste of rows that all carry one key: every row is a record of its own, under
    /// the key NocoDB shows, in both capture modes (logical capture keeps the key trigger).
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func pastedRowsWithARepeatedKeyBecomeSeparateRecords(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (\"externalId\", table_no) SELECT 'pasted', g FROM generate_series(1, 100) g")
        let keys = try f.sql("SELECT \"externalId\" FROM \(t)").rows.map { $0[0] ?? "" }
        #expect(Set(keys).count == 100 && keys.contains("pasted"), "keys \(keys)")
        try f.waitCaughtUp()
        try eventually("100 documents under NocoDB's keys") {
            let docs = try f.documents("waiter_ops")
            return docs.count == 100 && Set(docs.compactMap { doc -> String? in
                if case .string(let key)? = doc["externalId"] { return key } else { return nil }
            }) == Set(keys)
        }
        // An UPDATE to a key another row has is the one case the unique index refuses.
        let error = #expect(throws: PostgresError.self) {
            try f.sql("UPDATE \(t) SET \"externalId\" = 'pasted' WHERE table_no = 2")
        }
        #expect(error?.sqlState == "23505", "\(String(describing: error))")
    }

    /// `run --on-history-lost=resync` recovers by itself: resync, new position, streaming again.
    @Test func historyLostCanResyncAutomatically() throws {
        let f = try BridgeFixture()
        try f.mongoWrite { c throws(MongoError) in try c.insertOne(["externalId": .string("early"), "action": .string("x")], collection: "waiter_ops") }
        let corrupt = try BSONBytes.encode(document: ["_data": .string("82ZZZZ-not-a-resume-token")])
        try f.sql("UPDATE nocobridge.positions SET position = $1::bytea", [PostgresConnection.byteaLiteral(corrupt)])
        let bridge = try BridgeProcess(arguments: ["run", "--on-history-lost=resync"], environment: f.environment)
        let t = f.table("waiter_ops")
        try eventually("resync brought the document over") { try f.sql("SELECT 1 FROM \(t) WHERE \"externalId\" = 'early'").rows.count == 1 }
        try f.mongoWrite { c throws(MongoError) in try c.insertOne(["externalId": .string("later"), "action": .string("y")], collection: "waiter_ops") }
        try eventually("streaming resumed") { try f.sql("SELECT 1 FROM \(t) WHERE \"externalId\" = 'later'").rows.count == 1 }
        #expect(try f.sql("SELECT encode(position, 'hex') FROM nocobridge.positions").rows.allSatisfy { $0[0] != Hex.encode(corrupt) })
        bridge.kill(SIGTERM)
        #expect(bridge.wait() == 0)
    }

    /// A position the previous release kept (its stream opened on the database, filtered to
    /// the collection) cannot resume a collection stream (SecantusDB refuses it as
    /// cross-namespace). The flow resumes it on a database stream, delivers what happened
    /// meanwhile, then moves to the collection's own stream, losing and doubling nothing.
    @Test func aPositionKeptForADatabaseStreamMovesToTheCollectionsOwn() throws {
        let f = try BridgeFixture()
        let database = f.configuration.mongoDatabase
        let own = "mongo-collection:\(database).waiter_ops", older = "mongo:\(database).waiter_ops"
        var options = ChangeStreamOptions()
        options.maxAwaitMilliseconds = 50
        let databaseStream = try f.mongo.watch(collection: nil, options: options)
        if databaseStream.resumeToken == nil { _ = try databaseStream.next() }
        let token = try #require(databaseStream.resumeToken)
        try f.sql("DELETE FROM nocobridge.positions WHERE stream = $1", [own])
        try f.sql("INSERT INTO nocobridge.positions (stream, position) VALUES ($1, $2::bytea)", [older, PostgresConnection.byteaLiteral(token)])
        // While the bridge is stopped: changes to this collection and to another.
        try f.mongoWrite { c throws(MongoError) in
            try c.insertOne(["externalId": .string("while-stopped"), "action": .string("x")], collection: "waiter_ops")
            try c.insertOne(["externalId": .string("other"), "status": .string("new")], collection: "chef_orders")
        }
        let t = f.table("waiter_ops")
        func rows(_ key: String) throws -> Int { try f.sql("SELECT 1 FROM \(t) WHERE \"externalId\" = $1", [key]).rows.count }
        do {
            let bridge = f.startBridge()
            defer { bridge.shutdown() }
            try explained(by: bridge) {
                try eventually("the change made while stopped arrives") { try rows("while-stopped") == 1 }
                try eventually("the position moved to the collection's stream") {
                    try f.sql("SELECT stream FROM nocobridge.positions WHERE stream IN ($1, $2)", [own, older]).rows.map { $0[0] } == [own]
                }
                try f.mongoWrite { c throws(MongoError) in try c.insertOne(["externalId": .string("after-move"), "action": .string("y")], collection: "waiter_ops") }
                try eventually("a change after the move arrives") { try rows("after-move") == 1 }
            }
        }
        // Restarted, the bridge resumes the collection stream from the moved position.
        try f.mongoWrite { c throws(MongoError) in try c.insertOne(["externalId": .string("after-restart"), "action": .string("z")], collection: "waiter_ops") }
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        try explained(by: bridge) { try eventually("a change made before the restart arrives") { try rows("after-restart") == 1 } }
        #expect(try rows("while-stopped") == 1 && rows("after-move") == 1)
        #expect(try f.deadLetters().rows.isEmpty)
    }

    @Test func corruptedResumeTokenStopsWithAClearMessage() throws {
        let f = try BridgeFixture()
        // A token of the right shape whose content the server cannot parse.
        let corrupt = try BSONBytes.encode(document: ["_data": .string("82ZZZZ-not-a-resume-token")])
        try f.sql("UPDATE nocobridge.positions SET position = $1::bytea", [PostgresConnection.byteaLiteral(corrupt)])
        // One position per synced collection, each corrupted.
        #expect(try f.sql("SELECT count(*) FROM nocobridge.positions").rows[0][0] == String(BridgeFixture.tables.count))
        let result = try runCLI(["run"], environment: f.environment, timeoutSeconds: 30)
        #expect(result.status == 1)
        #expect(result.output.contains("nocobridge resync"), "\(result.output)")
    }
}
