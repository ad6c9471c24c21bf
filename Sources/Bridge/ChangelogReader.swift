import Postgres
import SyncCore

/// Reads and acknowledges the trigger changelog of one table.
///
/// Rows are deleted only after their changes are committed in MongoDB. Reading "the lowest
/// ids still present" instead of "ids above the last one seen" is what makes a change
/// committed late by a long transaction (a low id that becomes visible after higher ids were
/// consumed) impossible to skip.
public struct ChangelogReader: Sendable {
    public let shape: TableShape
    private let fetchSQL: String

    public struct Batch: Sendable {
        public let changes: [CapturedChange]
        /// Commit time of the oldest change, milliseconds since the epoch, for lag.
        public let oldestChangedAtMs: Int64?
    }

    public init(shape: TableShape) {
        self.shape = shape
        // Only which records changed: the current rows are read when applied. (Decoding
        // row_data here would also stop the table at a JSON field holding \u0000, which
        // PostgreSQL's json functions refuse to convert.)
        fetchSQL = """
            SELECT c.id, c.op, c.key, c.old_key, (extract(epoch from c.changed_at) * 1000)::bigint
            FROM nocobridge.changelog c
            WHERE c.schema_name = $1 AND c.table_name = $2
            ORDER BY c.id
            LIMIT $3
            """
    }

    public func fetch(limit: Int, on connection: PostgresConnection) throws(PostgresError) -> Batch {
        let result = try connection.query(cached: fetchSQL, [shape.mapping.schema, shape.mapping.table, String(limit)])
        var changes: [CapturedChange] = []
        changes.reserveCapacity(result.rows.count)
        var oldest: Int64?
        for row in result.rows {
            guard let id = row[0].flatMap({ Int64($0) }),
                  let op = row[1].flatMap({ CapturedChange.Operation(rawValue: $0) }) else { continue }
            if oldest == nil { oldest = row[4].flatMap { Int64($0) } }
            changes.append(CapturedChange(id: id, operation: op, key: row[2], oldKey: row[3],
                                          changedAt: row[4].flatMap { Int64($0) } ?? 0))
        }
        return Batch(changes: changes, oldestChangedAtMs: oldest)
    }

    /// Deletes acknowledged changes and records rejected ones as dead letters, atomically.
    public func acknowledge(_ ids: [Int64], rejections: [Rejection], on connection: PostgresConnection) throws(PostgresError) {
        guard !ids.isEmpty else { return }
        let idList = PostgresConnection.arrayLiteral(ids.map { String($0) })
        if rejections.isEmpty {
            try connection.query(cached: "DELETE FROM nocobridge.changelog WHERE id = ANY($1::bigint[])", [idList])
            return
        }
        try DeadLetterStore.recordAcknowledging(changelog: ids, rejections: rejections, source: shape.mapping.qualifiedName,
                                                on: connection)
    }
}
