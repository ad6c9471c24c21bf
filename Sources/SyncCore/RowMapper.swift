/// A field that cannot cross, named so an operator can find and fix it.
public struct MappingError: Error, Sendable, Equatable, CustomStringConvertible {
    public let field: String
    public let reason: String

    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }

    public var description: String { "field \"\(field)\": \(reason)" }
}

/// Converts NocoDB rows (PostgreSQL text values) to MongoDB field values and back.
///
/// The same mapper serves the trigger changelog, logical replication (which also delivers
/// text) and resync, so every capture path produces identical documents.
public struct RowMapper: Sendable {
    /// Columns NocoDB maintains for itself; they describe the grid, not the record.
    public static let nocoSystemColumns: Set<String> = [
        "id", "created_at", "updated_at", "created_by", "updated_by", "nc_order", "__nc_deleted",
    ]
    public static let keyField = "externalId"

    /// The columns that become document fields, in table order.
    public let columns: [Column]

    public init(columns: [Column]) {
        self.columns = columns
    }

    /// Builds the document for one row; `values` is aligned with `columns` (nil is SQL NULL).
    public func document(from values: [String?]) throws(MappingError) -> Document {
        var doc = Document()
        doc.fields.reserveCapacity(columns.count)
        for (column, text) in zip(columns, values) {
            doc.fields.append((column.field, try Self.value(of: column, text: text)))
        }
        return doc
    }

    public static func value(of column: Column, text: String?) throws(MappingError) -> Value {
        guard let text else { return .null }
        func bad(_ reason: String) -> MappingError { MappingError(field: column.field, reason: reason) }
        switch column.kind {
        case .text:
            return .string(text)
        case .int32:
            guard let v = Int32(text) else { throw bad("\(text) is not a 32-bit integer") }
            return .int32(v)
        case .int64:
            guard let v = Int64(text) else { throw bad("\(text) is not a 64-bit integer") }
            return .int64(v)
        case .double:
            guard let v = Double(text) else { throw bad("\(text) is not a number") }
            return .double(v)
        case .numeric:
            do {
                return .decimal(try Decimal128Text(text))
            } catch .notANumber {
                throw bad("\(text) has no Decimal128 equivalent that MongoDB apps can compute with")
            } catch .tooManyDigits(let n) {
                throw bad("\(n) significant digits exceed Decimal128's 34; the value would be rounded")
            } catch {
                throw bad("\(text) is outside Decimal128's exponent range")
            }
        case .bool:
            switch text {
            case "t", "true": return .bool(true)
            case "f", "false": return .bool(false)
            default: throw bad("\(text) is not a boolean")
            }
        case .timestamp, .timestamptz:
            do { return .date(try Timestamps.parseMilliseconds(text)) } catch {
                throw bad("timestamp \(text) has no BSON date equivalent")
            }
        case .date:
            do { return .date(try Timestamps.parseMilliseconds(text)) } catch {
                throw bad("date \(text) has no BSON date equivalent")
            }
        case .json:
            do { return try JSON.parse(text) } catch { throw bad(error.description) }
        case .multiSelect:
            if text.isEmpty { return .array([]) }
            return .array(text.split(separator: ",", omittingEmptySubsequences: false).map { .string(String($0)) })
        }
    }

