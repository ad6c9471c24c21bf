import Bridge
import Foundation
import Logging
import NocoDBMeta
import SyncCore

/// `NOCODB_URL`, `NOCODB_TOKEN`, `NOCODB_BASE`: when set, tables and fields are named as
/// managers see them in NocoDB and resolved to PostgreSQL names through its meta API.
enum NocoDBSettings {
    static func configuration(_ env: [String: String]) throws -> NocoDBConfiguration? {
        let url = env["NOCODB_URL"].flatMap { $0.isEmpty ? nil : $0 }
        let token = env["NOCODB_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        let base = env["NOCODB_BASE"].flatMap { $0.isEmpty ? nil : $0 }
        guard url != nil || token != nil || base != nil else { return nil }
        guard let url else { throw ConfigurationError(setting: "NOCODB_URL", message: "not set (NOCODB_TOKEN/NOCODB_BASE are)") }
        guard let parsed = URL(string: url), let scheme = parsed.scheme, ["http", "https"].contains(scheme), parsed.host != nil else {
            throw ConfigurationError(setting: "NOCODB_URL", message: "expected http(s)://host[:port]")
        }
        guard let token else { throw ConfigurationError(setting: "NOCODB_TOKEN", message: "not set (an API token from Team & Settings → API Tokens)") }
        guard let base else { throw ConfigurationError(setting: "NOCODB_BASE", message: "not set (the base id from its URL, or its title)") }
        var config = NocoDBConfiguration(url: parsed, token: token, base: base)
        if let raw = env["NOCODB_TIMEOUT_MS"], !raw.isEmpty {
            guard let ms = Int(raw), ms > 0 else { throw ConfigurationError(setting: "NOCODB_TIMEOUT_MS", message: "\"\(raw)\" is not a positive number") }
            config.timeout = .milliseconds(ms)
        }
        return config
    }

    /// `NOCODB_PUBLIC_URL`: the address staff open NocoDB at, for printed share links, when
    /// the bridge reaches it at another (`http://nocodb:8080` inside a Compose network).
    static func publicURL(_ env: [String: String]) throws -> String? {
        guard let raw = env["NOCODB_PUBLIC_URL"], !raw.isEmpty else { return nil }
        guard let parsed = URL(string: raw), let scheme = parsed.scheme, ["http", "https"].contains(scheme), parsed.host != nil,
              parsed.user == nil, parsed.password == nil else {
            throw ConfigurationError(setting: "NOCODB_PUBLIC_URL", message: "expected http(s)://host[:port][/path], without user info")
        }
        return raw
    }

    static func client(_ env: [String: String]) throws -> NocoDBMetaClient? {
        try configuration(env).map { NocoDBMetaClient(configuration: $0, logger: makeLogger("nocobridge.nocodb")) }
    }

    /// Replaces the configured table titles by their physical names, and names each field
    /// after its NocoDB title; MultiSelect and JSON-in-text fields get their mapping from
    /// their NocoDB type unless `SYNC_COLUMN_TYPES` says otherwise. The titles are asked
    /// again whenever a pipeline reloads a table's columns.
    static func discover(into config: inout BridgeConfiguration, client: NocoDBMetaClient, externalSchema: String) throws {
        let titles = config.tables.map(\.table)
        let (_, found) = try Discovery(client: client).resolve(titles: titles, externalSchema: externalSchema)
        config.tables = zip(config.tables, found).map { mapping, table in
            TableMapping(schema: table.schema, table: table.tableName, collection: mapping.collection)
        }
        let overrides = NocoDBFieldMetadata.overrides(found)
        config.fieldNames.merge(overrides.fieldNames) { _, new in new }
        config.columnKinds.merge(overrides.columnKinds) { configured, _ in configured }
        config.fieldMetadata = NocoDBFieldMetadata(client: client, titles: titles, externalSchema: externalSchema)
    }
}

/// Field titles and types from NocoDB's meta API, for the bridge's table shapes.
struct NocoDBFieldMetadata: FieldMetadataSource {
    let client: NocoDBMetaClient
    let titles: [String]
    let externalSchema: String

    func current() throws -> (fieldNames: [String: String], columnKinds: [String: ColumnKind]) {
        Self.overrides(try Discovery(client: client).resolve(titles: titles, externalSchema: externalSchema).tables)
    }

    static func overrides(_ tables: [DiscoveredTable]) -> (fieldNames: [String: String], columnKinds: [String: ColumnKind]) {
        var names: [String: String] = [:], kinds: [String: ColumnKind] = [:]
        for table in tables {
            for (column, title) in table.fieldTitles where title != column {
                names["\(table.tableName).\(column)"] = title
            }
            for (column, uidt) in table.fieldTypes {
                if let kind = ColumnKind.override(forNocoDBType: uidt) { kinds["\(table.tableName).\(column)"] = kind }
            }
        }
        return (names, kinds)
    }
}
