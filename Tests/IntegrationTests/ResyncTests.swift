import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

@Suite struct ResyncTests {
    func resync(_ f: BridgeFixture, dryRun: Bool = false, restored: Side? = nil) throws -> ResyncReport {
        var options = ResyncOptions()
        options.dryRun = dryRun
        options.restored = restored
        var config = f.configuration
        config.tables = [config.tables[0]]
        return try Resync(configuration: config, options: options, logger: testLogger()).run()
    }

    func liveState(_ f: BridgeFixture) throws -> (nocodb: [String: String], mongo: [String: String]) {
        let rows = try f.sql("SELECT \"externalId\", coalesce(action, '') FROM \(f.table("waiter_ops")) WHERE NOT \"__nc_deleted\"").rows
        var mongo: [String: String] = [:]
        for d in try f.documents("waiter_ops") {
            guard case .string(let k)? = d["externalId"] else { continue }
            if case .string(let a)? = d["action"] { mongo[k] = a } else { mongo[k] = "" }
        }
        return (Dictionary(uniqueKeysWithValues: rows.map { ($0[0] ?? "", $0[1] ?? "") }), mongo)
    }

    @Test func dryRunReportsThePlanExactlyAndChangesNothing() throws {
        let f = try BridgeFixture()
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (\"externalId\", table_no, action) VALUES ('only-pg', 1, 'x'), ('both-eq', 1, 'x'), ('both-diff', 1, 'x')")
        try f.mongoWrite { c throws(MongoError) in
            try c.dropIndex(Installer.mongoIndexName, collection: "waiter_ops")
            _ = try c.bulkWrite([
                .insertOne(["externalId": .string("only-mongo"), "table_no": .int64(2)]),
                .insertOne(["externalId": .string("both-eq"), "table_no": .int64(1), "action": .string("x")]),
                .insertOne(["externalId": .string("both-diff"), "table_no": .int64(1), "action": .string("y")]),
                .insertOne(["externalId": .string("dup"), "action": .string("a")]),
                .insertOne(["externalId": .string("dup"), "action": .string("b")]),
                .insertOne(["action": .string("no key")]),
            ], collection: "waiter_ops")
        }
        let before = (try f.backlog(), try f.count("waiter_ops"), try f.sql("SELECT count(*) FROM \(t)").rows[0][0])
        let report = try resync(f, dryRun: true)
        let table = try #require(report.tables.first)
        #expect(report.dryRun)
        #expect(table.onlyNocoDB == 1 && table.onlyMongo == 1 && table.equal == 1 && table.different == 1)
        #expect(table.samples["onlyNocoDB"] == ["only-pg"])
        #expect(table.samples["onlyMongo"] == ["only-mongo"])
        #expect(table.samples["different"] == ["both-diff"])
        #expect(table.duplicateKeysMongo == ["dup"] && table.duplicateKeysNocoDB.isEmpty)
        #expect(table.mongoWithoutKey == 1)
        #expect(table.nocodbWrites == 0 && table.mongoWrites == 0)
        #expect(report.text().contains("DUPLICATE externalId in MongoDB (skipped): dup"))
        let after = (try f.backlog(), try f.count("waiter_ops"), try f.sql("SELECT count(*) FROM \(t)").rows[0][0])
        #expect(before == after)
        #expect(try f.sql("SELECT count(*) FROM nocobridge.agreed_state").rows[0][0] == "0")
        #expect(try f.documents("waiter_ops", filter: ["action": .string("no key")]).first?["externalId"] == nil)
        #expect(try JSONSerialization.jsonObject(with: Data(report.json().utf8)) is [String: Any])
    }

    /// pg_dump at "09:00", changes on both sides, pg_restore; resync (with writes happening
    /// meanwhile) brings both sides to the state they had agreed on plus the later changes,
    /// and deleted records do not come back.
    @Test func postgresRestoreThenResync() throws {
        let f = try BridgeFixture()
        let t = f.table("waiter_ops")
        var bridge = f.startBridge()
        try f.sql("INSERT INTO \(t) (\"externalId\", action) SELECT 'r' || g, 'before' FROM generate_series(1, 5) g")
        try f.mongoWrite { c throws(MongoError) in
            _ = try c.bulkWrite([.insertOne(["externalId": .string("m1"), "action": .string("before")]),
                                 .insertOne(["externalId": .string("m2"), "action": .string("before")])], collection: "waiter_ops")
        }
        try eventually("synced") { let s = try liveState(f); return s.nocodb.count == 7 && s.nocodb == s.mongo }
        try eventually("quiet") { try f.backlog() == 0 }
        usleep(300_000)
        let dump = FileManager.default.temporaryDirectory.appendingPathComponent("nb-\(randomSuffix()).dump").path
        defer { try? FileManager.default.removeItem(atPath: dump) }
        try pgTool("pg_dump", ["-Fc", "-f", dump, f.postgresURL])

        try f.sql("UPDATE \(t) SET action = 'after' WHERE \"externalId\" = 'r1'")
        try f.sql("DELETE FROM \(t) WHERE \"externalId\" = 'r2'")
        try f.mongoWrite { c throws(MongoError) in
            try c.updateOne(filter: ["externalId": .string("m1")], update: ["$set": .document(["action": .string("mongo-after")])], collection: "waiter_ops")
            try c.insertOne(["externalId": .string("m3"), "action": .string("new")], collection: "waiter_ops")
            try c.deleteOne(filter: ["externalId": .string("r3")], collection: "waiter_ops")
        }
        try eventually("later changes synced") {
            let s = try liveState(f)
            return s.nocodb == s.mongo && s.nocodb["r1"] == "after" && s.nocodb["m3"] == "new" && s.nocodb["r3"] == nil
        }
        bridge.shutdown()
        try pgTool("pg_restore", ["--clean", "--if-exists", "--single-transaction", "-d", f.postgresURL, dump])
        #expect(try liveState(f).nocodb["r2"] == "before", "restore did not bring back the old state")

        // Resync while both sides keep writing.
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Result<ResyncReport, Error>?
        Thread { result = Result { try resync(f, restored: .nocodb) }; done.signal() }.start()
        let writer = try PostgresConnection(url: f.postgresURL)
        try writer.query("INSERT INTO \(t) (\"externalId\", action) VALUES ('during-pg', 'x')")
        try f.mongoWrite { c throws(MongoError) in try c.insertOne(["externalId": .string("during-mongo"), "action": .string("y")], collection: "waiter_ops") }
        done.wait()
        let report = try #require(try result?.get())
        #expect(report.tables[0].different + report.tables[0].onlyMongo + report.tables[0].onlyNocoDB >= 4)
        bridge = f.startBridge()
        defer { bridge.shutdown() }
        let expected = ["r1": "after", "r4": "before", "r5": "before", "m1": "mongo-after", "m2": "before", "m3": "new",
                        "during-pg": "x", "during-mongo": "y"]
        try eventually("both sides equal the expected state") {
            let s = try liveState(f)
            return s.nocodb == expected && s.mongo == expected
        }
        // Idempotent: a second resync finds nothing to do.
        let again = try resync(f)
        #expect(again.tables[0].different == 0 && again.tables[0].onlyMongo == 0 && again.tables[0].onlyNocoDB == 0)
        #expect(again.tables[0].nocodbWrites == 0 && again.tables[0].mongoWrites == 0)
    }

