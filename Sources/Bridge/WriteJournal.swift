import Foundation
import Postgres
import SyncCore

/// Closes the gap between a MongoDB write and the PostgreSQL commit that records it: a
/// bridge killed in between leaves MongoDB changed and the agreed state stale, and a record
/// NocoDB deletes meanwhile would look new on the MongoDB side and come back. Before each
/// bulk write the states about to be written are committed here, on a connection of their
/// own; the transaction recording the agreed state deletes them. What a dead writer leaves
/// is settled by `IntentRecovery` before anything is decided about those records.
///
/// The intents are committed with `synchronous_commit = off`: a bridge crash cannot lose
/// them (PostgreSQL has them), only a crash of PostgreSQL itself within `wal_writer_delay`,
/// which also loses the transaction they guard.
public final class WriteJournal: @unchecked Sendable {
    // @unchecked: the connection and counter are only touched under `lock`.
    private let url: String
    private let lock = NSLock()
    private var connection: PostgresConnection?
    private var nextBatch: Int64 = 1
    /// This writer's name in `write_intents.owner`: the process instance and a random part,
    /// so a reconnect (whose old session lock is gone) starts a new owner.
    private var currentOwner: String

    private let instanceID: String

    /// One bulk write's intents.
    public struct Batch: Sendable, Equatable {
        public let owner: String
        public let id: Int64
    }

    public init(url: String, instanceID: String) {
        self.url = url
        self.instanceID = instanceID
        currentOwner = Self.newOwner(instanceID)
    }

    /// A process instance: also the MongoDB `appName` suffix, so a successor can see this
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

    /// The advisory lock key an owner holds while alive, as SQL over the expression `owner`.
    static func ownerLockKey(_ owner: String) -> String { "hashtextextended('nocobridge.writer:' || \(owner), 0)" }

    /// Commits `intents` (key → state about to be written to `collection`) before the write.
    func record(_ intents: [(key: String, state: RecordState)], collection: String) throws -> Batch {
        try lock.withLock {
            do {
                let c = try connectedLocked()
                let batch = Batch(owner: currentOwner, id: nextBatch)
                nextBatch += 1
                try c.query(cached: """
                    INSERT INTO nocobridge.write_intents (owner, batch_id, collection, external_id, fields, at_ms, deleted)
                    SELECT $1, $2::bigint, $3, k, f::jsonb, a::bigint, d::boolean
                    FROM unnest($4::text[], $5::text[], $6::text[], $7::text[]) AS u(k, f, a, d)
                    """, [batch.owner, String(batch.id), collection] + SyncStateStore.columns(intents))
                return batch
            } catch {
                // A new session has no lock on the old owner: its intents become a dead
                // writer's, settled by recovery, and this writer goes on under a new name.
                connection = nil
                currentOwner = Self.newOwner(instanceID)
                throw error
            }
        }
    }

    private func connectedLocked() throws -> PostgresConnection {
        if let connection, connection.isConnected { return connection }
        connection = nil
        currentOwner = Self.newOwner(instanceID)
        let c = try PostgresConnection(url: url, applicationName: "nocobridge-journal")
        try c.query("SET synchronous_commit = off")
        try c.query("SELECT pg_advisory_lock(\(Self.ownerLockKey("$1")))", [currentOwner])
        connection = c
        return c
    }
}
