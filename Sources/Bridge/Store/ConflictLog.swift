import Postgres
import SyncCore

/// `nocobridge.conflicts`: every conflict the policy decided, with both versions, the winner
/// and the rule.
public struct ConflictLog: Sendable {
    public let collection: String

    public init(collection: String) {
        self.collection = collection
    }

    public func record(_ entries: [SyncPlan.Conflict], on connection: PostgresConnection) throws(PostgresError) {
        guard !entries.isEmpty else { return }
        try connection.query(cached: """
            INSERT INTO nocobridge.conflicts (collection, external_id, nocodb_version, mongo_version, winner, rule)
            SELECT $1, k, n::jsonb, m::jsonb, w, r FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS u(k, n, m, w, r)
            """, [collection,
                  PostgresConnection.arrayLiteral(entries.map(\.key)),
                  PostgresConnection.arrayLiteral(entries.map { RecordStateColumns.describe($0.nocodb) }),
                  PostgresConnection.arrayLiteral(entries.map { RecordStateColumns.describe($0.mongo) }),
                  PostgresConnection.arrayLiteral(entries.map(\.resolution.winner.rawValue)),
                  PostgresConnection.arrayLiteral(entries.map(\.resolution.rule.rawValue))])
    }
}
