/// A field NocoBridge needs in NocoDB, in the meta API's `ColumnReq` terms.
public struct FieldSpec: Sendable, Equatable {
    public let title: String
    public let uidt: String
    /// SingleSelect/MultiSelect options.
    public var options: [String] = []

    public init(_ title: String, _ uidt: String, options: [String] = []) {
        self.title = title
        self.uidt = uidt
        self.options = options
    }

    /// The primary key column NocoDB's web UI sends when it creates a table (nocodb-sdk
    /// src/lib/sqlUi/PgUi.ts:107-131 getNewTableColumns): NocoDB 0.258.3 adds none itself,
    /// and rows of a table without one cannot be edited in NocoDB; capture reads `id`.
    public static let idColumn: [String: any Sendable] = [
        "column_name": "id", "title": "Id", "uidt": "ID", "dt": "int4", "pk": true, "ai": true, "rqd": true, "un": false,
    ]

    /// The `ColumnReq` body.
    public var request: [String: any Sendable] {
        var body: [String: any Sendable] = ["title": title, "uidt": uidt]
        if !options.isEmpty { body["colOptions"] = ["options": options.map { ["title": $0] as [String: any Sendable] }] }
        return body
    }
}

public struct FilterSpec: Sendable, Equatable {
    public let field: String
    /// One of NocoDB's `comparison_op` values, e.g. `neq`, `notblank`.
    public let comparison: String
    public var value: String?
}

public struct ViewSpec: Sendable, Equatable {
    public let title: String
    /// `MetaView.grid`, `.form` or `.kanban`.
    public let kind: Int
    /// Kanban grouping field (SingleSelect).
    public var groupBy: String?
    /// The only fields shown (nil: NocoDB's default, all).
    public var shownFields: [String]?
    public var filter: FilterSpec?
}

public struct TableSpec: Sendable, Equatable {
    public let title: String
    public let fields: [FieldSpec]
    public let views: [ViewSpec]
}

/// The seed architecture's data model and manager views (shared/seed-architecture.md).
public enum SeedModel {
    public static let commonFields = [
        FieldSpec("externalId", "SingleLineText"), FieldSpec("updatedAt", "DateTime"),
        FieldSpec("source", "SingleSelect", options: ["mongo", "nocodb"]), FieldSpec("version", "Number"),
    ]

    public static let tables = [
        TableSpec(title: "waiter_ops",
                  fields: commonFields + [FieldSpec("table_no", "Number"), FieldSpec("action", "SingleLineText"), FieldSpec("notes", "LongText")],
                  views: [
                      ViewSpec(title: "Waiter Ops", kind: MetaView.grid,
                               filter: FilterSpec(field: "action", comparison: "notblank")),
                      ViewSpec(title: "Waiter Ops Form", kind: MetaView.form, shownFields: ["action", "notes"]),
                  ]),
        TableSpec(title: "chef_orders",
                  fields: commonFields + [FieldSpec("items", "JSON"),
                                          FieldSpec("status", "SingleSelect", options: ["new", "cooking", "ready", "served"])],
                  views: [ViewSpec(title: "Chef Orders Board", kind: MetaView.kanban, groupBy: "status",
                                   shownFields: ["externalId", "status", "items"])]),
        TableSpec(title: "cashier_txns",
                  fields: commonFields + [FieldSpec("amount", "Decimal"), FieldSpec("currency", "SingleLineText"),
                                          FieldSpec("method", "SingleSelect", options: ["cash", "card"])],
                  views: [ViewSpec(title: "Cashier Txns", kind: MetaView.grid, shownFields: ["amount", "currency", "method"])]),
    ]
}
