/// The aggregation stages the bridge's change streams run on the server: only what the bridge
/// reads, small whatever the documents.
///
/// MongoDB refuses to return an event over 16 MB (BSONObjectTooLarge, on every `getMore`
/// from then on: the stream cannot get past it). With `fullDocument: updateLookup` an update
/// event carries the whole document and its `updateDescription`, and with pre-images the
/// document before too: a 6 MB document updated is already over. So the stages keep the fields
/// the bridge reads, keep only the key of the pre-image, and replace a document larger than
/// `largeDocumentBytes` by a stub holding its `_id` and key, which the bridge then reads by
/// key (a read answers one document, at most 16 MB). `$changeStreamSplitLargeEvent` would be
/// the server's own answer, but only from MongoDB 7.0 (6.0.9).
public enum ChangeStreamPipeline {
    public static let largeDocumentBytes = 8 * 1024 * 1024
    /// The field a stub carries instead of the document.
    public static let largeMarker = "__nocobridgeLargeDocument"

    public static let documentOperations = ["insert", "update", "replace", "delete"]
    /// Operations on collections and the database: a restore (`mongorestore --drop`) begins with them.
    public static let collectionOperations = ["drop", "rename"]
    public static let databaseOperations = ["dropDatabase", "invalidate"]

    public static func stages(collections: [String]) -> [Document] {
        let names = Value.array(collections.map(Value.string))
        func ops(_ list: [String]) -> Value { .document(["$in": .array(list.map(Value.string))]) }
        return [
            ["$match": .document(["$or": .array([
                .document(["operationType": ops(documentOperations), "ns.coll": .document(["$in": names])]),
                .document(["operationType": ops(collectionOperations), "$or": .array([
                    .document(["ns.coll": .document(["$in": names])]), .document(["to.coll": .document(["$in": names])]),
                ])]),
                .document(["operationType": ops(databaseOperations)]),
            ])])],
            // Inclusion keeps `_id` (the resume token), which must never change.
            ["$project": .document([
                "operationType": .int32(1), "ns": .int32(1), "to": .int32(1), "documentKey": .int32(1),
                "clusterTime": .int32(1), "wallTime": .int32(1), "fullDocument": .int32(1),
                "fullDocumentBeforeChange.\(RowMapper.keyField)": .int32(1),
            ])],
            ["$set": .document(["fullDocument": .document(["$cond": .array([
                .document(["$gt": .array([.document(["$bsonSize": .document(["$ifNull": .array([.string("$fullDocument"), .document([:])])])]),
                                          .int64(Int64(largeDocumentBytes))])]),
                .document(["_id": .string("$fullDocument._id"), RowMapper.keyField: .string("$fullDocument.\(RowMapper.keyField)"),
                           largeMarker: .bool(true)]),
                .string("$fullDocument"),
            ])])])],
        ]
    }
}
