/// One MongoDB change stream event, decoded once where the stream is read, so everything
/// after the reader works with named fields instead of looking into untyped documents.
public struct MongoChange: Sendable, Equatable {
    public enum Operation: String, Sendable, Equatable {
        case insert, update, replace, delete
        /// The collection was dropped (also the first half of `mongorestore --drop`).
        case drop
        case rename
        case dropDatabase
        /// The stream cannot continue where it is (its collection or database went away).
        case invalidate
        /// Anything else the server may send (DDL events of newer servers).
        case other
    }

    public var operation: Operation
    /// `ns.coll`: the collection the event is about (nil for database-wide events).
    public var collection: String?
    /// `to.coll` of a rename.
    public var renamedTo: String?
    /// `documentKey._id`.
    public var documentID: Value?
    /// `fullDocument`: the document after the change (an update looks it up).
    public var document: Document?
    /// `externalId` from the pre-image (`fullDocumentBeforeChange`), when the stream has one.
    public var keyBefore: String?
    /// When it happened (ms): `wallTime` (MongoDB 6+), else the cluster time's seconds.
    public var time: Int64?
    /// The resume token just after this event.
    public var token: [UInt8]?
    /// The document was too large to travel in the event (`ChangeStreamPipeline`): `document`
    /// holds only its `_id` and key, and the document must be read.
    public var documentTooLarge = false
    /// The highest agreed-state number saved before this event's batch was asked for (the
    /// bridge's `AgreedStateStore.lastSaved`); nil when unknown. With it an update's looked-up
    /// document can stand for a read (`RecordSynchronizer.Hint.Streamed`).
    public var savedBefore: Int64?

    public init(operation: Operation, collection: String? = nil, renamedTo: String? = nil, documentID: Value? = nil,
                document: Document? = nil, keyBefore: String? = nil, time: Int64? = nil, token: [UInt8]? = nil) {
        self.operation = operation
        self.collection = collection
        self.renamedTo = renamedTo
        self.documentID = documentID
        self.document = document
        self.keyBefore = keyBefore
        self.time = time
        self.token = token
    }

    /// Decodes an event as the server sends it.
    public init(event: Document, token: [UInt8]?) {
        if case .string(let op)? = event["operationType"] {
            operation = Operation(rawValue: op) ?? .other
        } else {
            operation = .other
        }
        if case .document(let ns)? = event["ns"], case .string(let coll)? = ns["coll"] { collection = coll }
        if case .document(let to)? = event["to"], case .string(let coll)? = to["coll"] { renamedTo = coll }
        if case .document(let key)? = event["documentKey"] { documentID = key["_id"] }
        if case .document(let full)? = event["fullDocument"] {
            document = full
            if full[ChangeStreamPipeline.largeMarker] == .bool(true) {
                documentTooLarge = true
                document?[ChangeStreamPipeline.largeMarker] = nil
            }
        }
        if case .document(let before)? = event["fullDocumentBeforeChange"], case .string(let key)? = before[RowMapper.keyField],
           !key.isEmpty {
            keyBefore = key
        }
        if case .date(let ms)? = event["wallTime"] {
            time = ms
        } else if case .timestamp(let seconds, _)? = event["clusterTime"] {
            time = Int64(seconds) * 1000
        }
        self.token = token
    }

    /// `externalId` from the document, else from the pre-image.
    public var key: String? {
        if case .string(let key)? = document?[RowMapper.keyField], !key.isEmpty { return key }
        return keyBefore
    }

    public var isUpdate: Bool { operation == .update || operation == .replace }

    /// A change to a document (as opposed to a collection or the database).
    public var isDocumentChange: Bool { [.insert, .update, .replace, .delete].contains(operation) }
}
