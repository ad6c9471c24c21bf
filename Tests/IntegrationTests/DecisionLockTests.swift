@testable import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

/// Decisions on one record are serialised by `AgreedStateStore.lock`, held until the deciding
/// transaction ends. Conditional writes alone do not make up for it: the agreed state a
/// decision starts from is what tells an app's edit from a conflict, and a decision that read
/// it while another one had already written MongoDB but not yet committed takes the other's
/// write for an app's edit.
@Suite struct DecisionLockTests {
    /// NocoDB's edit has been written to MongoDB by a decision still committing when an app
    /// edits the document again. The MongoDB → NocoDB decision for that edit, reading the
    /// agreed state from before the first decision, sees both sides changed: a conflict, which
    /// the default policy (NocoDB wins) settles by writing NocoDB's value back over the app's
    /// newer edit, before it ever waits on anything. Waiting for the record's lock, it decides
    /// from the committed state instead: a plain MongoDB edit, carried to NocoDB. A decision
    /// on another record of the table meanwhile must not wait (the lock is per record).
    @Test func aSecondDecisionOnARecordWaitsForTheFirstAndDecidesFromItsCommit() throws {
        let f = try BridgeFixture()
        let t = f.table("waiter_ops")
        let mapping = try #require(f.configuration.tables.first { $0.table == "waiter_ops" })
        func connection(_ name: String) throws -> PostgresConnection {
            try PostgresConnection(url: f.configuration.postgresURL, applicationName: name)
        }
        let first = try connection("nbtest-first"), other = try connection("nbtest-other")
        let shape = try TableCatalog.shape(of: mapping, on: first, columnKinds: f.configuration.columnKinds, fieldNames: [:])
        let sync = RecordSynchronizer(shape: shape, policy: ConflictPolicy(), history: f.configuration.history)
        let mongo = f.mongo
        @Sendable func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
        @Sendable func decide(_ key: String, _ mode: SyncMode, event: Document? = nil, on c: PostgresConnection) throws -> RecordSynchronizer.Outcome {
            try c.bridgeTransaction {
                try sync.synchronize(mode: mode, hints: [.init(key: key, changedAt: now(), eventDocument: event)], connection: c, mongo: mongo)
            }
        }
        func setAction(_ key: String, _ action: String) throws -> Document {
            try f.mongoWrite { (c: MongoClient) throws(MongoError) in
                _ = try c.bulkWrite([.updateOne(filter: ["externalId": .string(key)], update: ["$set": .document(["action": .string(action)])], upsert: false)],
                                    collection: "waiter_ops")
            }
            return try #require(try f.document("waiter_ops", key: key))
        }
        func action(_ key: String) throws -> String? {
            try f.sql("SELECT action FROM \(t) WHERE \"externalId\" = $1", [key]).rows.first?[0]
        }

        // Both records agreed on both sides.
        try f.sql("INSERT INTO \(t) (\"externalId\", action) VALUES ('k-held', 'seat'), ('k-free', 'seat')")
        for key in ["k-held", "k-free"] { _ = try decide(key, .change(.nocodb), on: first) }
        #expect(try f.document("waiter_ops", key: "k-held")?["action"] == .string("seat"))

        // The first decision: NocoDB's edit, written to MongoDB, its transaction still open.
        try f.sql("UPDATE \(t) SET action = 'order' WHERE \"externalId\" = 'k-held'")
        try first.execute(script: BridgeOrigin.begin)
        let firstOutcome = try sync.synchronize(mode: .change(.nocodb), hints: [.init(key: "k-held", changedAt: now())],
                                                connection: first, mongo: f.mongo)
        #expect(firstOutcome.mongoWrites == 1)
        // An app edits the document after the bridge wrote it.
        let edited = try setAction("k-held", "pay")

        // The decision for the app's edit, on a connection and thread of its own.
        let url = f.configuration.postgresURL
        let secondPID = Locked<String?>(nil)
        let secondDone = DispatchSemaphore(value: 0)
        let secondResult = Locked<Result<RecordSynchronizer.Outcome, any Error>?>(nil)
        Thread {
            secondResult.set(Result(catching: {
                let second = try PostgresConnection(url: url, applicationName: "nbtest-second")
                secondPID.set(try second.query("SELECT pg_backend_pid()").rows.first?[0] ?? nil)
                return try decide("k-held", .change(.mongo), event: edited, on: second)
            }))
            secondDone.signal()
        }.start()
        defer { if secondResult.get() == nil { _ = try? first.query("ROLLBACK"); _ = secondDone.wait(timeout: .now() + 30) } }

        try eventually("the second decision waits on a lock or finishes") {
            if secondResult.get() != nil { return true }
            guard let pid = secondPID.get() else { return false }
            return try f.sql("SELECT count(*) FROM pg_locks WHERE pid = $1::int AND NOT granted", [pid]).rows[0][0] != "0"
        }
        let pid = try #require(secondPID.get())
        let waitingOn = try f.sql("SELECT locktype FROM pg_locks WHERE pid = $1::int AND NOT granted", [pid]).rows.compactMap { $0[0] }
        #expect(waitingOn == ["advisory"], "the second decision went ahead instead of waiting for the record's lock")
        #expect(secondResult.get() == nil, "the second decision finished before the first committed")
        #expect(try f.document("waiter_ops", key: "k-held")?["action"] == .string("pay"), "the app's edit was overwritten before the first decision committed")

        // Another record of the table is decided meanwhile; a wait would hit the lock timeout.
        _ = try setAction("k-free", "leave")
        try other.query("SET lock_timeout = '2s'")
        let otherOutcome = try decide("k-free", .change(.mongo), on: other)
        #expect(otherOutcome.nocodbWrites == 1)
        #expect(try action("k-free") == "leave")
        #expect(secondResult.get() == nil)

        try first.query("COMMIT")
        #expect(secondDone.wait(timeout: .now() + 20) == .success)
        let outcome = try #require(secondResult.get()).get()
        #expect(outcome.conflicts == 0, "the second decision took the first one's write for an app's edit")
        #expect(outcome.nocodbWrites == 1)
        #expect(outcome.mongoWrites == 0)
        #expect(try f.document("waiter_ops", key: "k-held")?["action"] == .string("pay"), "the app's edit was lost")
        #expect(try action("k-held") == "pay")
        #expect(try f.sql("SELECT count(*) FROM nocobridge.conflicts").rows[0][0] == "0")
        let agreed = try f.sql("SELECT fields->>'action' FROM nocobridge.agreed_state WHERE external_id = 'k-held'").rows.first?[0]
        #expect(agreed == "pay")
    }
}

/// A value shared with a thread the test starts.
final class Locked<Value>: @unchecked Sendable {
    // @unchecked: every access goes through `lock`.
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func get() -> Value { lock.withLock { value } }
    func set(_ new: Value) { lock.withLock { value = new } }
}
