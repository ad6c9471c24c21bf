/// How a PostgreSQL column's text is read and written, chosen from its declared type and,
/// where the type alone is ambiguous (a MultiSelect or a JSON field kept in `text`), from
/// NocoDB's field type.
public enum ColumnKind: String, Sendable, Hashable, CaseIterable {
    case text
    case int32
    case int64
    case double
    case numeric
    case bool
    case timestamp
    case timestamptz
    case date
    case json
    case multiSelect

    /// Maps `format_type()` output (`pg_catalog.format_type(atttypid, atttypmod)`).
    public init(postgresType: String) {
        let base = postgresType.split(separator: "(").first.map(String.init) ?? postgresType
        switch base {
        case "smallint", "integer": self = .int32
        case "bigint": self = .int64
        case "real", "double precision": self = .double
        case "numeric", "decimal": self = .numeric
        case "boolean": self = .bool
        case "timestamp without time zone", "timestamp": self = .timestamp
        case "timestamp with time zone": self = .timestamptz
        case "date": self = .date
        case "json", "jsonb": self = .json
        default: self = .text
        }
    }

    /// NocoDB field types (`uidt`) that change how a text column is read.
    public static func override(forNocoDBType uidt: String) -> ColumnKind? {
        switch uidt {
        case "MultiSelect": .multiSelect
        case "JSON": .json
        default: nil
        }
    }
}

/// One column of a synced table.
public struct Column: Sendable, Hashable {
    /// The PostgreSQL column name.
    public let name: String
    public let kind: ColumnKind
    public let postgresType: String
    /// The MongoDB field name: NocoDB's field title when known, else the column name.
    public let field: String

    public init(name: String, kind: ColumnKind, postgresType: String, field: String? = nil) {
        self.name = name
        self.kind = kind
        self.postgresType = postgresType
        self.field = field ?? name
    }
}
