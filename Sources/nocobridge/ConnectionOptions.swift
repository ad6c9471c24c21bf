import ArgumentParser
import Bridge
import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

/// Settings shared by every subcommand: each flag falls back to its environment variable.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .customLong("pg-url"), help: "NocoDB's PostgreSQL URL (env PG_URL).")
    var postgresURL: String?

    @Option(name: .customLong("mongo-url"), help: "MongoDB URL with ?replicaSet= (env MONGO_URL).")
    var mongoURL: String?

    @Option(name: .customLong("mongo-db"), help: "MongoDB database (env MONGO_DB, default nocobridge).")
    var mongoDatabase: String?

    @Option(name: .customLong("tables"), help: "table[=collection],… (env SYNC_TABLES, default \(TableMapping.defaultTables)).")
    var tables: String?

    @Option(name: .customLong("schema"), help: "PostgreSQL schema of the tables: NocoDB's base id (env SYNC_PG_SCHEMA, default public).")
    var schema: String?

    @Option(name: .customLong("direction"), help: "both | to-mongo | to-nocodb (env SYNC_DIRECTION, default both).")
    var direction: String?

    @Option(name: .customLong("batch-size"), help: "Changes per batch (env SYNC_BATCH_SIZE, default 1000).")
    var batchSize: Int?

    @Option(name: .customLong("column-types"), help: "table.column=multiselect|json,… for text columns (env SYNC_COLUMN_TYPES).")
    var columnTypes: String?

    @Option(name: .customLong("policy"), help: "source_priority | last_write_wins | field_merge (env SYNC_CONFLICT_POLICY).")
    var policy: String?

    /// - Parameter discover: resolve `SYNC_TABLES` titles through NocoDB's meta API when
    ///   `NOCODB_URL` is set (`provision` turns it off: the tables may not exist yet).
    func configuration(requireMongo: Bool = true, discover: Bool = true) throws -> BridgeConfiguration {
        let env = ProcessInfo.processInfo.environment
        func setting(_ flag: String?, _ name: String) -> String? {
            if let flag, !flag.isEmpty { return flag }
            if let value = env[name], !value.isEmpty { return value }
            return nil
        }
        guard let pg = setting(postgresURL, "PG_URL") else {
            throw ConfigurationError(setting: "PG_URL", message: "not set (use --pg-url or PG_URL)")
        }
        guard pg.hasPrefix("postgres://") || pg.hasPrefix("postgresql://") || pg.contains("=") else {
            throw ConfigurationError(setting: "PG_URL", message: "expected postgresql://… or key=value connection string")
        }
        if let problem = PostgresConnection.urlProblem(pg) {
            throw ConfigurationError(setting: "PG_URL", message: problem)
        }
        let mongo = setting(mongoURL, "MONGO_URL") ?? ""
        if requireMongo {
            guard !mongo.isEmpty else {
                throw ConfigurationError(setting: "MONGO_URL", message: "not set (use --mongo-url or MONGO_URL)")
            }
            guard mongo.hasPrefix("mongodb://") || mongo.hasPrefix("mongodb+srv://") else {
                throw ConfigurationError(setting: "MONGO_URL", message: "expected mongodb://…")
            }
            if let problem = MongoClientPool.urlProblem(mongo) {
                throw ConfigurationError(setting: "MONGO_URL", message: problem)
            }
        }
        let schemaName = setting(schema, "SYNC_PG_SCHEMA") ?? "public"
        let tableList: [TableMapping]
        do {
            tableList = try TableMapping.parseList(setting(tables, "SYNC_TABLES") ?? TableMapping.defaultTables,
                                                   defaultSchema: schemaName)
        } catch {
            throw ConfigurationError(setting: "SYNC_TABLES", message: error.description)
        }
        var config = BridgeConfiguration(postgresURL: pg, mongoURL: mongo,
                                         mongoDatabase: setting(mongoDatabase, "MONGO_DB") ?? "nocobridge",
                                         tables: tableList)
        if let d = setting(direction, "SYNC_DIRECTION") {
            guard let parsed = BridgeConfiguration.Direction(rawValue: d) else {
                throw ConfigurationError(setting: "SYNC_DIRECTION", message: "\"\(d)\" is not both, to-mongo or to-nocodb")
            }
            config.direction = parsed
        }
        if let b = batchSize ?? env["SYNC_BATCH_SIZE"].flatMap({ Int($0) }) {
            guard (1...100_000).contains(b) else {
                throw ConfigurationError(setting: "SYNC_BATCH_SIZE", message: "\(b) is not between 1 and 100000")
            }
            config.batchSize = b
        } else if let raw = env["SYNC_BATCH_SIZE"], !raw.isEmpty {
            throw ConfigurationError(setting: "SYNC_BATCH_SIZE", message: "\"\(raw)\" is not a number")
        }
        if let p = setting(policy, "SYNC_CONFLICT_POLICY") {
            guard let rule = ConflictPolicy.Rule(rawValue: p) else {
                throw ConfigurationError(setting: "SYNC_CONFLICT_POLICY",
                                         message: "\"\(p)\" is not source_priority, last_write_wins or field_merge")
            }
            config.policy.rule = rule
        }
        for (name, keyPath) in [("SYNC_PRIORITY_NOCO", \ConflictPolicy.nocodbPriority), ("SYNC_PRIORITY_MONGO", \ConflictPolicy.mongoPriority)] {
            guard let raw = env[name], !raw.isEmpty else { continue }
            guard let value = Int(raw) else {
                throw ConfigurationError(setting: name, message: "\"\(raw)\" is not a whole number")
            }
            config.policy[keyPath: keyPath] = value
        }
        if let raw = env["SYNC_CAPTURE"], !raw.isEmpty {
            guard let capture = BridgeConfiguration.Capture(rawValue: raw.lowercased()) else {
                throw ConfigurationError(setting: "SYNC_CAPTURE", message: "\"\(raw)\" is not triggers or logical")
            }
            config.capture = capture
        }
        if let raw = env["SYNC_PRE_IMAGES"], !raw.isEmpty {
            switch raw.lowercased() {
            case "1", "true", "yes": config.usePreImages = true
            case "0", "false", "no": config.usePreImages = false
            default: throw ConfigurationError(setting: "SYNC_PRE_IMAGES", message: "\"\(raw)\" is not true or false")
            }
        }
        if let raw = env["LOG_LEVEL"], !raw.isEmpty, Logger.Level(rawValue: raw.lowercased()) == nil {
            throw ConfigurationError(setting: "LOG_LEVEL", message: "\"\(raw)\" is not trace, debug, info, notice, warning, error or critical")
        }
        if let raw = env["LOG_FORMAT"], !raw.isEmpty, !["text", "json"].contains(raw.lowercased()) {
            throw ConfigurationError(setting: "LOG_FORMAT", message: "\"\(raw)\" is not text or json")
        }
        if let sessions = env["SYNC_NOCODB_SESSIONS"] {
            config.nocodbSessions = sessions.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }.joined(separator: ",")
        }
        if let raw = env["SYNC_DUPLICATE_KEYS"], !raw.isEmpty {
            guard let policy = BridgeConfiguration.DuplicateKeys(rawValue: raw.lowercased()) else {
                throw ConfigurationError(setting: "SYNC_DUPLICATE_KEYS", message: "\"\(raw)\" is not error or new-record")
            }
            config.duplicateKeys = policy
        }
        if let raw = env["SYNC_HISTORY_DAYS"], !raw.isEmpty {
            guard let days = Int(raw), (0...3650).contains(days) else {
                throw ConfigurationError(setting: "SYNC_HISTORY_DAYS", message: "\"\(raw)\" is not a number of days between 0 and 3650")
            }
            config.historyDays = days
        }
        if let raw = env["SYNC_LEASE_SECONDS"], !raw.isEmpty {
            guard let seconds = Double(raw), seconds >= 1, seconds <= 3600 else {
                throw ConfigurationError(setting: "SYNC_LEASE_SECONDS", message: "\"\(raw)\" is not a number of seconds between 1 and 3600")
            }
            config.leaseDuration = .milliseconds(Int(seconds * 1000))
        }
        if let raw = env["SYNC_LEASE_TICK_MS"], !raw.isEmpty {
            guard let ms = Int(raw), ms >= 50, ms <= 60000 else {
                throw ConfigurationError(setting: "SYNC_LEASE_TICK_MS", message: "\"\(raw)\" is not a number of milliseconds between 50 and 60000")
            }
            config.leaseTick = .milliseconds(ms)
        }
        if let kinds = setting(columnTypes, "SYNC_COLUMN_TYPES") {
            config.columnKinds = try BridgeConfiguration.parseColumnKinds(kinds)
        }
        if discover, let client = try NocoDBSettings.client(env) {
            try NocoDBSettings.discover(into: &config, client: client, externalSchema: schemaName)
        }
        return config
    }
}
