import Foundation
import Postgres

/// Database figures the console and `/metrics` read at request time, beside the pipelines'
/// in-memory counters: what is waiting (dead letters, the oldest captured change), who holds
/// which instance holds which table's lease, whether a resync runs. Two round trips.
public struct Inspection: Sendable, Equatable {
    /// Dead letters waiting, by the configured table they belong to (`schema.table`).
    public var deadLetters: [String: Int] = [:]
    /// Changelog rows waiting to cross to MongoDB, by table.
    public var backlog: [String: Int] = [:]
    /// Seconds since the oldest change still in the changelog was captured, by table (0: none waiting).
    public var oldestChangeSeconds: [String: Double] = [:]
    /// Every unit's lease (`nocobridge.leases`), in unit order.
    public var leases: [Lease] = []
    /// The instances listed in `nocobridge.instances`, in id order.
    public var instances: [Instance] = []
    public var resyncRunning = false
    /// Conflicts recorded in the last 24 hours, by table.
    public var conflictsLastDay: [String: Int] = [:]

    public init() {}

    public struct Lease: Sendable, Equatable, Codable {
        public var unit: String
        /// The holding instance while the lease is current; nil when free or expired.
        public var holder: String?
        public var token: Int64
        /// Milliseconds until it expires (negative: expired).
        public var expiresInMs: Int64
    }

    public struct Instance: Sendable, Equatable, Codable {
        public var id: String
        public var host: String
        public var pid: Int
        public var heartbeatAgeMs: Int64
    }

    /// Some instance holds a current lease (this process or another).
    public var anyLeaseHeld: Bool { leases.contains { $0.holder != nil } }

    /// Who works on `table` now: its own unit's holder, or with logical capture the slot's.
    public func holder(of table: String) -> String? {
        if let lease = leases.first(where: { $0.unit == table }) { return lease.holder }
        return leases.first(where: { $0.unit.hasPrefix("logical:") })?.holder
    }

    /// Units per holding instance.
    public var unitsByInstance: [String: [String]] {
        var out: [String: [String]] = [:]
        for lease in leases { if let h = lease.holder { out[h, default: []].append(lease.unit) } }
        return out
    }

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
            SELECT 'resync', '', count(*)::float8 FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext('nocobridge.resync')::bigint
            """, [])
        for r in rows.rows {
            let name = r[1] ?? "", value = Double(r[2] ?? "") ?? 0
            switch r[0] {
            case "dead": if let t = tableOfSource[name] { out.deadLetters[t, default: 0] += Int(value) }
            case "oldest": if out.oldestChangeSeconds[name] != nil { out.oldestChangeSeconds[name] = max(value, 0) }
            case "backlog": if out.backlog[name] != nil { out.backlog[name] = Int(value) }
            case "conflicts": if let t = tableOfCollection[name] { out.conflictsLastDay[t, default: 0] += Int(value) }
            case "resync": out.resyncRunning = value > 0
            default: break
            }
        }
        let (leases, instances) = try leases(on: connection)
        out.leases = leases
        out.instances = instances
        return out
    }

    /// Every lease and the instances whose rows are current, sorted (a second round trip,
    /// also what `/status` reads).
    public static func leases(on connection: PostgresConnection) throws(PostgresError) -> ([Lease], [Instance]) {
        let rows = try connection.query(cached: """
            SELECT 'lease', token::text, CASE WHEN expires_at = '-infinity' THEN -1 ELSE (extract(epoch FROM expires_at - now()) * 1000)::bigint END::text,
                   CASE WHEN expires_at > now() THEN holder END, unit
            FROM nocobridge.leases
            UNION ALL
            SELECT 'instance', pid::text, (extract(epoch FROM now() - heartbeat_at) * 1000)::bigint::text, id, coalesce(host, '')
            FROM nocobridge.instances WHERE expires_at > now()
            """, [])
        var leases: [Lease] = [], instances: [Instance] = []
        for r in rows.rows {
            if r[0] == "lease", let unit = r[4] {
                leases.append(Lease(unit: unit, holder: r[3], token: Int64(r[1] ?? "") ?? 0, expiresInMs: Int64(r[2] ?? "") ?? 0))
            } else if r[0] == "instance", let id = r[3] {
                instances.append(Instance(id: id, host: r[4] ?? "", pid: Int(r[1] ?? "") ?? 0, heartbeatAgeMs: Int64(r[2] ?? "") ?? 0))
            }
        }
        return (leases.sorted { $0.unit < $1.unit }, instances.sorted { $0.id < $1.id })
    }
}
