import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

/// MongoDB documents carrying values NocoDB's columns cannot hold: each becomes a dead letter
/// naming collection, key and field, and the documents after it still arrive. (Dates beyond
/// PostgreSQL's range cannot be stored by SecantusDB either; RowMapperTests cover them.)
@Suite struct BadInputTests {
    struct BadValue: Sendable, CustomStringConvertible {
        let key: String, field: String, value: Value, reason: String
        var description: String { key }
    }

    static let corpus: [BadValue] = [
        .init(key: "nul-text", field: "label", value: .string("a\u{0}b"), reason: "NUL byte"),
        .init(key: "int-overflow", field: "int", value: .int64(1 << 40), reason: "out of range for a 32-bit integer"),
        .init(key: "array-for-scalar", field: "big", value: .array([.int32(1), .int32(2)]), reason: "got array"),
        .init(key: "nan-amount", field: "amount", value: .double(.nan), reason: "cannot be stored in a Decimal field"),
        .init(key: "infinite-amount", field: "amount", value: .double(.infinity), reason: "cannot be stored in a Decimal field"),
        .init(key: "jsonb-nul", field: "docb", value: .document(["k": .string("a\u{0}")]), reason: "jsonb"),
        .init(key: "doc-for-bool", field: "flag", value: .document(["x": .int32(1)]), reason: "got document"),
        .init(key: "not-a-date", field: "at", value: .string("yesterday"), reason: "ISO-8601"),
        .init(key: "day-with-time", field: "day", value: .date(1_000), reason: "whole days"),
        .init(key: "number-for-options", field: "tags", value: .int32(3), reason: "got int32"),
    ]

    @Test func badDocumentsGoToDeadLettersAndTheRestFlows() throws {
        let f = try BridgeFixture()
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let zoo = f.table("type_zoo")
        func rows(_ key: String) throws -> Int {
            Int(try f.sql("SELECT count(*) FROM \(zoo) WHERE \"externalId\" = $1", [key]).rows[0][0] ?? "0") ?? 0
        }
        try f.mongoWrite { m throws(MongoError) in
            for c in Self.corpus { try m.insertOne(["externalId": .string(c.key), c.field: c.value], collection: "type_zoo") }
            try m.insertOne(["externalId": .string("fine"), "label": .string("ok")], collection: "type_zoo")
        }
        try eventually("the good document after the bad ones arrives") { try rows("fine") == 1 }
        try eventually("every bad document dead-lettered") { try f.deadLetters().rows.count == Self.corpus.count }
        let dead = Dictionary(try f.deadLetters().rows.map { ($0[1] ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        for c in Self.corpus {
            let row = dead[c.key]
            #expect(row?[0] == "\(f.schema).type_zoo", "\(c.key)")
            #expect(row?[2] == c.field, "\(c.key)")
            #expect(row?[3]?.contains(c.reason) == true, "\(c.key): \(row?[3] ?? "no dead letter")")
            #expect(try rows(c.key) == 0, "\(c.key) must not reach NocoDB")
        }

        // externalId changed on an existing document: refused, the record stays under its key.
        try f.mongoWrite { m throws(MongoError) in
            try m.insertOne(["externalId": .string("stable"), "label": .string("v1")], collection: "type_zoo")
        }
        try eventually("stable arrives") { try rows("stable") == 1 }
        try f.mongoWrite { m throws(MongoError) in
            try m.updateOne(filter: ["externalId": .string("stable")],
                            update: ["$set": .document(["externalId": .string("renamed"), "label": .string("v2")])], collection: "type_zoo")
            try m.insertOne(["externalId": .string("after"), "label": .string("ok")], collection: "type_zoo")
        }
        try eventually("the next document arrives") { try rows("after") == 1 }
        try eventually("key change dead-lettered") { try f.deadLetters().rows.contains { $0[1] == "stable" } }
        let change = try #require(try f.deadLetters().rows.first { $0[1] == "stable" })
        #expect(change[2] == "externalId" && change[3]?.contains("changed from \"stable\" to \"renamed\"") == true)
        #expect(try rows("renamed") == 0)
        #expect(try f.sql("SELECT label FROM \(zoo) WHERE \"externalId\" = 'stable'").rows[0][0] == "v1")
    }
}
