import Mongo
import SyncCore

/// Applies planned writes to one collection and reports which changes MongoDB refused.
public struct MongoApplier: Sendable {
    public let collection: String

    public init(collection: String) {
        self.collection = collection
    }

    public struct Outcome: Sendable {
        public var applied = 0
        public var rejections: [Rejection] = []
    }

    public func apply(_ plan: ToMongoPlan, using pool: MongoClientPool) throws(MongoError) -> Outcome {
        var outcome = Outcome()
        guard !plan.writes.isEmpty else { return outcome }
        let writes = plan.writes.map { Self.bulkWrite(for: $0.write) }
        let result = try pool.withClient { (client: MongoClient) throws(MongoError) in
            try client.bulkWrite(writes, collection: collection)
        }
        var failed = Set<Int>()
        for error in result.writeErrors {
            failed.insert(error.index)
            let planned = plan.writes[error.index]
            for id in planned.changeIDs {
                outcome.rejections.append(Rejection(
                    changeID: id, key: planned.write.key, field: nil,
                    reason: "MongoDB refused the write (code \(error.code)): \(error.message)",
                    operation: planned.lastChange.operation))
            }
        }
        outcome.applied = plan.writes.count - failed.count
        return outcome
    }

    static func bulkWrite(for write: MongoWrite) -> BulkWrite {
        switch write {
        case .upsert(let key, let set):
            .updateOne(filter: [RowMapper.keyField: .string(key)], update: ["$set": .document(set)], upsert: true)
        case .replace(let key, let document):
            .replaceOne(filter: [RowMapper.keyField: .string(key)], replacement: document, upsert: true)
        case .delete(let key):
            .deleteOne(filter: [RowMapper.keyField: .string(key)])
        }
    }
}
