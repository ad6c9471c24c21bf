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

/// Something that cannot cross, with what an operator needs to find it: the key and field,
/// the reason, and the row or document when the capture source does not keep it.
public struct Rejection: Sendable, Equatable {
    /// The captured change it came from (changelog id), when there is one.
    public var changeID: Int64?
    public var key: String?
    public var field: String?
    public var reason: String
    public var operation: CapturedChange.Operation?
    /// The row or document as JSON text, when the dead letter should carry it.
    public var payload: String?

    public init(changeID: Int64? = nil, key: String?, field: String?, reason: String,
                operation: CapturedChange.Operation? = nil, payload: String? = nil) {
        self.changeID = changeID
        self.key = key
        self.field = field
        self.reason = reason
        self.operation = operation
        self.payload = payload
    }
}
