@testable import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

/// A writer's session can die while its MongoDB write is still on its way (a PostgreSQL
/// restart under a slow write): its owner lock is gone, so it looks dead, but the write may
/// land a moment later. Recovery in the same process settling it before then would delete the
/// intent that says the write is the bridge's own, and the document landing afterwards (a
/// record NocoDB deleted meanwhile) would be taken for an app's insert: a chaos run with
/// PostgreSQL restarts found two such records back on both sides.
@Suite struct WriteJournalTests {
    @Test func aWriterWhoseSessionDiedIsNotSettledWhileItsWriteIsOnItsWay() throws {
        let f = try BridgeFixture()
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (\"externalId\", action) VALUES ('k-slow', 'seat')")
        let connection = try PostgresConnection(url: f.ownerConfiguration.postgresURL)
        let mapping = try #require(f.configuration.tables.first { $0.table == "waiter_ops" })
        let shape = try TableCatalog.shape(of: mapping, on: connection, columnKinds: f.configuration.columnKinds, fieldNames: [:])
        let journal = WriteJournal(url: f.ownerConfiguration.postgresURL, instanceID: f.configuration.instanceID)
        let sync = RecordSynchronizer(shape: shape, policy: ConflictPolicy(), journal: journal)
        let document: Document = ["externalId": .string("k-slow"), "action": .string("seat")]
        let state = try sync.writer.codec.state(document: document, fallbackAt: 1)
        let batch = try journal.record([("k-slow", state)], collection: "waiter_ops")
        let recovery = IntentRecovery(configuration: f.configuration, mongo: f.mongo, logger: testLogger(), journal: journal)
        func intents() throws -> String? { try f.sql("SELECT count(*) FROM nocobridge.write_intents").rows[0][0] }

        try journal.whileWriting(batch) {
            // PostgreSQL drops the journal's session while the write is on its way.
            try f.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'nocobridge-journal'")
            try eventually("the writer's owner lock is gone") { try IntentStore.deadOwners(on: connection).contains(batch.owner) }
            #expect(try recovery.run(synchronizers: [sync], connection: connection) == 0, "settled while its write was on its way")
            #expect(try intents() == "1")
            // The write lands.
            try f.mongoWrite { (c: MongoClient) throws(MongoError) in _ = try c.bulkWrite([.insertOne(document)], collection: "waiter_ops") }
        }
        #expect(try recovery.run(synchronizers: [sync], connection: connection) == 1)
        #expect(try intents() == "0")
        #expect(try f.sql("SELECT deleted FROM nocobridge.agreed_state WHERE external_id = 'k-slow'").rows.first?[0] == "f")
        #expect(try f.count("waiter_ops") == 1)
    }
}
