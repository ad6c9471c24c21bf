/// Turns decoded `pgoutput` messages into the bridge's captured changes: per committed
/// transaction, which records of which synced table changed. Transactions carrying the
/// bridge's own logical decoding message are dropped (echo suppression); open transactions
/// are held until their commit, so nothing uncommitted is ever applied. Pure: tested from
/// messages alone.
public struct LogicalChangeCollector: Sendable {
    public struct Batch: Sendable, Equatable {
        public var changes: [CapturedChange] = []
        /// Commit time of the oldest change (ms since 1970), for lag.
        public var oldest: Int64?
        /// Change id → the row's `id` for rows written without `externalId` (no trigger
        /// assigns one in this mode; the bridge does).
        public var keylessRows: [Int64: String] = [:]
        /// Change id → the row's `id` for rows inserted with a key: a copy of another row
        /// (NocoDB's "duplicate row" copies `externalId`) is a new record and needs a new key.
        public var insertedRows: [Int64: String] = [:]
        /// The transactions the changes come from: PostgreSQL sends a commit a moment before
        /// the transaction becomes visible to other sessions, so the applier waits for these.
        public var transactionIDs: Set<UInt32> = []
    }

    private struct Relation: Sendable {
        let table: String
        let keyIndex: Int?
        let idIndex: Int?
    }

    private var relations: [UInt32: Relation] = [:]
    private var open: [(table: String, operation: CapturedChange.Operation, key: String?, oldKey: String?, rowID: String?)]?
    private var skipping = false
    private var openXID: UInt32 = 0
    private var pending: [String: Batch] = [:]
    private var pendingEnd: PgOutput.LSN = 0
    private var sequence: Int64 = 0
    public private(set) var pendingCount = 0

    /// The prefix of the logical decoding message the bridge emits in each transaction that
    /// writes NocoDB's tables (`BridgeOrigin.logicalMessage`).
    public static let ownMessagePrefix = "nocobridge"

    public init() {}

    /// No transaction open and nothing waiting to be applied.
    public var isIdle: Bool { open == nil && pendingCount == 0 }

    /// Takes one message; returns a warning for the log when the message cannot be captured.
    public mutating func add(_ message: PgOutput.Message) -> String? {
        switch message {
        case .relation(let id, let namespace, let name, _, let columns):
            relations[id] = Relation(table: namespace + "." + name, keyIndex: columns.firstIndex { $0.name == RowMapper.keyField },
                                     idIndex: columns.firstIndex { $0.name == "id" })
        case .begin(_, _, let xid):
            open = []
            skipping = false
            openXID = xid
        case .origin:
            // Replication origins marked the bridge's writes before the message did; an
            // origin alone no longer means anything (other tools set them too).
            break
        case .message(let transactional, let prefix, _):
            // The bridge marks its own writes with a transactional message (any number of
            // sessions can, where a replication origin serves one session at a time).
            if transactional, prefix == Self.ownMessagePrefix, open != nil { skipping = true }
        case .insert(let relation, let new):
            return record(relation, .insert, key: text(new, relation), oldKey: nil, rowID: rowID(new, relation))
        case .update(let relation, let old, let new):
            // An unchanged TOASTed key is not resent: the old row (REPLICA IDENTITY FULL) has it.
            let oldKey = old.flatMap { text($0, relation) }
            let key = text(new, relation) ?? oldKey
            return record(relation, .update, key: key, oldKey: oldKey ?? key, rowID: rowID(new, relation))
        case .delete(let relation, let old):
            let key = text(old, relation)
            let warning = record(relation, .delete, key: key, oldKey: nil, rowID: nil)
            if warning == nil, key == nil, let table = relations[relation]?.table {
                return "a delete on \(table) carries no externalId: set REPLICA IDENTITY FULL on the table (nocobridge install --replica-identity-full)"
            }
            return warning
        case .truncate(let ids):
            let tables = ids.compactMap { relations[$0]?.table }
            return "TRUNCATE of \(tables.joined(separator: ", ")) is not synced record by record; run `nocobridge resync`"
        case .commit(_, let end, let commitTime):
            defer { open = nil; skipping = false }
            // A skipped (the bridge's own) transaction is done as soon as what came before it is.
            pendingEnd = max(pendingEnd, end)
            guard let changes = open, !skipping else { return nil }
            let at = (commitTime + PgOutput.postgresEpochOffsetMicroseconds) / 1000
            for c in changes {
                sequence += 1
                var batch = pending[c.table] ?? Batch()
                batch.changes.append(CapturedChange(id: sequence, operation: c.operation, key: c.key, oldKey: c.oldKey, changedAt: at))
                if let row = c.rowID {
                    if c.key == nil || c.key == "" {
                        batch.keylessRows[sequence] = row
                    } else if c.operation == .insert {
                        batch.insertedRows[sequence] = row
                    }
                }
                batch.oldest = min(batch.oldest ?? at, at)
                batch.transactionIDs.insert(openXID)
                pending[c.table] = batch
                pendingCount += 1
            }
        case .type, .other:
            break
        }
        return nil
    }

    /// The committed changes per table and the WAL end of the last transaction they cover.
    public mutating func take() -> (batches: [String: Batch], end: PgOutput.LSN) {
        defer { pending = [:]; pendingCount = 0 }
        return (pending, pendingEnd)
    }

    private func text(_ tuple: [PgOutput.TupleValue], _ relation: UInt32) -> String? {
        value(tuple, at: relations[relation]?.keyIndex)
    }

    private func rowID(_ tuple: [PgOutput.TupleValue], _ relation: UInt32) -> String? {
        value(tuple, at: relations[relation]?.idIndex)
    }

    private func value(_ tuple: [PgOutput.TupleValue], at index: Int?) -> String? {
        guard let index, index < tuple.count, case .text(let value) = tuple[index] else { return nil }
        return value
    }

    private mutating func record(_ relation: UInt32, _ operation: CapturedChange.Operation, key: String?, oldKey: String?,
                                 rowID: String?) -> String? {
        guard let table = relations[relation]?.table else { return "a change to an unknown relation \(relation) was skipped" }
        open?.append((table, operation, key, oldKey, rowID))
        return nil
    }
}
