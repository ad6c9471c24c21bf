@testable import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

/// A change event's document stands for reading MongoDB again only when no bridge can have
/// written the record since the server produced it (`RecordSynchronizer.Hint.Streamed`). Each
/// test runs the decisions the flows would run, in the order the race produces, on real
/// servers: an app's update looked up for a batch, then another flow's write and agreed state
/// committed before the MongoDB → NocoDB flow decides on that batch.
@Suite struct StreamedDocumentTests {
    struct Setup {
        let f: BridgeFixture
        let connection: PostgresConnection
        let sync: RecordSynchronizer
        let table: String

        init() throws {
            f = try BridgeFixture()
            connection = try PostgresConnection(url: f.ownerConfiguration.postgresURL)
            let mapping = try #require(f.configuration.tables.first { $0.table == "waiter_ops" })
            let shape = try TableCatalog.shape(of: mapping, on: connection, columnKinds: f.configuration.columnKinds, fieldNames: [:])
            sync = RecordSynchronizer(shape: shape, policy: ConflictPolicy(),
                                      journal: WriteJournal(url: f.ownerConfiguration.postgresURL, instanceID: "streamed" + randomSuffix(6)))
            table = f.table("waiter_ops")
        }

        var now: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

        @discardableResult
        func decide(_ mode: SyncMode, _ hints: [RecordSynchronizer.Hint]) throws -> RecordSynchronizer.Outcome {
            try connection.bridgeTransaction { try sync.synchronize(mode: mode, hints: hints, connection: connection, mongo: f.mongo) }
        }

        /// A NocoDB row `key` crossed to MongoDB, agreed on both sides.
        func agreedRecord(_ key: String, action: String) throws {
            try f.sql("INSERT INTO \(table) (\"externalId\", action, notes) VALUES ($1, $2, 'n')", [key, action])
            try decide(.change(.nocodb), [.init(key: key, changedAt: now)])
            #expect(try f.document("waiter_ops", key: key)?["action"] == .string(action))
        }

        func appUpdate(_ key: String, action: String) throws -> Document {
            try f.mongoWrite { (c: MongoClient) throws(MongoError) in
                try c.updateOne(filter: ["externalId": .string(key)], update: ["$set": .document(["action": .string(action)])], collection: "waiter_ops")
            }
            return try #require(try f.document("waiter_ops", key: key))
        }

        func nocodbAction(_ key: String) throws -> String? {
            try f.sql("SELECT action FROM \(table) WHERE \"externalId\" = $1", [key]).rows.first?[0] ?? nil
        }
    }

    /// The app's update was looked up for a batch; then a NocoDB edit of the same record won
    /// the conflict and was written to MongoDB, before the batch is decided. Deciding on the
    /// event's document would undo that decision in NocoDB; the record is read instead. With
    /// a number read after that write, the same document does stand for a read (no read, and
    /// it is applied): what tells the two apart is only the number.
    @Test func anUpdateLookedUpBeforeABridgeWriteIsReadAgain() throws {
        let s = try Setup()
        try s.agreedRecord("k1", action: "seat")
        let before = try AgreedStateStore.lastSaved(on: s.connection)
        let looked = try s.appUpdate("k1", action: "order")

        try s.f.sql("UPDATE \(s.table) SET action = 'bill' WHERE \"externalId\" = 'k1'")
        try s.decide(.change(.nocodb), [.init(key: "k1", changedAt: s.now)])
        #expect(try s.f.document("waiter_ops", key: "k1")?["action"] == .string("bill"), "NocoDB wins the conflict (source priority)")

        let stale = try s.decide(.change(.mongo), [.init(key: "k1", changedAt: s.now, eventDocument: looked,
                                                         streamed: .init(document: looked, savedBefore: before))])
        #expect(stale.unreadDocuments == 0 && stale.nocodbWrites == 0)
        #expect(try s.nocodbAction("k1") == "bill")
        #expect(try s.f.document("waiter_ops", key: "k1")?["action"] == .string("bill"))

        // Now a real later app update, numbered after everything agreed: no read, applied.
        let after = try AgreedStateStore.lastSaved(on: s.connection)
        let fresh = try s.appUpdate("k1", action: "clear")
        let applied = try s.decide(.change(.mongo), [.init(key: "k1", changedAt: s.now, eventDocument: fresh,
                                                           streamed: .init(document: fresh, savedBefore: after))])
        #expect(applied.unreadDocuments == 1 && applied.nocodbWrites == 1)
        #expect(try s.nocodbAction("k1") == "clear")
    }

