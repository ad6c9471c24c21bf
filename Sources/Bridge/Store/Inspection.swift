import Foundation
import Postgres

/// Database figures the console and `/metrics` read at request time, beside the pipelines'
/// in-memory counters: what is waiting (dead letters, the oldest captured change), who holds
/// the leader lock, whether a resync runs. One round trip.
public struct Inspection: Sendable, Equatable {
    /// Dead letters waiting, by the configured table they belong to (`schema.table`).
    public var deadLetters: [String: Int] = [:]
    /// Changelog rows waiting to cross to MongoDB, by table.
    public var backlog: [String: Int] = [:]
    /// Seconds since the oldest change still in the changelog was captured, by table (0: none waiting).
    public var oldestChangeSeconds: [String: Double] = [:]
    /// Some session holds the leader lock (this process or another).
    public var leaderLockHeld = false
    /// The instance holding it (`BridgeConfiguration.instanceID`), when it says.
    public var leaderInstance: String?
    /// The leader lock holder's session, for the console: client address and since when.
    public var leaderSession: String?
    public var resyncRunning = false
    /// Conflicts recorded in the last 24 hours, by table.
    public var conflictsLastDay: [String: Int] = [:]

    public init() {}

    /// Reads them for `configuration`'s tables; every configured table gets a value.
    public static func read(configuration: BridgeConfiguration, on connection: PostgresConnection) throws(PostgresError) -> Inspection {
        var out = Inspection()
        var tableOfSource: [String: String] = [:]
        var tableOfCollection: [String: String] = [:]
        for m in configuration.tables {
            tableOfSource[m.qualifiedName] = m.qualifiedName
            tableOfSource[configuration.mongoDatabase + "." + m.collection] = m.qualifiedName
            tableOfCollection[m.collection] = m.qualifiedName
            out.deadLetters[m.qualifiedName] = 0
            out.oldestChangeSeconds[m.qualifiedName] = 0
            out.backlog[m.qualifiedName] = 0
            out.conflictsLastDay[m.qualifiedName] = 0
        }
        let rows = try connection.query(cached: """
            SELECT 'dead', source_name, count(*)::float8 FROM nocobridge.dead_letters GROUP BY source_name
            UNION ALL
            SELECT v.kind, c.t, v.value FROM (
                SELECT schema_name || '.' || table_name AS t, count(*)::float8 AS n,
                       extract(epoch FROM now() - min(changed_at))::float8 AS age
                FROM nocobridge.changelog GROUP BY schema_name, table_name) c,
            LATERAL (VALUES ('backlog', c.n), ('oldest', c.age)) AS v(kind, value)
            UNION ALL
            SELECT 'conflicts', collection, count(*)::float8 FROM nocobridge.conflicts WHERE at > now() - interval '1 day' GROUP BY collection
            UNION ALL
            SELECT 'leader', coalesce(a.application_name, '') || ' ' || coalesce(host(a.client_addr), 'local') || ' '
                   || coalesce(to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), ''), 1
            FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext($1)::bigint
            UNION ALL
            SELECT 'resync', '', count(*)::float8 FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext('nocobridge.resync')::bigint
            """, [leaderLockKey(mongoDatabase: configuration.mongoDatabase)])
        for r in rows.rows {
            let name = r[1] ?? "", value = Double(r[2] ?? "") ?? 0
            switch r[0] {
            case "dead": if let t = tableOfSource[name] { out.deadLetters[t, default: 0] += Int(value) }
            case "oldest": if out.oldestChangeSeconds[name] != nil { out.oldestChangeSeconds[name] = max(value, 0) }
            case "backlog": if out.backlog[name] != nil { out.backlog[name] = Int(value) }
            case "conflicts": if let t = tableOfCollection[name] { out.conflictsLastDay[t, default: 0] += Int(value) }
            case "leader":
                // "<application name> <client address> <session start>"
                let parts = name.split(separator: " ", maxSplits: 1).map(String.init)
                out.leaderLockHeld = true
                if let app = parts.first, app.hasPrefix(leaderApplicationPrefix) {
                    out.leaderInstance = String(app.dropFirst(leaderApplicationPrefix.count))
                }
                out.leaderSession = parts.count > 1 ? "from " + parts[1].replacingOccurrences(of: " ", with: " since ") : nil
            case "resync": out.resyncRunning = value > 0
            default: break
            }
        }
        return out
    }

    /// `LeaderLock`'s key (`pg_try_advisory_lock(hashtext(key))`).
    static func leaderLockKey(mongoDatabase: String) -> String { "nocobridge.run:" + mongoDatabase }

    static let leaderApplicationPrefix = "nocobridge-leader/"

    static func leaderApplicationName(instanceID: String) -> String { leaderApplicationPrefix + instanceID }
}