    /// The PostgreSQL text for a field value (nil means SQL NULL); the inverse of `value(of:text:)`.
    public static func postgresText(of column: Column, value: Value) throws(MappingError) -> String? {
        func bad(_ reason: String) -> MappingError { MappingError(field: column.field, reason: reason) }
        if case .null = value { return nil }
        switch (column.kind, value) {
        case (.text, .string(let s)):
            guard !s.utf8.contains(0) else { throw bad("text contains a NUL byte, which PostgreSQL cannot store") }
            return s
        case (.text, .objectId(let oid)):
            return oid.description
        case (.int32, _), (.int64, _):
            guard let i = integer(value) else { throw bad("expected an integer, got \(typeName(value))") }
            if column.kind == .int32, Int32(exactly: i) == nil { throw bad("\(i) is out of range for a 32-bit integer") }
            return String(i)
        case (.double, .double(let d)): return "\(d)"
        case (.double, .int32(let i)): return String(i)
        case (.double, .int64(let i)): return String(i)
        case (.numeric, .decimal(let d)): return d.text
        case (.numeric, .int32(let i)): return String(i)
        case (.numeric, .int64(let i)): return String(i)
        case (.numeric, .double(let d)):
            guard d.isFinite else { throw bad("\(d) cannot be stored in a Decimal field") }
            return "\(d)"
        case (.bool, .bool(let b)): return b ? "true" : "false"
        case (.timestamp, .date(let ms)), (.timestamptz, .date(let ms)):
            guard timestampRange.contains(ms) else { throw bad(outOfRange(ms, "timestamp", "4714 BC to 294276 AD")) }
            return Timestamps.postgresText(milliseconds: ms) + (column.kind == .timestamptz ? "+00" : "")
        case (.timestamp, .string(let s)), (.timestamptz, .string(let s)):
            guard let ms = try? Timestamps.parseMilliseconds(s) else { throw bad("\"\(s)\" is not an ISO-8601 date-time") }
            return try postgresText(of: column, value: .date(ms))
        case (.date, .date(let ms)):
            guard ms % 86_400_000 == 0 else { throw bad("a Date field holds whole days; the value has a time of day") }
            guard dateRange.contains(ms) else { throw bad(outOfRange(ms, "date", "4714 BC to 5874897 AD")) }
            return Timestamps.postgresDate(milliseconds: ms)
        case (.json, _):
            let json = JSON.serialize(value)
            // json keeps \u0000 as text; jsonb refuses it and would fail the whole batch.
            if column.postgresType == "jsonb", json.contains("\\u0000") {
                throw bad("contains the NUL character, which a jsonb column cannot store")
            }
            return json
        case (.multiSelect, .array(let items)):
            var options: [String] = []
            for item in items {
                guard case .string(let s) = item else { throw bad("multi-select options must be strings") }
                guard !s.utf8.contains(0) else { throw bad("option contains a NUL byte, which PostgreSQL cannot store") }
                guard !s.contains(",") else { throw bad("option \"\(s)\" contains a comma, which NocoDB uses as separator") }
                options.append(s)
            }
            return options.joined(separator: ",")
        case (.multiSelect, .string(let s)):
            guard !s.utf8.contains(0) else { throw bad("text contains a NUL byte, which PostgreSQL cannot store") }
            return s
        default:
            throw bad("expected \(column.kind.rawValue), got \(typeName(value))")
        }
    }

    /// PostgreSQL's ranges in milliseconds since 1970 (BSON dates reach ±292 million years);
    /// a value outside would fail the whole batch's write instead of one record.
    static let timestampRange: ClosedRange<Int64> = -210_866_803_200_000...9_224_318_015_999_999
    static let dateRange: ClosedRange<Int64> = -210_866_803_200_000...185_331_706_992_000_000

    private static func outOfRange(_ ms: Int64, _ type: String, _ range: String) -> String {
        "date \(ms) ms from 1970 is outside PostgreSQL's \(type) range (\(range))"
    }

    private static func integer(_ value: Value) -> Int64? {
        switch value {
        case .int32(let i): Int64(i)
        case .int64(let i): i
        case .double(let d): d.isFinite && d == d.rounded() ? Int64(exactly: d) : nil
        case .decimal(let d): Int64(d.text)
        default: nil
        }
    }

    public static func typeName(_ value: Value) -> String {
        switch value {
        case .null: "null"
        case .bool: "boolean"
        case .int32: "int32"
        case .int64: "int64"
        case .double: "double"
        case .decimal: "decimal128"
        case .string: "string"
        case .date: "date"
        case .document: "document"
        case .array: "array"
        case .objectId: "objectId"
        case .timestamp: "timestamp"
        case .unsupported(let name): name
        }
    }
}
