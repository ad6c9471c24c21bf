/// Turns a batch of captured NocoDB changes into the fewest MongoDB writes that leave the
/// collection in the batch's final state.
///
/// Every captured row carries all columns, so the last row for a key supersedes the earlier
/// ones; only a delete followed by a re-insert needs a replace. Planning is pure so the
/// pipeline's decisions are tested without servers.
public struct ToMongoPlan: Sendable, Equatable {
    public struct PlannedWrite: Sendable, Equatable {
        public let write: MongoWrite
        /// Changes this write covers; they are dead-lettered together if MongoDB rejects it.
        public let changeIDs: [Int64]
        /// The change whose row produced the write (for error reports).
        public let lastChange: CapturedChange
    }

    public var writes: [PlannedWrite] = []
    public var rejections: [Rejection] = []
    /// Every change id in the batch; all are acknowledged after the writes commit.
    public var changeIDs: [Int64] = []

    public init(changes: [CapturedChange], mapper: RowMapper) {
        enum Pending {
            case set(Document)
            case replace(Document)
            case delete
        }
        var order: [String] = []
        var pending: [String: (state: Pending, ids: [Int64], last: CapturedChange)] = [:]
        changeIDs.reserveCapacity(changes.count)
        for change in changes {
            changeIDs.append(change.id)
            guard let key = change.key, !key.isEmpty else {
                rejections.append(Rejection(changeID: change.id, key: nil, field: RowMapper.keyField,
                                            reason: "row has no externalId", operation: change.operation))
                continue
            }
            if change.operation == .update, let old = change.oldKey, !old.isEmpty, old != key {
                rejections.append(Rejection(
                    changeID: change.id, key: key, field: RowMapper.keyField,
                    reason: "externalId changed from \(old) to \(key); a record's key cannot change, restore it or re-create the record",
                    operation: change.operation))
                continue
            }
            let next: Pending
            if change.operation == .delete {
                next = .delete
            } else {
                let doc: Document
                do {
                    doc = try mapper.document(from: change.values)
                } catch {
                    rejections.append(Rejection(changeID: change.id, key: key, field: error.field,
                                                reason: error.reason, operation: change.operation))
                    continue
                }
                switch pending[key]?.state {
                case .delete?, .replace?: next = .replace(doc)
                case .set?, nil: next = .set(doc)
                }
            }
            if let existing = pending[key] {
                pending[key] = (next, existing.ids + [change.id], change)
            } else {
                order.append(key)
                pending[key] = (next, [change.id], change)
            }
        }
        writes.reserveCapacity(order.count)
        for key in order {
            guard let entry = pending[key] else { continue }
            let write: MongoWrite
            switch entry.state {
            case .set(let doc): write = .upsert(key: key, set: doc)
            case .replace(let doc): write = .replace(key: key, document: doc)
            case .delete: write = .delete(key: key)
            }
            writes.append(PlannedWrite(write: write, changeIDs: entry.ids, lastChange: entry.last))
        }
    }
}
