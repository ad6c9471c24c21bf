import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

/// `nocobridge dlq`: list, show, retry and drop dead letters. A retry re-decides the record
/// from both sides' current state through the normal conflict policy, so a row or document
/// fixed since goes through, and one still bad stays (with the new error and a retry count).
public struct DeadLetters: Sendable {
    public let configuration: BridgeConfiguration
    public let logger: Logger

    public init(configuration: BridgeConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public struct Entry: Sendable, Codable {
        public let id: Int64
        public let direction: String
        public let source: String
        public let key: String?
        public let field: String?
        public let error: String
        public let createdAt: String
        public let retries: Int
        public let payload: String?
    }

    public struct NotFound: Error, CustomStringConvertible {
        public let id: Int64
        public var description: String { "dead letter \(id) does not exist" }
    }

    public func list(limit: Int = 100) throws -> [Entry] {
        let c = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-dlq")
        return try c.query("""
            SELECT id, direction, source_name, key, field, error, created_at::text, retries, NULL
            FROM nocobridge.dead_letters ORDER BY id LIMIT $1
            """, [String(limit)]).rows.map(Self.entry)
    }

    /// Entries with their payloads for the console, newest first; `sources` narrows to a
    /// table's names (`schema.table`, `db.collection`), `key` to one record.
    public static func entries(sources: [String]?, key: String?, limit: Int, on c: PostgresConnection) throws -> [Entry] {
        try c.query("""
            SELECT id, direction, source_name, key, field, error,
                   to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), retries, jsonb_pretty(payload)
            FROM nocobridge.dead_letters
            WHERE ($1::text[] IS NULL OR source_name = ANY($1::text[])) AND ($2::text IS NULL OR key = $2)
            ORDER BY id DESC LIMIT $3
            """, [sources.map { PostgresConnection.arrayLiteral($0) }, key, String(limit)]).rows.map(Self.entry)
    }

    public func show(_ id: Int64) throws -> Entry {
        let c = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-dlq")
        guard let row = try c.query("""
            SELECT id, direction, source_name, key, field, error, created_at::text, retries, payload::text
            FROM nocobridge.dead_letters WHERE id = $1
            """, [String(id)]).rows.first else { throw NotFound(id: id) }
        return Self.entry(row)
    }

    public func drop(_ id: Int64) throws {
        let c = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-dlq")
        guard try drop([id], on: c) == 1 else { throw NotFound(id: id) }
    }

    /// Drops several entries in one statement; returns how many existed.
    public func drop(_ ids: [Int64], on c: PostgresConnection) throws -> Int {
        try c.query("DELETE FROM nocobridge.dead_letters WHERE id = ANY($1::bigint[])",
                    [PostgresConnection.arrayLiteral(ids.map { String($0) })]).affected
    }

    /// Retries one entry (or all when `id` is nil); returns (resolved, still failing).
    public func retry(_ id: Int64?) throws -> (resolved: Int, failing: Int) {
        let c = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-dlq")
        if let id {
            guard try c.query("SELECT 1 FROM nocobridge.dead_letters WHERE id = $1", [String(id)]).rows.count == 1 else { throw NotFound(id: id) }
        }
        return try retry(id.map { [$0] }, on: c)
    }

    /// Retries the given entries (every entry when nil) on the caller's connection, each in
    /// its own transaction; ids that no longer exist are skipped.
    public func retry(_ ids: [Int64]?, on c: PostgresConnection) throws -> (resolved: Int, failing: Int) {
        let rows = try c.query(ids == nil
            ? "SELECT id, direction, source_name, key FROM nocobridge.dead_letters ORDER BY id"
            : "SELECT id, direction, source_name, key FROM nocobridge.dead_letters WHERE id = ANY($1::bigint[]) ORDER BY id",
            ids.map { [PostgresConnection.arrayLiteral($0.map { String($0) })] } ?? []).rows
        guard !rows.isEmpty else { return (0, 0) }
        let mongo = try MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase,
                                        appName: configuration.mongoAppName)
        let journal = WriteJournal(url: configuration.postgresURL, instanceID: configuration.instanceID)
        var synchronizers: [String: RecordSynchronizer] = [:]
        for mapping in configuration.tables {
            let shape = try TableCatalog.shape(of: mapping, on: c, columnKinds: configuration.columnKinds, fieldNames: configuration.fieldNames)
            let sync = RecordSynchronizer(shape: shape, policy: configuration.policy, journal: journal,
                                          nocodbEditTime: configuration.nocodbEditTime, history: configuration.history)
            synchronizers[mapping.qualifiedName] = sync
            synchronizers[configuration.mongoDatabase + "." + mapping.collection] = sync
        }
        var resolved = 0, failing = 0
        for row in rows {
            guard let entryID = row[0], let source = row[2], let sync = synchronizers[source], let key = row[3], !key.isEmpty else {
                failing += 1
                logger.warning("dead letter cannot be retried (no key, or its table is not synced)", metadata: ["dlq.id": "\(row[0] ?? "-")"])
                continue
            }
            let changed: Side = row[1] == "to-nocodb" ? .mongo : .nocodb
            let rejections = try c.bridgeTransaction {
                let outcome = try sync.synchronize(changed: changed, hints: [.init(key: key, changedAt: wallClockMilliseconds())],
                                                   connection: c, mongo: mongo)
                if let again = outcome.rejections.first {
                    try c.query("UPDATE nocobridge.dead_letters SET retries = retries + 1, last_retry_at = now(), error = $2, field = $3 WHERE id = $1",
                                [entryID, again.reason, again.field])
                } else {
                    try c.query("DELETE FROM nocobridge.dead_letters WHERE id = $1", [entryID])
                }
                return outcome.rejections
            }
            if rejections.isEmpty { resolved += 1 } else { failing += 1 }
        }
        return (resolved, failing)
    }

    static func entry(_ row: [String?]) -> Entry {
        Entry(id: Int64(row[0] ?? "0") ?? 0, direction: row[1] ?? "", source: row[2] ?? "", key: row[3], field: row[4],
              error: row[5] ?? "", createdAt: row[6] ?? "", retries: Int(row[7] ?? "0") ?? 0, payload: row[8])
    }
}
