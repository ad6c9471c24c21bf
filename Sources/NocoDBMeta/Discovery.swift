/// A synced table as NocoDB's meta describes it: the title managers see, where PostgreSQL
/// keeps it, and each field's title by column name (titles and column names differ: a
/// title "Table No" is column "Table_No").
public struct DiscoveredTable: Sendable, Equatable {
    public let id: String
    public let title: String
    public let schema: String
    public let tableName: String
    /// Column name → field title, for NocoDB's non-system fields.
    public let fieldTitles: [String: String]
    /// Column name → NocoDB field type (`uidt`).
    public let fieldTypes: [String: String]
}

/// Resolves table titles to physical PostgreSQL names through the meta API.
public struct Discovery: Sendable {
    public let client: NocoDBMetaClient

    public init(client: NocoDBMetaClient) { self.client = client }

    /// The configured base, by id or by (unique) title.
    public func base() throws -> MetaBase {
        let wanted = client.configuration.base
        let bases = try client.bases()
        if let byID = bases.first(where: { $0.id == wanted }) { return byID }
        let byTitle = bases.filter { $0.title == wanted }
        guard byTitle.count <= 1 else {
            throw NocoDBError.rejected(operation: "find base", status: 0,
                                       message: "\(byTitle.count) bases are titled \"\(wanted)\"; set NOCODB_BASE to the base id")
        }
        // The list is every base the token's user may see, however long: its pageInfo may
        // say otherwise, but bases.service.ts:41-53 returns them all; so a base missing here
        // is not one this token reaches.
        guard let base = byTitle.first else {
            throw NocoDBError.notFound("base \"\(wanted)\" (NOCODB_BASE: its id from the base's URL, or its title; bases visible to this token: \(bases.map(\.title).joined(separator: ", ")))")
        }
        return base
    }

    /// Each title's table; throws naming the first title the base does not have.
    /// - Parameter externalSchema: the schema for tables of an external data source, whose
    ///   connection settings NocoDB keeps encrypted (`SYNC_PG_SCHEMA`).
    public func resolve(titles: [String], externalSchema: String) throws -> (base: MetaBase, tables: [DiscoveredTable]) {
        let base = try base()
        let summaries = try client.tables(base: base.id)
        var found: [DiscoveredTable] = []
        for title in titles {
            guard let summary = summaries.first(where: { $0.title == title }) ?? summaries.first(where: { $0.tableName == title }) else {
                throw NocoDBError.notFound("table \"\(title)\" in base \"\(base.title)\" (tables: \(summaries.map(\.title).joined(separator: ", ")))")
            }
            let table = try client.table(id: summary.id)
            var titles: [String: String] = [:], types: [String: String] = [:]
            for column in table.columns ?? [] where !column.system {
                guard let name = column.columnName else { continue }  // virtual fields (links, formulas)
                titles[name] = column.title
                types[name] = column.uidt
            }
            found.append(DiscoveredTable(id: table.id, title: table.title, schema: Self.schema(of: table, in: base, external: externalSchema),
                                         tableName: table.tableName, fieldTitles: titles, fieldTypes: types))
        }
        return (base, found)
    }

    /// NocoDB's default data source keeps a base's tables in a schema named after the base
    /// id; legacy bases (a `nc_xxxx__` prefix) keep them, prefixed, in the default schema.
    static func schema(of table: MetaTable, in base: MetaBase, external: String) -> String {
        let source = base.sources?.first { $0.id == table.sourceId } ?? base.sources?.first
        guard let source, source.isMeta || source.isLocal else { return external }
        if let prefix = base.prefix, !prefix.isEmpty { return "public" }
        return base.id
    }
}
