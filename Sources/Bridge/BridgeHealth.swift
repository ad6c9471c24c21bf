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

    /// Logical capture: the slot's retained WAL and PostgreSQL's `wal_status` for it
    /// (`reserved`, `extended`, `unreserved`, `lost`).
    public struct Slot: Sendable, Codable {
        public var retainedWalBytes: Int64
        public var walStatus: String
    }

    public var status: Overall
    public var logicalSlot: Slot?
    public var postgres: Bool
    public var mongo: Bool
    public var directions: [String: Direction]
    public var checkedAt: String
    /// The running binary's version and build (set by the status endpoint).
    public var version: String?
    /// MongoDB's clock minus PostgreSQL's: both date changes for `last_write_wins` and
    /// tombstones (`clockSkew.isLarge` above a second).
    public var clockSkew: ServerCheck.Skew?
    /// This process (`BridgeConfiguration.instanceID`).
    public var instance: String?
    /// Every unit's lease and who holds it; `mine` marks this instance's.
    public var leases: [LeaseStatus]?
    /// The instances sharing the work, with the units each holds.
    public var instances: [InstanceStatus]?
    /// The tables whose pipelines run in this process: the per-table counters above count
    /// only the work done here (another instance counts its own tables).
    public var runningHere: [String]?

    public struct LeaseStatus: Sendable, Codable {
        public var unit: String
        public var holder: String?
        public var token: Int64
        public var expiresInMs: Int64
        public var mine: Bool
    }

    public struct InstanceStatus: Sendable, Codable {
        public var id: String
        public var host: String
        public var pid: Int
        public var heartbeatAgeMs: Int64
        public var units: [String]
    }

    /// Pings both servers through the probe's long-lived connections (blocking: call from a
    /// thread, not the cooperative pool).
    /// - Parameter held: the leases this process holds (unit → token).
    public static func collect(configuration: BridgeConfiguration, probe: HealthProbe, toMongo: PipelineStatistics,
                               toNocoDB: PipelineStatistics, held: [String: Int64] = [:]) -> BridgeHealth {
        let reading = probe.read()
        let backlog = reading.backlog ?? [:]
        let postgresUp = reading.backlog != nil
        let slot = reading.slot
        let mongoUp = reading.mongoUp
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
        let slotHealthy = configuration.capture == .triggers || (slot.map { $0.walStatus != "lost" } ?? !postgresUp)
        let overall: Overall = !postgresUp && !mongoUp ? .down
            : (postgresUp && mongoUp && !expected.contains(false) && slotHealthy ? .ok : .degraded)
        var directions: [String: Direction] = [:]
        if configuration.direction.includesToMongo { directions["to-mongo"] = a }
        if configuration.direction.includesToNocoDB { directions["to-nocodb"] = b }
        var health = BridgeHealth(status: overall, logicalSlot: slot, postgres: postgresUp, mongo: mongoUp, directions: directions,
                                  checkedAt: formatter.string(from: Date()), version: nil, clockSkew: reading.skew)
        health.instance = configuration.instanceID
        health.leases = reading.leases?.map {
            LeaseStatus(unit: $0.unit, holder: $0.holder, token: $0.token, expiresInMs: $0.expiresInMs,
                        mine: $0.holder == configuration.instanceID && held[$0.unit] == $0.token)
        }
        if let leases = reading.leases {
            health.instances = reading.instances?.map { i in
                InstanceStatus(id: i.id, host: i.host, pid: i.pid, heartbeatAgeMs: i.heartbeatAgeMs,
                               units: leases.filter { $0.holder == i.id }.map(\.unit))
            }
        }
        let logicalHeld = held.keys.contains { $0.hasPrefix("logical:") }
        health.runningHere = configuration.tables.map(\.qualifiedName).filter { logicalHeld || held[$0] != nil }
        return health
    }

    public var ready: Bool { status == .ok }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }
}

extension BridgeHealth {
    /// The readable form `nocobridge status` prints for a running bridge.
    public func table() -> String {
        var lines = ["bridge: \(status.rawValue) (PostgreSQL \(postgres ? "up" : "DOWN"), MongoDB \(mongo ? "up" : "DOWN"), checked \(checkedAt))"
                     + (version.map { "; version \($0)" } ?? "")]
        lines.append("DIRECTION  TABLE                          APPLIED  WRITES  CONFLICTS  DEAD  LAG_MS  BACKLOG  LAST_APPLIED")
        for (name, d) in directions.sorted(by: { $0.key < $1.key }) {
            for (table, t) in d.tables.sorted(by: { $0.key < $1.key }) {
                lines.append([name.padded(10), table.padded(30), String(t.applied).leftPadded(7), String(t.writes).leftPadded(7),
                              String(t.conflicts).leftPadded(10), String(t.deadLetters).leftPadded(5),
                              (t.lagMilliseconds.map(String.init) ?? "-").leftPadded(7), (t.backlog.map(String.init) ?? "-").leftPadded(8),
                              " " + (t.lastAppliedAt ?? "-")].joined(separator: " "))
            }
            if !d.running { lines.append("  \(name): not running" + (d.lastError.map { "; last error: \($0)" } ?? "")) }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
