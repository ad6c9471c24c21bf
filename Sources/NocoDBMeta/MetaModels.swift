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
    /// The table's display value ("primary value"): NocoDB keeps it visible in every grid.
    @LenientBool public var pv: Bool
    @LenientBool public var pk: Bool
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

/// A list answer. NocoDB sends `pageInfo` only where its controller passes a count
/// (controllers/bases.controller.ts:46-49), and never reads `page` for some lists.
struct Page<Item: Decodable & Sendable>: Decodable, Sendable {
    struct Info: Decodable, Sendable {
        @LenientBool var isLastPage: Bool
        let page: Double?
        let totalRows: Double?
    }
    let list: [Item]
    let pageInfo: Info?
}

/// A user as `GET /api/v2/meta/bases/{baseId}/users` lists them: NocoDB lists every user of
/// the instance, so whether someone is in the base is in `roles`, not in being listed.
public struct MetaBaseUser: Decodable, Sendable, Equatable {
    public let id: String
    public let email: String
    /// The base role; NocoDB may send several comma-separated. nil (or empty) for a user of
    /// the instance who is not in this base (models/BaseUser.ts:212-237, a LEFT JOIN).
    public let roles: String?

    public init(id: String, email: String, roles: String?) {
        self.id = id
        self.email = email
        self.roles = roles
    }

    /// In the base with some role.
    public var isMember: Bool { !(roles ?? "").isEmpty }
}

/// The API token's own user (`GET /api/v2/auth/user/me`): whose base role bounds what the
/// token may do to other people's roles.
public struct MetaUser: Decodable, Sendable, Equatable {
    public let id: String
    public let email: String
}

struct BaseUsers: Decodable, Sendable {
    let users: Page<MetaBaseUser>
}

/// A view as `GET …/visibility-rules` lists it: which base roles it is hidden from.
public struct MetaViewVisibility: Decodable, Sendable {
    public let id: String
    public let title: String
    public let fkModelId: String
    public let type: Double
    /// Role → hidden.
    public let disabled: [String: LenientBool]
}

/// A shared view (`GET /api/v2/meta/tables/{tableId}/share`): its public uuid and password.
/// Printed, logged or dumped, the password shows only as set or not.
public struct MetaSharedView: Decodable, Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public let id: String
    public let title: String
    public let type: Int
    public let uuid: String?
    /// NocoDB 0.258.3 keeps and lists the share password as given (models/View.ts:1212-1232);
    /// the current release lists a set one only as set (`AccessPlanner.SharePassword`).
    public let password: String?

    enum CodingKeys: String, CodingKey { case id, title, type, uuid, password }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        title = try c.decode(String.self, forKey: .title)
        if let i = try? c.decode(Int.self, forKey: .type) { type = i } else { type = Int(try c.decode(Double.self, forKey: .type)) }
        uuid = try c.decodeIfPresent(String.self, forKey: .uuid)
        password = try c.decodeIfPresent(String.self, forKey: .password)
    }

    public var description: String {
        "MetaSharedView(id: \(id), title: \(title), type: \(type), uuid: \(uuid ?? "nil"), password: \(redactedPassword(password)))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(self, children: ["id": id, "title": title, "type": type, "uuid": uuid as Any, "password": redactedPassword(password)])
    }
}

/// How a password appears in descriptions: whether it is set, never what it is.
func redactedPassword(_ password: String?) -> String {
    (password ?? "").isEmpty ? "none" : "<redacted>"
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
