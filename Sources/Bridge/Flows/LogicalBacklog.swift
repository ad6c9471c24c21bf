import Synchronization
import SyncCore

/// What the logical slot has delivered and the tables' flows have not applied yet, per table,
/// coalesced by key: the bridge syncs record states, so a record changed ten times while its
/// table's flow was busy is one pending key. Memory is bounded by the keys that changed, not by
/// the changes; the slot reader never waits for a busy table, so one table's bulk edit never
/// holds up another's next change.
///
/// The slot may be confirmed only up to what every table has applied: for a table with
/// changes still waiting or being applied, the end of the last commit before the first of
/// them (`confirmable`).
final class LogicalBacklog: Sendable {
    /// Changes of one table taken together: the keys, and what assigning keys and waiting for
    /// visibility need.
    struct Work: Sendable {
        var changes: [CapturedChange] = []
        var keylessRows: [Int64: String] = [:]
        var insertedRows: [Int64: String] = [:]
        var transactionIDs: Set<UInt32> = []
        var oldest: Int64?
        /// The end of the last commit before these changes: everything of the table up to it
        /// was applied before.
        var since: PgOutput.LSN = 0
        /// Position in `changes` of each key's coalescible change.
        fileprivate var index: [String: Int] = [:]

        var isEmpty: Bool { changes.isEmpty }

        /// Adds a decoded batch. A change that only says "this key changed" merges into an
        /// earlier one of the key; a key rewrite, a keyless or an inserted row (which the
        /// flow may give a key) stays a change of its own.
        mutating func add(_ batch: LogicalChangeCollector.Batch, since previousEnd: PgOutput.LSN) {
            add(batch.changes, keylessRows: batch.keylessRows, insertedRows: batch.insertedRows,
                transactionIDs: batch.transactionIDs, oldest: batch.oldest, since: previousEnd)
        }

        /// Adds newer work after this one.
        mutating func add(_ newer: Work) {
            add(newer.changes, keylessRows: newer.keylessRows, insertedRows: newer.insertedRows,
                transactionIDs: newer.transactionIDs, oldest: newer.oldest, since: newer.since)
        }

        private mutating func add(_ incoming: [CapturedChange], keylessRows keyless: [Int64: String], insertedRows inserted: [Int64: String],
                                  transactionIDs xids: Set<UInt32>, oldest incomingOldest: Int64?, since previousEnd: PgOutput.LSN) {
            if changes.isEmpty { since = previousEnd }
            for change in incoming {
                let plain = change.key.map { !$0.isEmpty } == true && (change.oldKey == nil || change.oldKey == change.key)
                    && keyless[change.id] == nil && inserted[change.id] == nil
                if plain, let key = change.key, let at = index[key] {
                    let earlier = changes[at]
                    changes[at] = CapturedChange(id: earlier.id, operation: change.operation, key: key, oldKey: change.oldKey,
                                                 changedAt: max(earlier.changedAt, change.changedAt))
                    continue
                }
                if plain, let key = change.key { index[key] = changes.count }
                changes.append(change)
                if let row = keyless[change.id] { keylessRows[change.id] = row }
                if let row = inserted[change.id] { insertedRows[change.id] = row }
            }
            transactionIDs.formUnion(xids)
            if let o = incomingOldest { oldest = min(oldest ?? o, o) }
        }
    }

    /// Waiting and taken work under one lock: a take or a give-back is never seen half done,
    /// when the reader could otherwise find neither holding a table's work and confirm past it.
    private struct State {
        var pending: [String: Work] = [:]
        var working: [String: Work] = [:]
    }

    private let state: Mutex<State>
    private let wakes: [String: WakePipe]

    init(tables: [String]) {
        state = Mutex(State())
        wakes = Dictionary(uniqueKeysWithValues: tables.map { ($0, WakePipe()) })
    }

    /// A decoded batch of commits (`previousEnd`, `end`], per table.
    func add(_ batches: [String: LogicalChangeCollector.Batch], previousEnd: PgOutput.LSN) {
        var woken: [String] = []
        state.withLock { state in
            for (table, batch) in batches where wakes[table] != nil && !batch.changes.isEmpty {
                state.pending[table, default: Work()].add(batch, since: previousEnd)
                woken.append(table)
            }
        }
        for table in woken { wakes[table]?.ring() }
    }

    /// Everything waiting for `table`, now being worked on; nil when nothing waits.
    func take(_ table: String) -> Work? {
        wakes[table]?.drain()
        return state.withLock { state in
            guard let work = state.pending.removeValue(forKey: table) else { return nil }
            state.working[table] = work
            return work
        }
    }

    /// The table's flow applied what it took.
    func finished(_ table: String) {
        state.withLock { $0.working[table] = nil }
    }

    /// The table's flow failed with what it took: it waits again, before anything newer.
    func giveBack(_ table: String) {
        let gaveBack = state.withLock { state -> Bool in
            guard var merged = state.working.removeValue(forKey: table) else { return false }
            if let newer = state.pending[table] { merged.add(newer) }
            state.pending[table] = merged
            return true
        }
        if gaveBack { wakes[table]?.ring() }
    }

    /// Readable when changes for `table` arrive.
    func wakeFD(_ table: String) -> Int32? { wakes[table]?.fileDescriptor }

    /// The position the slot may be confirmed at: `decoded` (the end of the last commit
    /// handed over), unless a table still has changes from before it.
    func confirmable(decoded: PgOutput.LSN) -> PgOutput.LSN {
        state.withLock { state in
            (state.pending.values.map(\.since) + state.working.values.map(\.since)).reduce(decoded, min)
        }
    }

    /// Nothing waits and nothing is being applied.
    var isEmpty: Bool { state.withLock { $0.pending.isEmpty && $0.working.isEmpty } }
}
