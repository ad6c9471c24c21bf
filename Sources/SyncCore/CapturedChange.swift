/// One row change read from the NocoDB side (changelog or replication stream). It says which
/// record changed, not how: the bridge reads the record's current row when it applies it.
public struct CapturedChange: Sendable, Equatable {
    public enum Operation: String, Sendable, Equatable {
        case insert = "I"
        case update = "U"
        case delete = "D"
    }

    /// Position in the capture source; acknowledged once the change is committed downstream.
    public let id: Int64
    public let operation: Operation
    /// `externalId` after the change (for a delete, of the deleted row).
    public let key: String?
    /// `externalId` before an update, to catch a key being rewritten.
    public let oldKey: String?
    /// When the change was captured (ms since the epoch); a hard delete's time.
    public let changedAt: Int64

    public init(id: Int64, operation: Operation, key: String?, oldKey: String?, changedAt: Int64 = 0) {
        self.id = id
        self.operation = operation
        self.key = key
        self.oldKey = oldKey
        self.changedAt = changedAt
    }
}

/// A write to a MongoDB collection, keyed by `externalId`.
public enum MongoWrite: Sendable, Equatable {
    /// `updateOne({externalId}, {$set}, upsert)`: fields that exist only in MongoDB survive.
    case upsert(key: String, set: Document)
    /// `replaceOne({externalId}, doc, upsert)`: the record was deleted and re-created in the
    /// same batch, so nothing of the old document may linger.
    case replace(key: String, document: Document)
    case delete(key: String)

    public var key: String {
        switch self {
        case .upsert(let key, _), .replace(let key, _), .delete(let key): key
        }
    }
}

/// A change that cannot cross, with what an operator needs to find it.
public struct Rejection: Sendable, Equatable {
    public let changeID: Int64
    public let key: String?
    public let field: String?
    public let reason: String
    public let operation: CapturedChange.Operation

    public init(changeID: Int64, key: String?, field: String?, reason: String, operation: CapturedChange.Operation) {
        self.changeID = changeID
        self.key = key
        self.field = field
        self.reason = reason
        self.operation = operation
    }
}
