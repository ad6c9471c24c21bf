import Testing
@testable import SyncCore

@Suite struct JSONTests {
    @Test(arguments: [
        ("{}", Value.document(Document())),
        ("[]", .array([])),
        ("null", .null),
        ("true", .bool(true)),
        ("-12", .int32(-12)),
        ("2147483648", .int64(2_147_483_648)),
        ("1.5", .double(1.5)),
        ("1e3", .double(1000)),
        ("\"a\\u00e9\\n\"", .string("aé\n")),
        ("\"\\ud83d\\ude00\"", .string("😀")),
        ("{\"a\":[1,{\"b\":null}]}", .document(["a": .array([.int32(1), .document(["b": .null])])])),
    ])
    func parses(text: String, expected: Value) throws {
        #expect(try JSON.parse(text) == expected)
    }

    @Test(arguments: ["", "{", "[1,]", "{\"a\" 1}", "tru", "\"abc", "1 2", "{\"a\":01x}", "\"\\ud800\"", "\"\u{01}\""])
    func rejects(text: String) {
        #expect(throws: JSON.ParseError.self) { try JSON.parse(text) }
    }

    @Test func rejectsNestingDeeperThanBSONAllows() {
        let deep = String(repeating: "[", count: JSON.maxDepth + 1) + String(repeating: "]", count: JSON.maxDepth + 1)
        #expect(throws: JSON.ParseError.self) { try JSON.parse(deep) }
        let ok = String(repeating: "[", count: JSON.maxDepth - 1) + String(repeating: "]", count: JSON.maxDepth - 1)
        #expect(throws: Never.self) { try JSON.parse(ok) }
    }

    @Test func doublesKeepTheirTypeThroughSerialisation() throws {
        for value: Value in [.double(5), .double(-0.25), .double(1e300), .int32(5), .int64(1 << 40)] {
            #expect(try JSON.parse(JSON.serialize(value)) == value)
        }
    }

    @Test func serialisesEscapesAndOrder() {
        let doc: Value = .document(["b": .string("q\"\\\u{01}"), "a": .array([.bool(false), .null])])
        #expect(JSON.serialize(doc) == #"{"b":"q\"\\\u0001","a":[false,null]}"#)
    }
}