    /// An insert's document is as of the event, not of the batch: for a record already
    /// agreed on it is never taken for MongoDB's state, whatever number came with it; for a
    /// record nobody agreed on yet it is.
    @Test func anInsertsDocumentStandsForAReadOnlyOfANewRecord() throws {
        let s = try Setup()
        try s.agreedRecord("k2", action: "seat")
        let old = try #require(try s.f.document("waiter_ops", key: "k2"))
        var replaced = old
        replaced["action"] = .string("order")
        try s.f.mongoWrite { (c: MongoClient) throws(MongoError) in
            try c.updateOne(filter: ["externalId": .string("k2")], update: ["$set": .document(["action": .string("bill")])], collection: "waiter_ops")
        }
        // As if a replace event carrying "order" were read after MongoDB moved on to "bill".
        let outcome = try s.decide(.change(.mongo), [.init(key: "k2", changedAt: s.now, eventDocument: replaced,
                                                           streamed: .init(document: replaced, savedBefore: nil))])
        #expect(outcome.unreadDocuments == 0)
        #expect(try s.nocodbAction("k2") == "bill")

        let inserted: Document = ["_id": .objectId(.generate()), "externalId": .string("k3"), "action": .string("seat"), "notes": .string("m")]
        try s.f.mongoWrite { (c: MongoClient) throws(MongoError) in try c.insertOne(inserted, collection: "waiter_ops") }
        let new = try s.decide(.change(.mongo), [.init(key: "k3", changedAt: s.now, eventDocument: inserted,
                                                       streamed: .init(document: inserted, savedBefore: nil))])
        #expect(new.unreadDocuments == 1 && new.nocodbWrites == 1)
        #expect(try s.nocodbAction("k3") == "seat")
    }

    /// A bulk update of agreed records towards NocoDB through a running bridge: every value
    /// arrives, and none of the documents is read again (the flow's own counter).
    @Test func aBulkUpdateTowardsNocoDBArrivesWithoutReadingTheDocumentsAgain() throws {
        let f = try BridgeFixture()
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (\"externalId\", action, notes) SELECT 'b-' || i, 'seat', 'n' FROM generate_series(1, 200) i")
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        try eventually("inserted") { try f.count("waiter_ops") == 200 }
        try f.waitCaughtUp()
        // The stream's reader read the number before the getMore that brought the inserts'
        // echoes, which can be before their agreed states committed: such a batch is read
        // again (what this is about). Idle getMores (every 250 ms) read it afresh.
        usleep(1_000_000)
        let unreadBefore = bridge.toNocoDB.snapshot.documentsNotRead
        try f.mongoWrite { (c: MongoClient) throws(MongoError) in
            _ = try c.runCommand(["update": .string("waiter_ops"), "updates": .array([.document([
                "q": .document(["externalId": .document(["$regex": .string("^b-")])]),
                "u": .document(["$set": .document(["action": .string("order")])]), "multi": .bool(true)])])],
                database: f.mongoDatabase)
        }
        try eventually("updated in NocoDB", seconds: 60) {
            try f.sql("SELECT count(*) FROM \(t) WHERE action = 'order'").rows[0][0] == "200"
        }
        let notRead = bridge.toNocoDB.snapshot.documentsNotRead - unreadBefore
        #expect(notRead >= 200, "\(notRead)\n\(bridge.log.text())")
    }
}
