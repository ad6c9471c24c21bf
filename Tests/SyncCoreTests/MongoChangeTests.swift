import Testing
@testable import SyncCore

@Suite struct MongoChangeTests {
    static let id = Value.objectId(ObjectID(hex: "65a1b2c3d4e5f60718293a4b")!)

    @Test func decodesADocumentChange() {
        let event: Document = [
            "operationType": .string("update"), "ns": .document(["db": .string("d"), "coll": .string("waiter_ops")]),
            "documentKey": .document(["_id": Self.id]), "wallTime": .date(1_700_000_000_123),
            "fullDocument": .document(["_id": Self.id, "externalId": .string("k1"), "action": .string("seat")]),
        ]
        let change = MongoChange(event: event, token: [1, 2])
        #expect(change.operation == .update && change.isUpdate && change.isDocumentChange)
        #expect(change.collection == "waiter_ops" && change.documentID == Self.id && change.key == "k1")
        #expect(change.time == 1_700_000_000_123 && change.token == [1, 2] && !change.documentTooLarge)
    }

    @Test func aDeleteFindsItsKeyInThePreImageAndTimeInTheClusterTime() {
        let event: Document = [
            "operationType": .string("delete"), "ns": .document(["coll": .string("c")]), "documentKey": .document(["_id": Self.id]),
            "clusterTime": .timestamp(seconds: 1_700_000_000, increment: 3),
            "fullDocumentBeforeChange": .document(["externalId": .string("k9")]),
        ]
        let change = MongoChange(event: event, token: nil)
        #expect(change.key == "k9" && change.document == nil && change.time == 1_700_000_000_000)
    }

    @Test func aStubStandsForADocumentTooLargeToTravel() {
        let event: Document = [
            "operationType": .string("replace"), "ns": .document(["coll": .string("c")]), "documentKey": .document(["_id": Self.id]),
            "fullDocument": .document(["_id": Self.id, "externalId": .string("big"), ChangeStreamPipeline.largeMarker: .bool(true)]),
        ]
        let change = MongoChange(event: event, token: nil)
        #expect(change.documentTooLarge && change.key == "big" && change.document?[ChangeStreamPipeline.largeMarker] == nil)
    }

    @Test func collectionAndDatabaseEvents() {
        let rename = MongoChange(event: ["operationType": .string("rename"), "ns": .document(["coll": .string("a")]),
                                         "to": .document(["coll": .string("b")])], token: nil)
        #expect(rename.operation == .rename && rename.collection == "a" && rename.renamedTo == "b" && !rename.isDocumentChange)
        #expect(MongoChange(event: ["operationType": .string("invalidate")], token: nil).operation == .invalidate)
        #expect(MongoChange(event: ["operationType": .string("createIndexes")], token: nil).operation == .other)
    }

    /// The stages keep `_id` (the resume token: a pipeline that changes it makes the server
    /// fail the stream with 280) and keep only the key of a pre-image.
    @Test func theStreamStagesNeverTouchTheResumeToken() {
        let stages = ChangeStreamPipeline.stages(collections: ["a"])
        guard case .document(let project)? = stages[1]["$project"] else { Issue.record("no $project"); return }
        #expect(project["_id"] == nil, "inclusion keeps _id by itself; naming it 0 would break resuming")
        #expect(project["fullDocumentBeforeChange.externalId"] == .int32(1) && project["updateDescription"] == nil)
        guard case .document(let set)? = stages[2]["$set"] else { Issue.record("no $set"); return }
        #expect(set.keys == ["fullDocument"])
    }
}
