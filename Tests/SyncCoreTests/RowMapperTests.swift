import Testing
@testable import SyncCore

@Suite struct RowMapperTests {
    static func column(_ kind: ColumnKind, _ type: String = "") -> Column {
        Column(name: "f", kind: kind, postgresType: type)
    }

    @Test(arguments: [
        (ColumnKind.text, "héllo", Value.string("héllo")),
        (.int32, "-7", .int32(-7)),
        (.int64, "9007199254740993", .int64(9_007_199_254_740_993)),
        (.double, "0.1", .double(0.1)),
        (.numeric, "12.50", .decimal(try! Decimal128Text("12.50"))),
        (.bool, "t", .bool(true)),
        (.bool, "f", .bool(false)),
        (.timestamp, "2024-05-01 10:00:00.123", .date(1_714_557_600_123)),
        (.timestamptz, "2024-05-01 12:00:00.123+02", .date(1_714_557_600_123)),
        (.date, "2024-05-01", .date(1_714_521_600_000)),
        (.json, #"{"qty":2,"price":4.5}"#, .document(["qty": .int32(2), "price": .double(4.5)])),
        (.multiSelect, "a,b c", .array([.string("a"), .string("b c")])),
        (.multiSelect, "", .array([])),
    ])
    func mapsToDocumentValuesAndBack(kind: ColumnKind, text: String, expected: Value) throws {
        let column = Self.column(kind)
        let value = try RowMapper.value(of: column, text: text)
        #expect(value == expected)
        let back = try RowMapper.postgresText(of: column, value: value)
        // The text PostgreSQL would read back holds the same value (re-parse to compare).
        #expect(try RowMapper.value(of: column, text: back) == expected)
    }

    @Test func nullIsNullBothWays() throws {
        for kind in ColumnKind.allCases {
            #expect(try RowMapper.value(of: Self.column(kind), text: nil) == .null)
            #expect(try RowMapper.postgresText(of: Self.column(kind), value: .null) == nil)
        }
    }

    @Test(arguments: [
        (ColumnKind.int32, "99999999999"),
        (.int64, "1.5"),
        (.numeric, "NaN"),
        (.numeric, "Infinity"),
        (.numeric, "1234567890123456789012345678901234567890"),
        (.bool, "maybe"),
        (.timestamp, "infinity"),
        (.date, "-infinity"),
        (.json, "{not json"),
        (.json, String(repeating: "[", count: 200) + String(repeating: "]", count: 200)),
        (.json, #"{"a\u0000b": 1}"#),
    ])
    func rejectsWithTheFieldNamed(kind: ColumnKind, text: String) {
        #expect {
            try RowMapper.value(of: Self.column(kind), text: text)
        } throws: { error in
            (error as? MappingError)?.field == "f"
        }
    }

    static let unstorable: [(ColumnKind, Value)] = [
        (ColumnKind.text, Value.int32(1)),
        (.text, .string("nul\u{0}byte")),
        (.int32, .int64(1 << 40)),
        (.int64, .double(1.5)),
        (.int64, .string("12")),
        (.numeric, .double(.nan)),
        (.bool, .int32(1)),
        (.timestamp, .string("not a date")),
        (.timestamp, .array([])),
        (.date, .date(1_714_557_600_123)),
        (.multiSelect, .array([.int32(1)])),
        (.multiSelect, .array([.string("a,b")])),
        (.multiSelect, .array([.string("a\u{0}")])),
        (.multiSelect, .string("a\u{0}")),
        (.timestamp, .date(9_300_000_000_000_000)),
        (.timestamptz, .date(-300_000_000_000_000)),
        (.date, .date(-3_000_000 * 86_400_000)),
        (.date, .date(200_000_000_000_000_000 / 86_400_000 * 86_400_000)),
    ]

    @Test(arguments: unstorable)
    func rejectsDocumentValuesThatCannotBeStored(kind: ColumnKind, value: Value) {
        #expect(throws: MappingError.self) { try RowMapper.postgresText(of: Self.column(kind), value: value) }
    }

    @Test func dateRangesEndWherePostgreSQLsEnd() throws {
        #expect(try RowMapper.postgresText(of: Self.column(.timestamp), value: .date(9_224_318_015_999_999))
                == "294276-12-31 23:59:59.999")
        #expect(throws: MappingError.self) {
            try RowMapper.postgresText(of: Self.column(.timestamp), value: .date(9_224_318_016_000_000))
        }
        #expect(try RowMapper.postgresText(of: Self.column(.timestamp), value: .date(-210_866_803_200_000))
                == "4714-11-24 00:00:00.000 BC")
        #expect(throws: MappingError.self) {
            try RowMapper.postgresText(of: Self.column(.timestamp), value: .date(-210_866_803_200_001))
        }
    }

    @Test func nulInJSONIsRefusedOnlyWhereJsonbCannotHoldIt() throws {
        let value = Value.document(["k": .string("a\u{0}")])
        #expect(try RowMapper.postgresText(of: Self.column(.json, "json"), value: value) == #"{"k":"a\u0000"}"#)
        #expect {
            try RowMapper.postgresText(of: Self.column(.json, "jsonb"), value: value)
        } throws: { ($0 as? MappingError)?.reason.contains("jsonb") == true }
    }

    /// Arbitrary text and values of every type, for every column kind: each either maps or
    /// fails with a `MappingError`; nothing traps.
    @Test func arbitraryInputNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let pool: [Value] = [.null, .bool(true), .int32(.min), .int64(.max), .double(.nan), .double(-.infinity), .double(1e308),
                             .decimal(try! Decimal128Text("-0.000")), .string(""), .string("\u{0}"), .date(.min), .date(.max),
                             .document([:]), .array([.null]), .objectId(ObjectID(bytes: Array(repeating: 0, count: 12))!),
                             .timestamp(seconds: 0, increment: 0), .unsupported(typeName: "binary")]
        for _ in 0..<5000 {
            let kind = ColumnKind.allCases.randomElement(using: &rng)!
            let column = Self.column(kind, Bool.random(using: &rng) ? "jsonb" : "")
            let bytes = (0..<Int.random(in: 0...24, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let text = Bool.random(using: &rng) ? String(decoding: bytes, as: UTF8.self) : Self.randomString(&rng)
            do { _ = try RowMapper.value(of: column, text: text) } catch {}
            let value = Bool.random(using: &rng) ? pool.randomElement(using: &rng)! : Self.randomValue(for: ColumnKind.allCases.randomElement(using: &rng)!, using: &rng)
            do { _ = try RowMapper.postgresText(of: column, value: value) } catch {}
        }
    }

    @Test func acceptsWhatMongoShellsWrite() throws {
        // mongosh stores numbers as doubles; an integral double fits a Number column.
        #expect(try RowMapper.postgresText(of: Self.column(.int64), value: .double(42)) == "42")
        // The seed's apps write updatedAt as an ISO string.
        #expect(try RowMapper.postgresText(of: Self.column(.timestamp), value: .string("2024-05-01T10:00:00.123Z"))
                == "2024-05-01 10:00:00.123")
    }

    @Test func postgresTypesPickKinds() {
        #expect(ColumnKind(postgresType: "bigint") == .int64)
        #expect(ColumnKind(postgresType: "numeric(10,2)") == .numeric)
        #expect(ColumnKind(postgresType: "timestamp without time zone") == .timestamp)
        #expect(ColumnKind(postgresType: "timestamp(3) with time zone") == .text || ColumnKind(postgresType: "timestamp with time zone") == .timestamptz)
        #expect(ColumnKind(postgresType: "character varying") == .text)
        #expect(ColumnKind(postgresType: "json") == .json)
        #expect(ColumnKind.override(forNocoDBType: "MultiSelect") == .multiSelect)
        #expect(ColumnKind.override(forNocoDBType: "SingleSelect") == nil)
    }

    /// Random values of every kind survive document → PostgreSQL text → document.
    @Test func randomValuesRoundTrip() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<3000 {
            let kind = ColumnKind.allCases.randomElement(using: &rng)!
            let value = Self.randomValue(for: kind, using: &rng)
            let column = Self.column(kind)
            let text = try RowMapper.postgresText(of: column, value: value)
            #expect(try RowMapper.value(of: column, text: text) == value, "kind \(kind) value \(value)")
        }
    }

    static func randomValue(for kind: ColumnKind, using rng: inout SystemRandomNumberGenerator) -> Value {
        switch kind {
        case .text: return .string(randomString(&rng))
        case .int32: return .int32(Int32.random(in: .min ... .max, using: &rng))
        case .int64: return .int64(Int64.random(in: .min ... .max, using: &rng))
        case .double: return .double(Double.random(in: -1e12...1e12, using: &rng))
        case .numeric:
            let digits = Int.random(in: 1...34, using: &rng)
            var s = (0..<digits).map { _ in String(Int.random(in: 0...9, using: &rng)) }.joined()
            s = String(Int.random(in: 1...9, using: &rng)) + s.dropFirst()
            let point = Int.random(in: 0...digits, using: &rng)
            if point > 0 && point < digits { s.insert(".", at: s.index(s.startIndex, offsetBy: point)) }
            return .decimal(try! Decimal128Text((Bool.random(using: &rng) ? "-" : "") + s))
        case .bool: return .bool(Bool.random(using: &rng))
        case .timestamp, .timestamptz: return .date(Int64.random(in: -62_000_000_000_000...253_000_000_000_000, using: &rng))
        case .date: return .date(Int64.random(in: -700_000...2_900_000, using: &rng) * 86_400_000)
        case .json: return randomJSON(depth: 0, &rng)
        case .multiSelect:
            return .array((0..<Int.random(in: 1...4, using: &rng)).map { _ in
                .string(randomString(&rng).replacingOccurrencesOfComma())
            })
        }
    }

    static func randomString(_ rng: inout SystemRandomNumberGenerator) -> String {
        let alphabet = Array("abcXYZ 019,.;\"'\\é漢😀\n\t")
        return String((0..<Int.random(in: 0...12, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
    }

    static func randomJSON(depth: Int, _ rng: inout SystemRandomNumberGenerator) -> Value {
        switch Int.random(in: 0...(depth > 3 ? 4 : 6), using: &rng) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &rng))
        case 2: return .int32(Int32.random(in: .min ... .max, using: &rng))
        case 3: return .double(Double(Int.random(in: -1000...1000, using: &rng)) / 8)
        case 4: return .string(randomString(&rng))
        case 5: return .array((0..<Int.random(in: 0...3, using: &rng)).map { _ in randomJSON(depth: depth + 1, &rng) })
        default:
            var doc = Document()
            for i in 0..<Int.random(in: 0...3, using: &rng) { doc["k\(i)"] = randomJSON(depth: depth + 1, &rng) }
            return .document(doc)
        }
    }
}

private extension String {
    func replacingOccurrencesOfComma() -> String {
        let s = String(filter { $0 != "," })
        return s.isEmpty ? "x" : s
    }
}
