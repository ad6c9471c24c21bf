import Postgres
import Synchronization
import SyncCore

/// Closes the gap between a MongoDB write and the PostgreSQL commit that records it: a
/// bridge killed in between leaves MongoDB changed and the agreed state stale, and a record
/// NocoDB deletes meanwhile would look new on the MongoDB side and come back. Before each
/// bulk write the states about to be written are committed to `nocobridge.write_intents`, on
/// a connection of their own; the transaction recording the agreed state deletes them. What a
/// dead writer leaves is settled by `IntentRecovery` before anything is decided about those
/// records.
///
/// The intents are committed with `synchronous_commit = off`: a bridge crash cannot lose
/// them (PostgreSQL has them), only a crash of PostgreSQL itself within `wal_writer_delay`,
/// which also loses the transaction they guard.
public final class WriteJournal: Sendable {
    private let url: String
    private let instanceID: String
    private let state: Mutex<State>
    /// Owners with a MongoDB write of this process on its way, by count.
    private let writing = Mutex<[String: Int]>([:])

    private struct State: ~Copyable {
        var connection: PostgresConnection?
        var nextBatch: Int64 = 1
        /// This writer's name in `write_intents.owner`: the process instance and a random
        /// part, so a reconnect (whose old session lock is gone) starts a new owner.
        var owner: String
    }

    /// One bulk write's intents.
    public struct Batch: Sendable, Equatable {
        public let owner: String
        public let id: Int64
    }

    public init(url: String, instanceID: String) {
        self.url = url
        self.instanceID = instanceID
        state = Mutex(State(owner: Self.newOwner(instanceID)))
    }

    /// A process instance: also part of its MongoDB identity, so a successor can see this
    /// process's operations still running in the server after it died.
    public static func newInstanceID() -> String {
        String(UInt64.random(in: 0...UInt64.max), radix: 36)
    }

    static func newOwner(_ instance: String) -> String {
        instance + "/" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
    }

    /// The process instance an owner belongs to.
    static func instance(ofOwner owner: String) -> Substring {
        owner.split(separator: "/").first ?? Substring(owner)
    }

    /// Commits `intents` (key → state about to be written to `collection`) before the write.
    func record(_ intents: [(key: String, state: RecordState)], collection: String) throws -> Batch {
        try state.withLock { state throws -> Batch in
            do {
                let connection = try connected(&state)
                let batch = Batch(owner: state.owner, id: state.nextBatch)
                state.nextBatch += 1
                try IntentStore.record(intents, batch: batch, collection: collection, on: connection)
                return batch
            } catch {
                // A new session has no lock on the old owner: its intents become a dead
                // writer's, settled by recovery, and this writer goes on under a new name.
                state.connection = nil
                state.owner = Self.newOwner(instanceID)
                throw error
            }
        }
    }

    /// A batch whose transaction will not commit: its MongoDB write failed part-way, or
    /// something after the write did (a read that checks it, NocoDB's write, the bookkeeping).
    /// MongoDB may hold some of it already while the agreed state does not, and the owner is
    /// alive, so recovery would never look: a record NocoDB deletes before the retry would
    /// then look new on the MongoDB side and come back (a chaos run with failovers found 36).
    /// Its intents go to an owner nobody holds, so recovery settles them before those records
    /// are decided again. Should that fail too, this writer starts over under a new name,
    /// which makes every intent of the old one a dead writer's.
    func abandon(_ batch: Batch) {
        abandon(batchID: batch.id, owner: batch.owner, collection: nil)
    }

    /// Every intent of this writer for `collection`: called when a flow (re)starts, since a
    /// transaction that failed at COMMIT, after its MongoDB write, left its intents behind.
    /// A batch still in flight on the other flow of the collection is handed over too, but
    /// stays safe: recovery takes the records' locks first, which that batch holds until its
    /// transaction ends, and that transaction deletes its intents by the writer that
    /// journalled them (`journalled_by`), not by their current owner.
    public func abandonAll(collection: String) {
        let owner = state.withLock { $0.owner }
        abandon(batchID: nil, owner: owner, collection: collection)
    }

    private func abandon(batchID: Int64?, owner: String, collection: String?) {
        state.withLock { state in
            do {
                guard let connection = state.connection, connection.isConnected, state.owner == owner else {
                    // Its session is gone (or the owner was replaced): already a dead writer's.
                    return
                }
                try IntentStore.reassign(owner: owner, batchID: batchID, collection: collection, to: Self.newOwner(instanceID),
                                         on: connection)
            } catch {
                state.connection = nil
                state.owner = Self.newOwner(instanceID)
            }
        }
    }

    /// Runs `body`, the MongoDB write of `batch`. Meanwhile its owner counts as writing even
    /// when its session is gone (a PostgreSQL restart under a slow write): recovery in this
    /// process must not settle its intents as a dead writer's before the write has returned,
    /// or a write landing after the settlement (a record NocoDB deleted meanwhile, inserted
    /// again) would look like an app's.
    func whileWriting<T>(_ batch: Batch, _ body: () throws -> T) throws -> T {
        writing.withLock { $0[batch.owner, default: 0] += 1 }
        defer {
            writing.withLock { counts in
                counts[batch.owner, default: 1] -= 1
                if counts[batch.owner] == 0 { counts[batch.owner] = nil }
            }
        }
        return try body()
    }

    /// Whether a MongoDB write of `owner` is on its way in this process.
    func isWriting(owner: String) -> Bool {
        writing.withLock { $0[owner] != nil }
    }

    /// Long enough for another flow's transaction to get from its agreed-state save to its
    /// COMMIT in the usual case (PostgreSQL statements only; a record sent round again adds a
    /// MongoDB round), short: the journal's lock is held meanwhile, and every flow's next
    /// batch waits for it.
    static let lockTimeoutMilliseconds = 2_000

    private func connected(_ state: inout State) throws -> PostgresConnection {
        if let connection = state.connection, connection.isConnected { return connection }
        state.connection = nil
        state.owner = Self.newOwner(instanceID)
        let connection = try PostgresConnection(url: url, applicationName: "nocobridge-journal")
        try connection.query("SET synchronous_commit = off")
        // An abandon's UPDATE can wait on intents an open transaction of this process has
        // deleted: the batch's own (abandoned after its agreed-state save, on the thread that
        // holds it open), or another flow's, whose next round in the same transaction
        // journals again and so waits for this journal's lock. Either would wait forever; the
        // timeout ends it in the fallback (a new owner, the old one's intents a dead writer's
        // once that transaction has ended).
        try connection.query("SET lock_timeout = '\(Self.lockTimeoutMilliseconds)ms'")
        try IntentStore.holdOwner(state.owner, on: connection)
        state.connection = connection
        return connection
    }
}
