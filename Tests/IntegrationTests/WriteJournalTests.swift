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
        let d = try DecisionFixture(f)
        let (connection, journal, sync) = (d.connection, d.journal, d.sync)
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

    /// A flow (re)starting hands its writer's intents for the collection to a dead writer's
    /// name (`abandonAll`), including a batch the collection's other flow has in flight. That
    /// batch's commit must still delete them: left behind, they sat 30 s as a dead writer's
    /// unlanded intents, and a `mongorestore` bringing the written documents back made them
    /// look landed (the restore tests timed out about one full run in three).
    @Test func aBatchInFlightWhenTheOtherFlowRestartsLeavesNoIntentBehind() throws {
        let f = try BridgeFixture()
        let d = try DecisionFixture(f)
        let (connection, journal, sync) = (d.connection, d.journal, d.sync)
        let state = try sync.writer.codec.state(document: ["externalId": .string("k-busy"), "action": .string("seat")], fallbackAt: 1)
        func intents() throws -> [String] { try f.sql("SELECT owner FROM nocobridge.write_intents").rows.compactMap { $0[0] } }

        let batch = try journal.record([("k-busy", state)], collection: "waiter_ops")
        // The other flow of the collection restarts while the batch's transaction is open.
        journal.abandonAll(collection: "waiter_ops")
        #expect(try intents().allSatisfy { $0 != batch.owner }, "the restart handed the intents over")
        try connection.bridgeTransaction { try sync.agreedStore.save([("k-busy", state)], settling: batch, on: connection) }
        #expect(try intents().isEmpty, "the batch's commit left its intents behind")

        // A batch whose transaction rolled back keeps them, for recovery to settle.
        let failed = try journal.record([("k-busy", state)], collection: "waiter_ops")
        journal.abandonAll(collection: "waiter_ops")
        _ = try? connection.bridgeTransaction { () throws -> Void in
            try sync.agreedStore.save([("k-busy", state)], settling: failed, on: connection)
            throw CancellationError()
        }
        #expect(try intents().count == 1)
    }

    /// A batch abandoned after its agreed-state save (a later statement of its transaction
    /// failed) hands over intents that its own open transaction has deleted: the journal's
    /// UPDATE waits on those rows, and in the bridge the flow waiting is the one holding the
    /// transaction open. The journal's lock timeout ends the wait; the writer goes on under a
    /// new name, and once the transaction has rolled back its intents are a dead writer's.
    @Test func aBatchAbandonedInsideItsOwnTransactionDoesNotWaitForIt() throws {
        let f = try BridgeFixture()
        let d = try DecisionFixture(f)
        let (connection, journal, sync) = (d.connection, d.journal, d.sync)
        let state = try sync.writer.codec.state(document: ["externalId": .string("k-own"), "action": .string("seat")], fallbackAt: 1)
        let batch = try journal.record([("k-own", state)], collection: "waiter_ops")
        let abandoned = DispatchSemaphore(value: 0)
        var returned = false

        _ = try? connection.bridgeTransaction { () throws -> Void in
            try sync.agreedStore.save([("k-own", state)], settling: batch, on: connection)
            // On a thread of its own, so that a wait that never ends fails the test instead
            // of hanging it: the transaction ends when this thread gives up.
            let started = Date()
            Thread { journal.abandon(batch); abandoned.signal() }.start()
            returned = abandoned.wait(timeout: .now() + 10) == .success
            #expect(returned, "abandon waited on the batch's own transaction")
            #expect(Date().timeIntervalSince(started) * 1000 >= Double(WriteJournal.lockTimeoutMilliseconds) - 100)
            throw CancellationError()
        }
        if !returned { _ = abandoned.wait(timeout: .now() + 10) }
        let owners = try f.sql("SELECT owner FROM nocobridge.write_intents").rows.compactMap { $0[0] }
        #expect(owners == [batch.owner], "the rollback brought the batch's intents back")
        // The dropped session's lock goes when its backend has exited, a moment after.
        try eventually("the old owner's intents are a dead writer's") { try IntentStore.deadOwners(on: connection).contains(batch.owner) }
        let next = try journal.record([("k-own", state)], collection: "waiter_ops")
        #expect(next.owner != batch.owner)
    }
}
