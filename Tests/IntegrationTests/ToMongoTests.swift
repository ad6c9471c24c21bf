import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

/// NocoDB → MongoDB against real PostgreSQL and SecantusDB.
@Suite struct ToMongoTests {
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func insertUpdateDeleteAndSoftDeleteReachMongo(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let bridge = f.startToMongo()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        let key = try #require(f.sql("INSERT INTO \(t) (\"externalId\", table_no, action) VALUES (gen_random_uuid()::text, 4, 'seat') RETURNING \"externalId\"").rows[0][0])
        try eventually("insert visible") { try f.document("waiter_ops", key: key) != nil }
        let inserted = try #require(try f.document("waiter_ops", key: key))
        #expect(inserted["table_no"] == .int64(4))
        #expect(inserted["action"] == .string("seat"))
        #expect(inserted["source"] == .string("nocodb"))
        // The stamp trigger counts NocoDB-side edits; logical capture leaves the row as NocoDB wrote it.
        #expect(inserted["version"] == (capture == .triggers ? .int64(1) : nil))
        if case .date = inserted["updatedAt"] {} else { Issue.record("updatedAt is not a BSON date: \(String(describing: inserted["updatedAt"]))") }
        // NocoDB's system columns stay out of the document.
        #expect(inserted["nc_order"] == nil && inserted["id"] == nil && inserted["__nc_deleted"] == nil)

        try f.sql("UPDATE \(t) SET action = 'order', updated_at = now() WHERE \"externalId\" = $1", [key])
        try eventually("update visible") { try f.document("waiter_ops", key: key)?["action"] == .string("order") }
        if capture == .triggers { #expect(try f.document("waiter_ops", key: key)?["version"] == .int64(2)) }

        // NocoDB's record trash: UPDATE __nc_deleted = true is a delete; false brings it back.
        try f.sql("UPDATE \(t) SET \"__nc_deleted\" = true WHERE \"externalId\" = $1", [key])
        try eventually("soft delete removes the document") { try f.document("waiter_ops", key: key) == nil }
        try f.sql("UPDATE \(t) SET \"__nc_deleted\" = false WHERE \"externalId\" = $1", [key])
        try eventually("restore brings it back") { try f.document("waiter_ops", key: key)?["action"] == .string("order") }

        try f.sql("DELETE FROM \(t) WHERE \"externalId\" = $1", [key])
        try eventually("hard delete removes the document") { try f.document("waiter_ops", key: key) == nil }
        try eventually("changelog acknowledged") { try f.backlog() == 0 }
        #expect(try f.deadLetters().rows.isEmpty)
    }

    /// With triggers the BEFORE trigger gives the keys; with logical capture the bridge does,
    /// when it reads the insert (a copy is recognised by an older row holding its key).
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func emptyKeyGetsAUUIDAndDuplicatedRowsBecomeNewRecords(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let bridge = f.startToMongo()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        func keys() throws -> [String] { try f.sql("SELECT \"externalId\" FROM \(t) ORDER BY id").rows.map { $0[0] ?? "" } }
        try f.sql("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('', 1), (NULL, 2)")
        try eventually("keys assigned") { try keys().allSatisfy { UUID(uuidString: $0) != nil } }
        let original = try keys()[0]
        try eventually("two documents") { try f.count("waiter_ops") == 2 }
        // "Duplicate row" in NocoDB: INSERT … SELECT with every column, key included.
        try f.sql("""
            INSERT INTO \(t) (created_at, "externalId", "updatedAt", source, version, table_no, action, notes)
            SELECT created_at, "externalId", "updatedAt", source, version, table_no, action, notes FROM \(t) WHERE table_no = 1
            """)
        try eventually("three distinct keys") { try Set(keys()).count == 3 && keys().allSatisfy { UUID(uuidString: $0) != nil } }
        #expect(try keys()[0] == original)
        try eventually("three documents") { try f.count("waiter_ops") == 3 }
        // The copy is a record of its own: editing it leaves the original's document alone.
        try f.sql("UPDATE \(t) SET action = 'copy edited' WHERE id = (SELECT max(id) FROM \(t))")
        let copy = try keys()[2]
        try eventually("copy's edit arrives") { try f.document("waiter_ops", key: copy)?["action"] == .string("copy edited") }
        #expect(try f.document("waiter_ops", key: original)?["action"] != .string("copy edited"))
        #expect(try f.count("waiter_ops") == 3)
        #expect(try f.deadLetters().rows.isEmpty)
    }

    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func fieldsOnlyInMongoSurviveANocoDBEdit(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let bridge = f.startToMongo()
        defer { bridge.shutdown() }
        let t = f.table("chef_orders")
        let key = try #require(f.sql("INSERT INTO \(t) (\"externalId\", items, status) VALUES (gen_random_uuid()::text, '[]', 'new') RETURNING \"externalId\"").rows[0][0])
        try eventually("insert visible") { try f.document("chef_orders", key: key) != nil }
        try f.mongo.withClient { (client: MongoClient) throws(MongoError) in
            try client.updateOne(filter: ["externalId": .string(key)], update: ["$set": .document(["kitchenTicket": .int32(77)])],
                                 collection: "chef_orders")
        }
        try f.sql("UPDATE \(t) SET status = 'cooking' WHERE \"externalId\" = $1", [key])
        try eventually("status visible") { try f.document("chef_orders", key: key)?["status"] == .string("cooking") }
        #expect(try f.document("chef_orders", key: key)?["kitchenTicket"] == .int32(77))
    }

    /// A change committed late by a transaction that began early has a lower changelog id
    /// than changes already delivered; it must still arrive.
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func lateCommitOfAnEarlyTransactionIsNotSkipped(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let bridge = f.startToMongo()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        let early = try PostgresConnection(url: f.postgresURL, applicationName: "nocodb-slow")
        try early.query("BEGIN")
        let earlyKey = try #require(try early.query("INSERT INTO \(t) (\"externalId\", action) VALUES (gen_random_uuid()::text, 'early') RETURNING \"externalId\"").rows[0][0])
        let lateKey = try #require(f.sql("INSERT INTO \(t) (\"externalId\", action) VALUES (gen_random_uuid()::text, 'late') RETURNING \"externalId\"").rows[0][0])
        if capture == .triggers {
            // The early change has the lower changelog id but commits last.
            let ids = try f.sql("SELECT id FROM nocobridge.changelog ORDER BY id").rows.compactMap { $0[0].flatMap { Int64($0) } }
            #expect(ids.count == 1)
        }
        try eventually("later change delivered first") { try f.document("waiter_ops", key: lateKey) != nil }
        #expect(try f.document("waiter_ops", key: earlyKey) == nil)
        try early.query("COMMIT")
        try eventually("early change delivered after its commit") { try f.document("waiter_ops", key: earlyKey) != nil }
    }

    /// Every mapped type reaches MongoDB as the exact BSON value, and the value written back
    /// into PostgreSQL from that BSON equals the original.
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func everyMappedTypeRoundTrips(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let bridge = f.startToMongo()
        defer { bridge.shutdown() }
        let t = f.table("type_zoo")
        let key = try #require(f.sql("""
            INSERT INTO \(t) (\"externalId\", small, "int", big, dbl, amount, flag, at, at_tz, day, doc, docb, tags, json_text, label)
            VALUES (gen_random_uuid()::text, -32768, 2147483647, 9223372036854775807, 0.1, 12345678901234567890.1234567890, true,
                    '2024-02-29 23:59:59.999', '2024-02-29 23:59:59.999+05', '1999-12-31',
                    '{"qty": 2, "price": 4.5, "tags": ["a"], "nested": {"ok": true, "none": null}}',
                    '[1, 2.5, "x"]', 'spicy,vegan', '{"k": [1]}', 'naïve 😀')
            RETURNING "externalId"
            """).rows[0][0])
        try eventually("row visible") { try f.document("type_zoo", key: key) != nil }
        let doc = try #require(try f.document("type_zoo", key: key))
        let expected: [(String, Value)] = [
            ("small", .int32(-32768)), ("int", .int32(2_147_483_647)), ("big", .int64(.max)), ("dbl", .double(0.1)),
            ("amount", .decimal(try Decimal128Text("12345678901234567890.1234567890"))), ("flag", .bool(true)),
            ("at", .date(1_709_251_199_999)), ("at_tz", .date(1_709_233_199_999)), ("day", .date(946_598_400_000)),
            ("doc", .document(["qty": .int32(2), "price": .double(4.5), "tags": .array([.string("a")]),
                               "nested": .document(["ok": .bool(true), "none": .null])])),
            ("docb", .array([.int32(1), .double(2.5), .string("x")])),
            ("tags", .array([.string("spicy"), .string("vegan")])), ("json_text", .document(["k": .array([.int32(1)])])),
            ("label", .string("naïve 😀")),
        ]
        for (field, value) in expected {
            #expect(doc[field] == value, "field \(field)")
        }
        // Back: write each BSON value into a second row through the mapper; PostgreSQL must
        // hold equal values.
        let shape = try TableCatalog.shape(of: f.configuration.tables[3], on: f.pg, columnKinds: f.configuration.columnKinds)
        let columns = expected.map { name, _ in try! #require(shape.column(named: name)) }
        let texts = try columns.map { try RowMapper.postgresText(of: $0, value: doc[$0.name] ?? .null) }
        let placeholders = columns.enumerated().map { "$\($0.offset + 1)::\($0.element.postgresType)" }.joined(separator: ", ")
        let names = columns.map { PostgresConnection.quoteIdentifier($0.name) }.joined(separator: ", ")
        try f.sql("INSERT INTO \(t) (\"externalId\", \(names)) SELECT 'copy', \(placeholders)", texts)
        for column in columns {
            let c = PostgresConnection.quoteIdentifier(column.name)
            let cmp = column.kind == .json ? "a.\(c)::jsonb = b.\(c)::jsonb" : "a.\(c) = b.\(c)"
            let same = try f.sql("SELECT \(cmp) FROM \(t) a, \(t) b WHERE a.\"externalId\" = $1 AND b.\"externalId\" = 'copy'", [key])
            #expect(same.rows[0][0] == "t", "column \(column.name) changed on the way back")
        }
    }

    @Test func badRowsGoToDeadLettersAndTheRestFlows() throws {
        let f = try BridgeFixture()
        let bridge = f.startToMongo()
        defer { bridge.shutdown() }
        let zoo = f.table("type_zoo")
        try f.sql("INSERT INTO \(zoo) (\"externalId\", amount) VALUES ('too-precise', 1.234567890123456789012345678901234567890)")
        try f.sql("INSERT INTO \(zoo) (\"externalId\", amount) VALUES ('nan', 'NaN')")
        try f.sql("INSERT INTO \(zoo) (\"externalId\", json_text) VALUES ('bad-json', '{oops')")
        try f.sql("INSERT INTO \(zoo) (\"externalId\", at) VALUES ('forever', 'infinity')")
        try f.sql("INSERT INTO \(zoo) (\"externalId\", label) VALUES ('huge', repeat('x', 17 * 1024 * 1024))")
        let deep = String(repeating: "[", count: 150) + String(repeating: "]", count: 150)
        try f.sql("INSERT INTO \(zoo) (\"externalId\", doc) VALUES ('too-deep', $1)", [deep])
        try f.sql("INSERT INTO \(zoo) (\"externalId\", doc) VALUES ('nul-key', '{\"a\\u0000b\": 1}')")
        try f.sql("INSERT INTO \(zoo) (\"externalId\", label) VALUES ('fine', 'ok')")
        try eventually("good row delivered") { try f.document("type_zoo", key: "fine") != nil }
        try eventually("all seven dead-lettered") { try f.deadLetters().rows.count == 7 }
        let dead = try f.deadLetters().rows
        let byKey = Dictionary(uniqueKeysWithValues: dead.map { ($0[1] ?? "", $0) })
        #expect(byKey["too-precise"]?[2] == "amount")
        #expect(byKey["too-precise"]?[3]?.contains("34") == true)
        #expect(byKey["nan"]?[2] == "amount")
        #expect(byKey["bad-json"]?[2] == "json_text")
        #expect(byKey["bad-json"]?[3]?.contains("invalid JSON") == true)
        #expect(byKey["forever"]?[2] == "at")
        #expect(byKey["huge"]?[3]?.contains("16 MiB") == true)
        #expect(byKey["too-deep"]?[2] == "doc" && byKey["too-deep"]?[3]?.contains("nested deeper than 100") == true)
        #expect(byKey["nul-key"]?[2] == "doc" && byKey["nul-key"]?[3]?.contains("NUL") == true)
        #expect(dead.allSatisfy { $0[0] == "\(f.schema).type_zoo" })
        for key in ["too-precise", "nan", "bad-json", "forever", "huge", "too-deep", "nul-key"] {
            #expect(try f.document("type_zoo", key: key) == nil)
        }
        // A fixed row goes through.
        try f.sql("UPDATE \(zoo) SET amount = 1.5 WHERE \"externalId\" = 'nan'")
        try eventually("fixed row delivered") { try f.document("type_zoo", key: "nan") != nil }
        try eventually("changelog acknowledged") { try f.backlog() == 0 }
    }

    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func bulkUpdateOfTenThousandRowsInOneStatement(capture: BridgeConfiguration.Capture) throws {
        // Logical capture decodes the same statement from WAL; fewer rows keep the suite's
        // two variants from saturating this machine's single MongoDB server at once.
        let n = capture == .triggers ? 10_000 : 3_000
        let f = try BridgeFixture(capture: capture)
        let t = f.table("cashier_txns")
        try f.sql("INSERT INTO \(t) (\"externalId\", amount, currency, method) SELECT gen_random_uuid()::text, g * 0.01, 'EUR', 'card' FROM generate_series(1, \(n)) g")
        let bridge = f.startToMongo()
        defer { bridge.shutdown() }
        try eventually("initial rows", seconds: 120) { try f.count("cashier_txns") == n }
        try f.waitCaughtUp()
        let started = Date()
        try f.sql("UPDATE \(t) SET method = 'cash'")
        try eventually("all \(n) updates applied", seconds: 150) {
            try f.mongo.withClient { (c: MongoClient) throws(MongoError) in try c.count(["method": .string("cash")], collection: "cashier_txns") } == n
        }
        try f.waitCaughtUp()
        let seconds = Date().timeIntervalSince(started)
        print("bulk update (\(capture.rawValue)): \(n) rows in \(String(format: "%.2f", seconds)) s = \(Int(Double(n) / seconds)) rows/s")
        #expect(try f.count("cashier_txns") == n)
    }

    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func changesMadeWhileTheBridgeWasStoppedAreDelivered(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (\"externalId\", table_no) SELECT gen_random_uuid()::text, g FROM generate_series(1, 50) g")
        try f.sql("UPDATE \(t) SET action = 'wait' WHERE table_no <= 25")
        try f.sql("DELETE FROM \(t) WHERE table_no > 45")
        #expect(try f.count("waiter_ops") == 0)
        let bridge = f.startToMongo()
        defer { bridge.shutdown() }
        try eventually("backlog drained") { try f.backlog() == 0 && f.count("waiter_ops") == 45 }
        let waiting = try f.mongo.withClient { (c: MongoClient) throws(MongoError) in
            try c.count(["action": .string("wait")], collection: "waiter_ops")
        }
        #expect(waiting == 25)
    }

    @Test func rowsPresentBeforeInstallAreQueuedOnce() throws {
        let f = try BridgeFixture(install: false)
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (table_no, \"externalId\") VALUES (1, 'keep'), (2, NULL), (3, '')")
        try Installer(configuration: f.ownerConfiguration, logger: testLogger()).install(grantTo: f.role)
        try Installer(configuration: f.ownerConfiguration, logger: testLogger()).install(grantTo: f.role)
        #expect(try f.backlog() == 3)
        let keys = try f.sql("SELECT \"externalId\" FROM \(t) ORDER BY table_no").rows.map { $0[0] }
        #expect(keys[0] == "keep" && keys.allSatisfy { ($0 ?? "").isEmpty == false })
        let bridge = f.startToMongo()
        defer { bridge.shutdown() }
        try eventually("three documents") { try f.count("waiter_ops") == 3 && f.backlog() == 0 }
    }
}
