/// A batch of captured NocoDB changes grouped by record key, with the changes that cannot be
/// keyed set aside as rejections (no `externalId`, or an `externalId` rewritten in place).
///
/// The bridge syncs record states, not individual changes: a key appearing in the batch only
/// says "this record changed"; the current row is what gets compared and written.
public struct ChangeGroups: Sendable, Equatable {
    /// Keys in order of first appearance.
    public private(set) var keys: [String] = []
    public private(set) var changesByKey: [String: [CapturedChange]] = [:]
    public private(set) var rejections: [Rejection] = []
    /// Every change id in the batch; all are acknowledged once the batch commits.
    public private(set) var changeIDs: [Int64] = []

    public init(_ changes: [CapturedChange]) {
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
            if changesByKey[key] == nil { keys.append(key) }
            changesByKey[key, default: []].append(change)
        }
    }

    /// Time of the key's latest change (a hard delete's time, since the row is gone).
    public func latestChange(_ key: String) -> Int64 {
        changesByKey[key]?.map(\.changedAt).max() ?? 0
    }

    /// Rejections for every change of `key`, e.g. when its current row cannot be mapped.
    public func reject(_ key: String, field: String?, reason: String) -> [Rejection] {
        (changesByKey[key] ?? []).map {
            Rejection(changeID: $0.id, key: key, field: field, reason: reason, operation: $0.operation)
        }
    }
}
