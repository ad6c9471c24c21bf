import Logging

/// Reads NocoDB's current meta, plans, and (unless dry-running) makes the planned calls.
public struct Provisioner: Sendable {
    public let client: NocoDBMetaClient
    public let logger: Logger

    public init(client: NocoDBMetaClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// What is there now for the wanted tables.
    public func snapshot(base: String, wanted: [TableSpec]) throws -> MetaSnapshot {
        var snapshot = MetaSnapshot()
        let tables = try client.tables(base: base)
        for spec in wanted {
            guard let summary = tables.first(where: { $0.title == spec.title }) else { continue }
            let table = try client.table(id: summary.id)
            let byID = Dictionary((table.columns ?? []).map { ($0.id, $0.title) }, uniquingKeysWith: { a, _ in a })
            var state = MetaSnapshot.Table(fields: Set((table.columns ?? []).map(\.title)),
                                           displayValue: table.columns?.first(where: \.pv)?.title)
            let views = try client.views(table: table.id)
            for viewSpec in spec.views {
                guard let view = views.first(where: { $0.title == viewSpec.title }) else { continue }
                let filters = viewSpec.filter == nil ? 0 : try client.filters(view: view.id).count
                let shown = viewSpec.shownFields == nil ? [] : try client.viewColumns(view: view.id).filter(\.show).compactMap { byID[$0.fkColumnId] }
                state.views[view.title] = MetaSnapshot.View(filters: filters, shown: Set(shown))
            }
            snapshot.tables[spec.title] = state
        }
        return snapshot
    }

    /// Applies `steps` in order; returns the steps made.
    @discardableResult
    public func apply(_ steps: [ProvisionStep], base: String) throws -> [ProvisionStep] {
        var tableIDs: [String: String] = [:]
        func table(_ title: String) throws -> MetaTable {
            if tableIDs[title] == nil {
                guard let id = try client.tables(base: base).first(where: { $0.title == title })?.id else {
                    throw NocoDBError.notFound("table \"\(title)\"")
                }
                tableIDs[title] = id
            }
            return try client.table(id: tableIDs[title]!)
        }
        func field(_ title: String, of t: MetaTable) throws -> MetaColumn {
            guard let c = t.columns?.first(where: { $0.title == title }) else { throw NocoDBError.notFound("field \"\(title)\" of table \"\(t.title)\"") }
            return c
        }
        func view(_ title: String, of t: MetaTable) throws -> MetaView {
            guard let v = try client.views(table: t.id).first(where: { $0.title == title }) else { throw NocoDBError.notFound("view \"\(title)\" of table \"\(t.title)\"") }
            return v
        }
        for step in steps {
            logger.info("provisioning", metadata: ["nocodb.step": "\(step)"])
            switch step {
            case .createTable(let spec):
                let created = try client.createTable(base: base, title: spec.title, fields: spec.fields.map(\.request))
                tableIDs[spec.title] = created.id
            case .createField(let title, let spec):
                try client.createField(table: try table(title).id, field: spec.request)
            case .createView(let title, let spec):
                let t = try table(title)
                _ = try client.createView(table: t.id, title: spec.title, kind: spec.kind,
                                          groupBy: try spec.groupBy.map { try field($0, of: t).id })
            case .addFilter(let title, let viewTitle, let spec):
                let t = try table(title)
                try client.createFilter(view: try view(viewTitle, of: t).id, field: try field(spec.field, of: t).id,
                                        comparison: spec.comparison, value: spec.value)
            case .showOnly(let title, let viewTitle, let fields):
                let t = try table(title)
                let v = try view(viewTitle, of: t)
                try client.hideAllFields(view: v.id)
                let wanted = Set(try fields.map { try field($0, of: t).id })
                for column in try client.viewColumns(view: v.id) where wanted.contains(column.fkColumnId) {
                    try client.showField(view: v.id, viewColumn: column.id, show: true)
                }
            }
        }
        return steps
    }
}
