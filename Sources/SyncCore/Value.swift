/// A document value as it crosses the bridge, independent of both databases' C types.
///
/// It covers what NocoDB columns can hold plus what MongoDB documents commonly carry, so a
/// row maps to a document and back without passing through a lossy intermediate (no
/// `Double` for decimals, milliseconds for dates as BSON stores them).
public enum Value: Sendable, Hashable {
    case null
    case bool(Bool)
    case int32(Int32)
    case int64(Int64)
    case double(Double)
    case decimal(Decimal128Text)
    case string(String)
    /// Milliseconds since the Unix epoch, UTC (BSON's date resolution).
    case date(Int64)
    case document(Document)
    case array([Value])
    case objectId(ObjectID)
    /// BSON's internal timestamp (a cluster time): seconds and an ordinal within the second.
    case timestamp(seconds: UInt32, increment: UInt32)
    /// A BSON value with no column equivalent, kept as canonical extended JSON for messages.
    case unsupported(typeName: String)
}

/// An ordered list of fields, as BSON keeps them; lookups are linear because documents
/// crossing the bridge are small and order matters for equality.
public struct Document: Sendable, Hashable {
    public var fields: [(key: String, value: Value)]

    public init(_ fields: [(key: String, value: Value)] = []) {
        self.fields = fields
    }

    public subscript(key: String) -> Value? {
        get { fields.first(where: { $0.key == key })?.value }
        set {
            if let i = fields.firstIndex(where: { $0.key == key }) {
                if let newValue { fields[i].value = newValue } else { fields.remove(at: i) }
            } else if let newValue {
                fields.append((key, newValue))
            }
        }
    }

    public var keys: [String] { fields.map(\.key) }

    public static func == (lhs: Document, rhs: Document) -> Bool {
        lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for field in fields {
            hasher.combine(field.key)
            hasher.combine(field.value)
        }
    }
}

extension Document: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, Value)...) {
        self.init(elements.map { (key: $0.0, value: $0.1) })
    }
}

/// MongoDB's 12-byte ObjectId.
public struct ObjectID: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 12 else { return nil }
        self.bytes = bytes
    }

    public init?(hex: String) {
        guard hex.utf8.count == 24 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(12)
        var it = hex.utf8.makeIterator()
        while let hi = it.next(), let lo = it.next() {
            guard let h = Hex.nibble(hi), let l = Hex.nibble(lo) else { return nil }
            out.append(h << 4 | l)
        }
        self.bytes = out
    }

    public var description: String { Hex.encode(bytes) }
}

/// Lower-case hexadecimal, for ObjectIds, `\u` escapes and binary keys.
public enum Hex {
    public static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
