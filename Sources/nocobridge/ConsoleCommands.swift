import ArgumentParser
import Bridge
import Foundation
import Postgres
import SyncCore

/// `nocobridge conflicts` and `nocobridge history`: what the console's Conflicts and History
/// tabs show, read straight from the database (the bridge need not run), as a table or JSON.
struct ConflictsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conflicts", abstract: "Conflicts the bridge decided: both versions, the fields that differed, winner and rule.")

    @OptionGroup var options: ConnectionOptions
    @Option(name: .customLong("table"), help: "Only this synced table (name, schema.table or collection).") var table: String?
    @Option(help: "Only this record (externalId).") var key: String?
    @Option(help: "At most this many, newest first.") var limit = 50
    @Flag(help: "Print JSON (the console's /api/conflicts entries).") var json = false

    func run() async throws {
        try await runReporting {
            let config = try options.configuration(requireMongo: false)
            let collection = try RecordFilter.collection(table, in: config)
            let c = try PostgresConnection(url: config.postgresURL, applicationName: "nocobridge-cli")
            let rows = try ConflictLog.rows(collection: collection, key: key, limit: max(limit, 1), on: c)
            let text = json ? ConsoleText.conflictsJSON(rows, configuration: config) : ConsoleText.conflictsTable(rows, configuration: config)
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }
}

struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history", abstract: "A record's history: what changed, on which side, by whom, and what the bridge decided.")

    @OptionGroup var options: ConnectionOptions
    @Option(name: .customLong("table"), help: "The synced table (name, schema.table or collection).") var table: String
    @Option(help: "The record (externalId).") var key: String
    @Option(help: "At most this many, newest first.") var limit = 100
    @Flag(help: "Print JSON (the console's /api/history entries).") var json = false

    func run() async throws {
        try await runReporting {
            let config = try options.configuration(requireMongo: false)
            let collection = try RecordFilter.collection(table, in: config)
            let c = try PostgresConnection(url: config.postgresURL, applicationName: "nocobridge-cli")
            let rows = try HistoryQuery.rows(collection: collection, key: key, limit: max(limit, 1), on: c)
            let text = json ? ConsoleText.historyJSON(rows, configuration: config) : ConsoleText.historyTable(rows, configuration: config)
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }
}

enum RecordFilter {
    static func collection(_ name: String?, in config: BridgeConfiguration) throws -> String? {
        guard let name, !name.isEmpty else { return nil }
        guard let m = config.tables.first(where: { $0.table == name || $0.qualifiedName == name || $0.collection == name }) else {
            throw ConfigurationError(setting: "--table", message: "\"\(name)\" is not a synced table (SYNC_TABLES: \(config.tables.map(\.table).joined(separator: ", ")))")
        }
        return m.collection
    }
}

/// The terminal forms, with the console's JSON for `--json`.
enum ConsoleText {
    static func table(of collection: String, _ config: BridgeConfiguration) -> String {
        config.tables.first { $0.collection == collection }?.qualifiedName ?? collection
    }

