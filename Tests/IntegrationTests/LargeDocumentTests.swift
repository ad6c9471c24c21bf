import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

/// A document of about 10 MB, updated with pre-images on, makes a change event of about
/// 30 MB with MongoDB's defaults (document after, document before, update description).
/// mongod fails such a `getMore` with BSONObjectTooLarge on every retry, blocking the stream
/// for good; SecantusDB delivers it, so the test measures the events the bridge's stream
/// stages produce and checks the record still crosses.
@Suite struct LargeDocumentTests {
    static let tenMegabytes = 10 * 1024 * 1024

    @Test func aTenMegabyteDocumentCrossesInEventsUnderSixteenMegabytes() throws {
        let f = try BridgeFixture()
        try f.mongoWrite { (c: MongoClient) throws(MongoError) in
            _ = try c.runCommand(["create": .string("waiter_ops")])
            _ = try c.runCommand(["collMod": .string("waiter_ops"), "changeStreamPreAndPostImages": .document(["enabled": .bool(true)])])
        }
        f.configuration.usePreImages = true
        // The bridge's own stream (on the collection, with its options), watched beside it so
        // the events can be weighed.
        var options = ChangeStreamOptions()
        options.fullDocumentBeforeChange = true
        options.maxAwaitMilliseconds = 100
        options.pipeline = ChangeStreamPipeline.stages(collections: ["waiter_ops"])
        let watcher = try f.mongo.watch(collection: "waiter_ops", options: options)
        var defaults = options
        defaults.pipeline = []
        let unprojected = try f.mongo.watch(collection: "waiter_ops", options: defaults)

        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let first = String(repeating: "a", count: Self.tenMegabytes)
        let second = String(repeating: "b", count: Self.tenMegabytes)
        try f.mongoWrite { (c: MongoClient) throws(MongoError) in
            try c.insertOne(["externalId": .string("big"), "table_no": .int64(1), "notes": .string(first)], collection: "waiter_ops")
            try c.updateOne(filter: ["externalId": .string("big")], update: ["$set": .document(["notes": .string(second)])],
                            collection: "waiter_ops")
            try c.insertOne(["externalId": .string("small"), "table_no": .int64(2)], collection: "waiter_ops")
        }
        func weigh(_ stream: ChangeStream, events: Int) throws -> [(operation: String, bytes: Int, stub: Bool)] {
            var out: [(String, Int, Bool)] = []
            let deadline = Date().addingTimeInterval(60)
            while out.count < events && Date() < deadline {
                guard let event = try stream.next() else { continue }
                let change = MongoChange(event: event, token: nil)
                out.append((change.operation.rawValue, try BSONBytes.encode(document: event).count, change.documentTooLarge))
            }
            return out
        }
        let weighed = try weigh(watcher, events: 3)
        #expect(weighed.count == 3)
        let limit = MongoClient.maxDocumentBytes
        #expect(weighed.allSatisfy { $0.bytes < limit }, "event sizes \(weighed.map(\.bytes))")
        let stubs = weighed.prefix(2).map(\.stub)
        #expect(stubs == [true, true], "the large document travels as a stub")
        // Without the stages the update event alone is over the limit (mongod refuses it).
        let raw = try weigh(unprojected, events: 2)
        #expect(raw.count == 2 && raw[1].bytes > limit, "event sizes without the stages \(raw.map(\.bytes))")

        let t = f.table("waiter_ops")
        try eventually("the large document's last version in NocoDB", seconds: 60) {
            try f.sql("SELECT left(notes, 1), length(notes) FROM \(t) WHERE \"externalId\" = 'big'").rows.first.map {
                $0[0] == "b" && $0[1] == String(Self.tenMegabytes)
            } ?? false
        }
        try eventually("the stream goes on past it") { try f.sql("SELECT count(*) FROM \(t) WHERE \"externalId\" = 'small'").rows[0][0] == "1" }
        #expect(try f.deadLetters().rows.isEmpty)
    }
}