    /// MongoDB restored from a snapshot taken through the driver: its old documents are
    /// restore loss, so NocoDB's newer state wins and deletions stay deleted.
    @Test func mongoRestoreThenResync() throws {
        let f = try BridgeFixture()
        let t = f.table("waiter_ops")
        var bridge = f.startBridge()
        try f.sql("INSERT INTO \(t) (\"externalId\", action) SELECT 'r' || g, 'before' FROM generate_series(1, 4) g")
        try f.mongoWrite { c throws(MongoError) in try c.insertOne(["externalId": .string("m1"), "action": .string("before")], collection: "waiter_ops") }
        try eventually("synced") { let s = try liveState(f); return s.nocodb.count == 5 && s.nocodb == s.mongo }
        try eventually("quiet") { try f.backlog() == 0 }
        usleep(300_000)
        let snapshot = try f.documents("waiter_ops")

        try f.sql("UPDATE \(t) SET action = 'after' WHERE \"externalId\" = 'r1'")
        try f.sql("DELETE FROM \(t) WHERE \"externalId\" = 'r2'")
        try f.mongoWrite { c throws(MongoError) in
            try c.updateOne(filter: ["externalId": .string("m1")], update: ["$set": .document(["action": .string("mongo-after")])], collection: "waiter_ops")
            try c.insertOne(["externalId": .string("m3"), "action": .string("new")], collection: "waiter_ops")
        }
        try eventually("later changes synced") {
            let s = try liveState(f)
            return s.nocodb == s.mongo && s.nocodb["r1"] == "after" && s.nocodb["m3"] == "new" && s.nocodb["m1"] == "mongo-after"
        }
        bridge.shutdown()
        try f.mongoWrite { c throws(MongoError) in
            try c.dropCollection("waiter_ops")
            _ = try c.bulkWrite(snapshot.map { .insertOne($0) }, collection: "waiter_ops")
        }
        try Installer.createKeyIndex(collection: "waiter_ops", pool: f.mongo)
        #expect(try liveState(f).mongo["r2"] == "before")

        let report = try resync(f, restored: .mongo)
        #expect(report.tables[0].mongoWrites >= 4)
        bridge = f.startBridge()
        defer { bridge.shutdown() }
        let expected = ["r1": "after", "r3": "before", "r4": "before", "m1": "mongo-after", "m3": "new"]
        try eventually("NocoDB's newer state restored into MongoDB") {
            let s = try liveState(f)
            return s.nocodb == expected && s.mongo == expected
        }
    }

    @Test func aRestoredSideIsDetectedAtStart() throws {
        let f = try BridgeFixture()
        try f.sql("INSERT INTO nocobridge.meta (key, value) VALUES ('generation', '3')")
        try f.mongoWrite { c throws(MongoError) in
            try c.insertOne(["_id": .string("generation"), "value": .int64(9)], collection: GenerationMarker.collection)
        }
        let result = try runCLI(["run"], environment: f.environment, timeoutSeconds: 30)
        #expect(result.status == 1)
        #expect(result.output.contains("restored from a backup") && result.output.contains("resync --restored nocodb"), "\(result.output)")
        // After a resync the bridge starts.
        let resynced = try runCLI(["resync", "--restored", "nocodb"], environment: f.environment, timeoutSeconds: 60)
        #expect(resynced.status == 0, "\(resynced.output)")
        let marks = try GenerationMarker().read(connection: f.pg, mongo: f.mongo)
        #expect(marks.nocodb == marks.mongo && (marks.nocodb ?? 0) > 9)
    }
}

/// Runs a PostgreSQL client tool (pg_dump, pg_restore) from the server's bin directory.
func pgTool(_ name: String, _ arguments: [String]) throws {
    let bin = ProcessInfo.processInfo.environment["NB_PG_BIN"] ?? "/usr/lib/postgresql/15/bin"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: bin + "/" + name)
    p.arguments = arguments
    let err = Pipe()
    p.standardError = err
    try p.run()
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw SetupError("\(name) failed: \(message)") }
}