    static func conflictsTable(_ rows: [ConflictLog.Row], configuration: BridgeConfiguration) -> String {
        guard !rows.isEmpty else { return "no conflicts recorded\n" }
        var out = ""
        for r in rows {
            out += "#\(r.id)  \(r.at)  \(table(of: r.collection, configuration))  key \(r.key)  winner \(r.winner)  rule \(r.rule)\n"
            let n = Dictionary(r.nocodb.fields.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            let m = Dictionary(r.mongo.fields.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            let names = Set(n.keys).union(m.keys).sorted()
            let differing = Set(r.differing)
            let width = max(5, names.map(\.count).max() ?? 0)
            func cell(_ deleted: Bool, _ v: String??) -> String { deleted ? "(deleted)" : v.map { $0 ?? "null" } ?? "-" }
            out += "   " + "FIELD".padding(toLength: width, withPad: " ", startingAt: 0) + "  " + "NOCODB".padding(toLength: 30, withPad: " ", startingAt: 0) + "  MONGODB\n"
            for name in names {
                out += (differing.contains(name) ? " * " : "   ") + name.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                    + oneLine(cell(r.nocodb.deleted, n[name])).padding(toLength: 30, withPad: " ", startingAt: 0) + "  "
                    + oneLine(cell(r.mongo.deleted, m[name])) + "\n"
            }
            if names.isEmpty { out += "   (both deleted)\n" }
        }
        return out + "* = the field differed\n"
    }

    static func historyTable(_ rows: [HistoryQuery.Row], configuration: BridgeConfiguration) -> String {
        guard !rows.isEmpty else { return "no history for this record\n" }
        var out = "AT                        SIDE    OP        BY            DECISION      VIA     CHANGES\n"
        for r in rows {
            var changes: [String] = []
            if let text = r.changed, case .document(let d)? = try? JSON.parse(text) {
                for f in d.fields {
                    if case .array(let pair) = f.value, pair.count == 2 { changes.append("\(f.key): \(describe(pair[0])) → \(describe(pair[1]))") }
                }
            }
            if let w = r.winner, let rule = r.rule { changes.append("conflict: \(w) won by \(rule)") }
            if let text = r.discarded { changes.append("overwritten: \(text)") }
            if let note = r.note { changes.append(note) }
            out += [r.at.padding(toLength: 25, withPad: " ", startingAt: 0), r.side.padding(toLength: 7, withPad: " ", startingAt: 0),
                    r.op.padding(toLength: 9, withPad: " ", startingAt: 0), oneLine(r.editedBy ?? "-").padding(toLength: 13, withPad: " ", startingAt: 0),
                    r.decision.padding(toLength: 13, withPad: " ", startingAt: 0), r.via.padding(toLength: 7, withPad: " ", startingAt: 0),
                    oneLine(changes.joined(separator: "; "))].joined(separator: " ") + "\n"
        }
        return out
    }

    static func describe(_ v: Value) -> String {
        if case .string(let s) = v { return s }
        return JSON.serialize(v)
    }

    /// Control characters shown escaped, so a value cannot rewrite the terminal.
    static func oneLine(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if u.value < 0x20 || u.value == 0x7F || (0x80...0x9F).contains(u.value) {
                    out += String(format: "\\u{%X}", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out
    }

    static func conflictsJSON(_ rows: [ConflictLog.Row], configuration: BridgeConfiguration) -> String {
        JSON.serialize(.document(["conflicts": .array(rows.map { $0.json(table: table(of: $0.collection, configuration)) })])) + "\n"
    }

    static func historyJSON(_ rows: [HistoryQuery.Row], configuration: BridgeConfiguration) -> String {
        JSON.serialize(.document(["historyDays": .int64(Int64(configuration.historyDays)),
                                  "history": .array(rows.map { $0.json(table: table(of: $0.collection, configuration)) })])) + "\n"
    }
}

/// The tables this version writes must exist: an older schema would make every batch fail.
enum SchemaCheck {
    static func requireCurrent(configuration: BridgeConfiguration) throws {
        let c = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-preflight")
        let missing = try c.query("""
            SELECT t FROM unnest(ARRAY['nocobridge.history', 'nocobridge.resync_progress']) t WHERE to_regclass(t) IS NULL
            """).rows.compactMap { $0[0] }
        guard missing.isEmpty else {
            throw ConfigurationError(setting: "PG_URL", message: "the nocobridge schema predates this version (no \(missing.joined(separator: ", "))); run `nocobridge install` to upgrade it")
        }
        // A limited role granted before the upgrade has no rights on the new tables yet.
        if configuration.historyDays > 0,
           try c.query("SELECT has_table_privilege('nocobridge.history', 'INSERT, DELETE')").rows.first?[0] != "t" {
            throw ConfigurationError(setting: "PG_URL", message: "this role may not write nocobridge.history; run `nocobridge install --grant-to <this role>` as the tables' owner (or set SYNC_HISTORY_DAYS=0)")
        }
    }
}
