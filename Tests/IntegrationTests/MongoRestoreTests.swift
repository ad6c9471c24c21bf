import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

/// `mongorestore --drop` of a synced collection under the running bridge: the collection is
/// dropped and refilled with older documents. Taken as changes, those documents would
/// overwrite NocoDB's newer edits and bring back deleted records; the bridge takes it as the
/// restore it is.
@Suite struct MongoRestoreTests {
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func aCollectionRestoredUnderTheBridgeKeepsNocoDBsNewerState(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        try keepsNocoDBsNewerState(f) { backup in
            // mongorestore --drop of the backup.
            try f.mongoWrite { (c: MongoClient) throws(MongoError) in
                try c.dropCollection("waiter_ops")
                let result = try c.bulkWrite(backup.map { .insertOne($0) }, collection: "waiter_ops")
                #expect(result.writeErrors.isEmpty, "nothing wrote into the dropped collection before the restore: \(result.writeErrors)")
            }
        }
    }

    /// The other way a collection is replaced whole: another collection renamed onto it
    /// (`renameCollection` with `dropTarget`, which is also how an aggregation's `$out`
    /// lands). The flow's stream is opened on the collection; the rename must reach it all
    /// the same.
    @Test func aCollectionReplacedByARenameKeepsNocoDBsNewerState() throws {
        let f = try BridgeFixture(capture: .triggers)
        try keepsNocoDBsNewerState(f) { backup in
            try f.mongoWrite { (c: MongoClient) throws(MongoError) in
                let result = try c.bulkWrite(backup.map { .insertOne($0) }, collection: "waiter_ops_rebuilt")
                #expect(result.writeErrors.isEmpty)
                _ = try c.runCommand(["renameCollection": .string(f.configuration.mongoDatabase + ".waiter_ops_rebuilt"),
                                           "to": .string(f.configuration.mongoDatabase + ".waiter_ops"), "dropTarget": .bool(true)], database: "admin")
            }
        }
    }

    private func keepsNocoDBsNewerState(_ f: BridgeFixture, restore: ([Document]) throws -> Void) throws {
        f.configuration.restoreQuietPeriod = .seconds(2)
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (\"externalId\", action, table_no) VALUES ('a', 'v1', 1), ('b', 'v1', 2), ('c', 'v1', 3), ('d', 'v1', 4)")
        try eventually("four documents") { try f.count("waiter_ops") == 4 }
        let backup = try f.documents("waiter_ops")

        // After the backup: three edits, a delete and a new record, all synced.
        try f.sql("UPDATE \(t) SET action = 'v2' WHERE \"externalId\" IN ('a', 'b', 'c')")
        try f.sql("DELETE FROM \(t) WHERE \"externalId\" = 'd'")
        try f.sql("INSERT INTO \(t) (\"externalId\", action, table_no) VALUES ('e', 'v2', 5)")
        func mongoHoldsNocoDBsState() throws -> Bool {
            let docs = try f.documents("waiter_ops")
            let actions = Dictionary(docs.compactMap { doc -> (String, Value)? in
                guard case .string(let key)? = doc["externalId"] else { return nil }
                return (key, doc["action"] ?? .null)
            }, uniquingKeysWith: { a, _ in a })
            return actions == ["a": .string("v2"), "b": .string("v2"), "c": .string("v2"), "e": .string("v2")]
        }
        try eventually("MongoDB holds the newer state") { try mongoHoldsNocoDBsState() }

        try restore(backup)

        // The restored documents are older: MongoDB holds them until the table is reconciled.
        try explained(by: bridge) {
            try eventually("the restored collection brought back to NocoDB's newer state and the hold ended", seconds: 60) {
                try mongoHoldsNocoDBsState() && f.sql("SELECT count(*) FROM nocobridge.table_holds").rows[0][0] == "0"
            }
        }
        let rows = try f.sql("SELECT \"externalId\", action FROM \(t) WHERE NOT coalesce(\"__nc_deleted\", false) ORDER BY 1").rows
        #expect(rows.map { "\($0[0] ?? ""):\($0[1] ?? "")" } == ["a:v2", "b:v2", "c:v2", "e:v2"], "NocoDB kept every newer edit")
        #expect(try f.deadLetters().rows.isEmpty)
        // The bridge's indexes are back, and syncing goes on.
        let indexes = try f.mongo.withClient { (c: MongoClient) throws(MongoError) in try c.runCommand(["listIndexes": .string("waiter_ops")]) }
        #expect(JSON.serialize(.document(indexes)).contains(Installer.mongoIndexName))
        try f.sql("UPDATE \(t) SET action = 'v3' WHERE \"externalId\" = 'a'")
        try eventually("a later edit crosses") { try f.document("waiter_ops", key: "a")?["action"] == .string("v3") }
    }
}
