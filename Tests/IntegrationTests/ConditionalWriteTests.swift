@testable import Bridge
import Foundation
import Mongo
import SyncCore
import Testing

/// The bridge's conditional writes send each expected field as `{$not: {$ne: v}}`, which this
/// machine's MongoDB-protocol server plans faster than the bare `{field: v}`
/// (`RecordSynchronizer.condition`). Should the two ever match different documents, a write
/// would overwrite an app's change the bare condition refuses, or keep failing on a document
/// that still holds what was read.
@Suite struct ConditionalWriteTests {
    @Test func theConditionMatchesExactlyWhatTheBareFilterMatches() throws {
        let s = try MongoScratch().pool()
        let collection = "cond_" + randomSuffix(8)
        func doc(_ pairs: [(String, Value)]) -> Value { .document(Document(pairs.map { (key: $0.0, value: $0.1) })) }
        let ab = doc([("a", .int32(1)), ("b", .int32(2))]), ba = doc([("b", .int32(2)), ("a", .int32(1))])
        let one = try Decimal128Text("1")
        // nil: the field is missing.
        let stored: [Value?] = [
            nil, .null, .int32(1), .double(1), .int64(1), .decimal(one), .int32(2), .string("a"), .string("A"), .string(""),
            .array([]), .array([.null]), .array([.int32(1)]), .array([.int32(1), .int32(2)]), .array([.int32(2), .int32(1)]),
            .array([.array([.int32(1), .int32(2)])]), ab, ba, .array([ab]), doc([("a", .null)]), doc([]),
            .bool(true), .bool(false), .int32(0), .date(0),
        ]
        _ = try s.bulk(stored.enumerated().map { i, value in
            .insertOne(Document([("_id", .int32(Int32(i)))] + (value.map { [("f", $0)] } ?? [])))
        }, collection)

        var matches = 0
        for expected in stored.map({ $0 ?? .null }) {
            for i in stored.indices {
                let id = Value.int32(Int32(i))
                let bare = try s.documents(collection, ["_id": id, "f": expected]).count
                let condition = try s.documents(collection, RecordSynchronizer.condition(id: id, expected: ["f": expected])).count
                #expect(condition == bare, "stored \(String(describing: stored[i])), expected \(expected)")
                matches += bare
            }
        }
        // Not vacuous: null matches missing, null and [null]; 1 matches every numeric 1 and
        // the arrays holding one.
        #expect(matches > stored.count * 2, "\(matches)")

        // The write path takes it: an update that holds and one that does not.
        func update(expecting value: Value, set n: Int32) -> BulkWrite {
            .updateOne(filter: RecordSynchronizer.condition(id: .int32(13), expected: ["f": value]),
                       update: ["$set": .document(["g": .int32(n)])], upsert: false)
        }
        let holds = update(expecting: .array([.int32(1), .int32(2)]), set: 1)
        let moved = update(expecting: .array([.int32(2), .int32(1)]), set: 2)
        let result = try s.bulk([holds, moved], collection)
        #expect(result.matched == 1 && result.updatesMatchingNothing == 1, "\(result)")
    }
}
