/// What provisioning finds in NocoDB, reduced to what it compares.
public struct MetaSnapshot: Sendable, Equatable {
    public struct Table: Sendable, Equatable {
        public var fields: Set<String>
        public var views: [String: View]
        /// The display-value field's title: NocoDB's "hide all" keeps it visible in a grid
        /// (models/View.ts:1505-1532), so a grid always shows it.
        public var displayValue: String?
        public init(fields: Set<String>, views: [String: View] = [:], displayValue: String? = nil) {
            self.fields = fields
            self.views = views
            self.displayValue = displayValue
        }
    }

    public struct View: Sendable, Equatable {
        public var filters: Int
        /// Titles of the fields shown.
        public var shown: Set<String>
        public init(filters: Int, shown: Set<String>) {
            self.filters = filters
            self.shown = shown
        }
    }

    public var tables: [String: Table]
    public init(tables: [String: Table] = [:]) { self.tables = tables }
}

/// One provisioning change.
public enum ProvisionStep: Sendable, Equatable, CustomStringConvertible {
    case createTable(TableSpec)
    case createField(table: String, FieldSpec)
    case createView(table: String, ViewSpec)
    case addFilter(table: String, view: String, FilterSpec)
    case showOnly(table: String, view: String, fields: [String])

    public var description: String {
        switch self {
        case .createTable(let t):
            "POST /api/v2/meta/bases/{base}/tables — table \(t.title) with fields \(t.fields.map { "\($0.title) (\($0.uidt))" }.joined(separator: ", "))"
        case .createField(let table, let f):
            "POST /api/v2/meta/tables/{\(table)}/columns — field \(f.title) (\(f.uidt)\(f.options.isEmpty ? "" : ": " + f.options.joined(separator: ", ")))"
        case .createView(let table, let v):
            "POST /api/v2/meta/tables/{\(table)}/\(v.kind == MetaView.form ? "forms" : v.kind == MetaView.kanban ? "kanbans" : "grids") — view \(v.title)\(v.groupBy.map { " grouped by \($0)" } ?? "")"
        case .addFilter(let table, let view, let f):
            "POST /api/v2/meta/views/{\(table)/\(view)}/filters — \(f.field) \(f.comparison)\(f.value.map { " \($0)" } ?? "")"
        case .showOnly(let table, let view, let fields):
            "POST /api/v2/meta/views/{\(table)/\(view)}/hide-all, then PATCH /api/v2/meta/views/{\(table)/\(view)}/columns/{column} for each of \(fields.joined(separator: ", "))"
        }
    }
}

/// Decides the changes that bring NocoDB to the wanted tables, fields and views; pure, so
/// idempotency (a second run plans nothing) is tested without a server.
public enum ProvisionPlanner {
    public static func plan(_ wanted: [TableSpec], current: MetaSnapshot) -> [ProvisionStep] {
        var steps: [ProvisionStep] = []
        for spec in wanted {
            guard let table = current.tables[spec.title] else {
                steps.append(.createTable(spec))
                for view in spec.views { steps += viewSteps(spec.title, view, existing: nil) }
                continue
            }
            for field in spec.fields where !table.fields.contains(field.title) {
                steps.append(.createField(table: spec.title, field))
            }
            for view in spec.views {
                steps += viewSteps(spec.title, view, existing: table.views[view.title], displayValue: table.displayValue)
            }
        }
        return steps
    }

    private static func viewSteps(_ table: String, _ view: ViewSpec, existing: MetaSnapshot.View?,
                                  displayValue: String? = nil) -> [ProvisionStep] {
        var steps: [ProvisionStep] = []
        if existing == nil { steps.append(.createView(table: table, view)) }
        if let filter = view.filter, (existing?.filters ?? 0) == 0 {
            steps.append(.addFilter(table: table, view: view.title, filter))
        }
        if let shown = view.shownFields, existing?.shown != expectedShown(view, shown, displayValue: displayValue) {
            steps.append(.showOnly(table: table, view: view.title, fields: shown))
        }
        return steps
    }

    /// What NocoDB shows once `showOnly` ran: in a grid the display value stays visible
    /// whatever is asked, so expecting it away would plan the same step on every run.
    static func expectedShown(_ view: ViewSpec, _ shown: [String], displayValue: String?) -> Set<String> {
        var expected = Set(shown)
        if view.kind == MetaView.grid, let displayValue { expected.insert(displayValue) }
        return expected
    }
}
