import Postgres
import SyncCore

/// `nocobridge.write_intents`: MongoDB writes committed before they are made, so a writer
/// that dies between its MongoDB write and the PostgreSQL commit recording it leaves a trace
/// (see `WriteJournal`, `IntentRecovery`). `owner` names the writer, which holds a session
/// advisory lock on it while alive.
enum IntentStore {
    /// The advisory lock key an owner holds while alive, as SQL over the expression `owner`.
    static func ownerLockKey(_ owner: String) -> String { "hashtextextended('nocobridge.writer:' || \(owner), 0)" }

    static func record(_ intents: [(key: String, state: RecordState)], batch: WriteJournal.Batch, collection: String,
                       on connection: PostgresConnection) throws(PostgresError) {
        try connection.query(cached: """
            INSERT INTO nocobridge.write_intents (owner, journalled_by, batch_id, collection, external_id, fields, at_ms, deleted)
            SELECT $1, $1, $2::bigint, $3, k, f::jsonb, a::bigint, d::boolean
            FROM unnest($4::text[], $5::text[], $6::text[], $7::text[]) AS u(k, f, a, d)
            """, [batch.owner, String(batch.id), collection] + RecordStateColumns.arrays(intents))
    }

    /// Takes the owner's liveness lock for this session.
    static func holdOwner(_ owner: String, on connection: PostgresConnection) throws(PostgresError) {
        try connection.query("SELECT pg_advisory_lock(\(ownerLockKey("$1")))", [owner])
    }

    /// Owners nobody holds the lock of: dead writers. Each lock is given back at once (CASE
    /// fixes the order: unlock only what was locked).
    static func deadOwners(on connection: PostgresConnection) throws(PostgresError) -> [String] {
        try connection.query(cached: """
            SELECT owner FROM (SELECT DISTINCT owner, \(ownerLockKey("owner")) AS k FROM nocobridge.write_intents) o
            WHERE CASE WHEN pg_try_advisory_lock(k) THEN pg_advisory_unlock(k) ELSE false END
            """, []).named.compactMap { $0["owner"] }
    }

    /// The owners of one process instance (`WriteJournal` names them `<instance>/<random>`),
    /// alive or not: a lease taken from that instance settles them.
    static func owners(ofInstance instance: String, on connection: PostgresConnection) throws(PostgresError) -> [String] {
        try connection.query("""
            SELECT DISTINCT owner FROM nocobridge.write_intents WHERE split_part(owner, '/', 1) = $1
            """, [instance]).named.compactMap { $0["owner"] }
    }

    /// Keys with intents of `owners`, per collection.
    static func keys(ofOwners owners: [String], on connection: PostgresConnection) throws(PostgresError) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for row in try connection.query("""
            SELECT DISTINCT collection, external_id FROM nocobridge.write_intents WHERE owner = ANY($1::text[])
            """, [PostgresConnection.arrayLiteral(owners)]).named {
            if let collection = row["collection"], let key = row["external_id"] { out[collection, default: []].append(key) }
        }
        return out
    }

    /// The latest intent of `owners` per key (`rank` 2: the one before it, and so on).
    static func latest(collection: String, keys: [String], owners: [String], rank: Int = 1,
                       on connection: PostgresConnection) throws -> [String: RecordState] {
        try RecordStateColumns.decode(connection.query("""
            SELECT external_id, fields, at_ms, deleted FROM (
                SELECT external_id, fields::text AS fields, at_ms, deleted,
                       row_number() OVER (PARTITION BY external_id ORDER BY id DESC) AS rank
                FROM nocobridge.write_intents
                WHERE collection = $1 AND external_id = ANY($2::text[]) AND owner = ANY($3::text[])) w
            WHERE rank = $4::bigint
            """, [collection, PostgresConnection.arrayLiteral(keys), PostgresConnection.arrayLiteral(owners), String(rank)]))
    }

    /// Hands intents of a live owner to `heir`, an owner nobody holds: a dead writer's, for
    /// recovery to settle. One batch (`batchID`), or every batch of `collection`.
    static func reassign(owner: String, batchID: Int64?, collection: String?, to heir: String,
                         on connection: PostgresConnection) throws(PostgresError) {
        try connection.query(cached: """
            UPDATE nocobridge.write_intents SET owner = $4
            WHERE owner = $1 AND ($2::bigint IS NULL OR batch_id = $2::bigint) AND ($3::text IS NULL OR collection = $3)
            """, [owner, batchID.map { String($0) }, collection, heir])
    }

    /// Deletes the intents of `owners` for `keys` journalled more than `seconds` ago.
    static func delete(collection: String, keys: [String], owners: [String], olderThan seconds: Int,
                       on connection: PostgresConnection) throws(PostgresError) {
        try connection.query("""
            DELETE FROM nocobridge.write_intents
            WHERE collection = $1 AND external_id = ANY($2::text[]) AND owner = ANY($3::text[])
              AND created_at < now() - make_interval(secs => $4::int)
            """, [collection, PostgresConnection.arrayLiteral(keys), PostgresConnection.arrayLiteral(owners), String(seconds)])
    }

    static func delete(collection: String, keys: [String], owners: [String], on connection: PostgresConnection) throws(PostgresError) {
        try connection.query("""
            DELETE FROM nocobridge.write_intents
            WHERE collection = $1 AND external_id = ANY($2::text[]) AND owner = ANY($3::text[])
            """, [collection, PostgresConnection.arrayLiteral(keys), PostgresConnection.arrayLiteral(owners)])
    }
}
