import Foundation
import Mongo
import Postgres
import SyncCore

/// What `/status` reports: real pings of both databases, per table and direction the
/// pipelines' counters and the changelog backlog, and an overall verdict.
public struct BridgeHealth: Sendable, Codable {
    public enum Overall: String, Sendable, Codable { case ok, degraded, down }

    public struct Direction: Sendable, Codable {
        public var running: Bool
        public var lastError: String?
        public var batches: Int
        public var tables: [String: Table]
    }

    public struct Table: Sendable, Codable {
        public var applied: Int
        public var writes: Int
        public var conflicts: Int
        public var deadLetters: Int
        public var lagMilliseconds: Int64?
        public var lastAppliedAt: String?
        public var backlog: Int?
    }

    public var status: Overall
    public var postgres: Bool
    public var mongo: Bool
    public var directions: [String: Direction]
    public var checkedAt: String

    /// Pings both servers (blocking: call from a thread, not the cooperative pool).
    public static func collect(configuration: BridgeConfiguration, toMongo: PipelineStatistics,
                               toNocoDB: PipelineStatistics) -> BridgeHealth {
        var backlog: [String: Int] = [:]
        var postgresUp = false
        if let c = try? PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-status"),
           let rows = try? c.query("SELECT schema_name || '.' || table_name, count(*) FROM nocobridge.changelog GROUP BY 1") {
            postgresUp = true
            for r in rows.rows { if let k = r[0], let n = r[1].flatMap({ Int($0) }) { backlog[k] = n } }
        }
        let mongoUp = (try? MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase, serverSelectionTimeoutMS: 1000).ping()) != nil
        let formatter = ISO8601DateFormatter()
        func direction(_ stats: PipelineStatistics, enabled: Bool, withBacklog: Bool) -> Direction {
            let s = stats.snapshot
            var tables: [String: Table] = [:]
            for mapping in configuration.tables {
                let t = s.tables[mapping.qualifiedName] ?? .init()
                tables[mapping.qualifiedName] = Table(
                    applied: t.changes, writes: t.writes, conflicts: t.conflicts, deadLetters: t.deadLetters,
                    lagMilliseconds: t.lastLagMilliseconds, lastAppliedAt: t.lastAppliedAt.map(formatter.string(from:)),
                    backlog: withBacklog ? backlog[mapping.qualifiedName] ?? (postgresUp ? 0 : nil) : nil)
            }
            return Direction(running: enabled && s.connected, lastError: s.lastError, batches: s.batches, tables: tables)
        }
        let a = direction(toMongo, enabled: configuration.direction.includesToMongo, withBacklog: true)
        let b = direction(toNocoDB, enabled: configuration.direction.includesToNocoDB, withBacklog: false)
        let expected = [configuration.direction.includesToMongo ? a.running : true, configuration.direction.includesToNocoDB ? b.running : true]
        let overall: Overall = !postgresUp && !mongoUp ? .down : (postgresUp && mongoUp && !expected.contains(false) ? .ok : .degraded)
        var directions: [String: Direction] = [:]
        if configuration.direction.includesToMongo { directions["to-mongo"] = a }
        if configuration.direction.includesToNocoDB { directions["to-nocodb"] = b }
        return BridgeHealth(status: overall, postgres: postgresUp, mongo: mongoUp, directions: directions,
                            checkedAt: formatter.string(from: Date()))
    }

    public var ready: Bool { status == .ok }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// Prometheus text exposition of the same counters.
    public func prometheus() -> String {
        var out: [String] = []
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(String, String)]) {
            out.append("# HELP \(name) \(help)")
            out.append("# TYPE \(name) \(type)")
            for (labels, value) in samples { out.append("\(name){\(labels)} \(value)") }
        }
        var applied: [(String, String)] = [], writes: [(String, String)] = [], conflicts: [(String, String)] = []
        var dead: [(String, String)] = [], lag: [(String, String)] = [], backlog: [(String, String)] = []
        for (dir, d) in directions.sorted(by: { $0.key < $1.key }) {
            for (table, t) in d.tables.sorted(by: { $0.key < $1.key }) {
                let labels = "direction=\"\(dir)\",table=\"\(table)\""
                applied.append((labels, String(t.applied)))
                writes.append((labels, String(t.writes)))
                conflicts.append((labels, String(t.conflicts)))
                dead.append((labels, String(t.deadLetters)))
                if let l = t.lagMilliseconds { lag.append((labels, String(Double(l) / 1000))) }
                if let b = t.backlog { backlog.append(("table=\"\(table)\"", String(b))) }
            }
        }
        family("nocobridge_changes_applied_total", "counter", "Changes read and decided.", applied)
        family("nocobridge_writes_total", "counter", "Writes made to either side.", writes)
        family("nocobridge_conflicts_total", "counter", "Conflicts resolved by the policy.", conflicts)
        family("nocobridge_dead_letters_total", "counter", "Changes sent to dead letters.", dead)
        family("nocobridge_lag_seconds", "gauge", "Age of the oldest change in the last batch.", lag)
        family("nocobridge_changelog_backlog", "gauge", "Changelog rows waiting.", backlog)
        family("nocobridge_up", "gauge", "1 when the server answered a ping.",
               [("server=\"postgres\"", postgres ? "1" : "0"), ("server=\"mongo\"", mongo ? "1" : "0")])
        return out.joined(separator: "\n") + "\n"
    }
}
