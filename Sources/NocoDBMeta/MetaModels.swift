import Foundation

/// The parts of NocoDB's meta objects the bridge uses; unknown fields are ignored and its
/// loosely typed ones (booleans as 0/1, numbers as strings) are accepted.
public struct MetaBase: Decodable, Sendable {
    public let id: String
    public let title: String
    /// Non-empty for legacy bases whose tables live in the meta database's default schema.
    public let prefix: String?
    public let sources: [MetaSource]?
}

public struct MetaSource: Decodable, Sendable {
    public let id: String
    @LenientBool public var isMeta: Bool
    @LenientBool public var isLocal: Bool
}

public struct MetaTable: Decodable, Sendable {
    public let id: String
    public let title: String
    public let tableName: String
    public let sourceId: String?
    public let columns: [MetaColumn]?
}

public struct MetaColumn: Decodable, Sendable {
    public let id: String
    public let title: String
    public let columnName: String?
    public let uidt: String?
    @LenientBool public var system: Bool
}

public struct MetaView: Decodable, Sendable {
    public let id: String
    public let title: String
    public let type: Int

    enum CodingKeys: String, CodingKey { case id, title, type }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        title = try c.decode(String.self, forKey: .title)
        if let i = try? c.decode(Int.self, forKey: .type) { type = i } else { type = Int(try c.decode(Double.self, forKey: .type)) }
    }

    public static let form = 1, grid = 3, kanban = 4
}

public struct MetaViewColumn: Decodable, Sendable {
    public let id: String
    public let fkColumnId: String
    @LenientBool public var show: Bool
}

public struct MetaFilter: Decodable, Sendable {
    public let id: String
    public let fkColumnId: String?
    public let comparisonOp: String?
}

struct Page<Item: Decodable & Sendable>: Decodable, Sendable {
    struct Info: Decodable, Sendable {
        @LenientBool var isLastPage: Bool
    }
    let list: [Item]
    let pageInfo: Info?
}

/// NocoDB sends booleans as `true`/`false`, `0`/`1` or `null` (its `Bool` schema).
@propertyWrapper
public struct LenientBool: Decodable, Sendable {
    public var wrappedValue: Bool

    public init(wrappedValue: Bool) { self.wrappedValue = wrappedValue }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { wrappedValue = b }
        else if let i = try? c.decode(Int.self) { wrappedValue = i != 0 }
        else { wrappedValue = false }
    }
}

extension KeyedDecodingContainer {
    /// A missing key decodes as `false` rather than failing.
    public func decode(_ type: LenientBool.Type, forKey key: Key) throws -> LenientBool {
        try decodeIfPresent(type, forKey: key) ?? LenientBool(wrappedValue: false)
    }
}
