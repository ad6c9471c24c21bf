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

    private func connected(_ state: inout State) throws -> PostgresConnection {
        if let connection = state.connection, connection.isConnected { return connection }
        state.connection = nil
        state.owner = Self.newOwner(instanceID)
        let connection = try PostgresConnection(url: url, applicationName: "nocobridge-journal")
        try connection.query("SET synchronous_commit = off")
        try IntentStore.holdOwner(state.owner, on: connection)
        state.connection = connection
        return connection
    }
}
