import Foundation
import Logging
import Postgres
import Synchronization
import SyncCore

/// Shares the work between every `nocobridge run` on the same databases: one lease per unit
/// (a table, both directions together; with logical capture the slot, whose holder runs every
/// table) in `nocobridge.leases`, spread by `LeasePlanner`.
///
/// Leases expire (`SYNC_LEASE_SECONDS`) so that a holder that froze or was cut off with its
/// TCP session alive loses its units; the lease session also holds an advisory lock on the
/// instance's id, so a holder that died (its session gone) is known dead at the next tick
/// rather than after the expiry. Each holding carries a `Fence` (the token drawn at
/// acquisition), checked before every commit and every MongoDB write the unit's flows make.
final class LeaseKeeper {
    struct Settings {
        var lease: Duration
        var tick: Duration
        /// Local validity ends this long before the lease does (clock rate differences).
        var margin: Duration { lease / 5 }
    }

    /// A unit's running work.
    struct Holding {
        let fence: Fence
        let stop: StopSignal
        let flows: ThreadGroup
    }

    private let configuration: BridgeConfiguration
    private let logger: Logger
    private let settings: Settings
    private let board: LeaseBoard
    private var me: String { configuration.instanceID }
    /// Which units there are, asked on every connect (the slot's name needs a query).
    private let units: (PostgresConnection) throws -> [String]
    /// Starts a unit's flows under `fence`, stopped by `stop`.
    private let start: (String, Fence, StopSignal) -> ThreadGroup

    private var session: PostgresConnection?
    private var unitNames: [String] = []
    private var held: [String: Holding] = [:]
    /// Given back by plan: flows told to stop; the lease row is freed once they have.
    private var releasing: [String: Holding] = [:]
    /// Lost (or the session was): flows told to stop; nothing to free.
    private var abandoned: [Holding] = []
    private var announcedStandby = false
    private var ticks = 0

    init(configuration: BridgeConfiguration, logger: Logger, board: LeaseBoard,
         units: @escaping (PostgresConnection) throws -> [String],
         start: @escaping (String, Fence, StopSignal) -> ThreadGroup) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "flow"] = "leases"
        self.logger = logger
        settings = Settings(lease: configuration.leaseDuration, tick: configuration.leaseTick)
        self.board = board
        self.units = units
        self.start = start
    }

    static func instanceLockKey(_ id: String) -> String { "hashtextextended('nocobridge.instance:' || \(id), 0)" }

    static let applicationPrefix = "nocobridge-lease/"

    private var ttl: String { "\(settings.lease.milliseconds) milliseconds" }

    /// Ticks until `stop`, then stops every unit, gives its lease back and leaves. Throws the
    /// first failure of a flow that is not a lost lease (as a single instance did).
    func run(stop: StopSignal) throws {
        var backoff = Backoff(baseMilliseconds: configuration.reconnectBaseMilliseconds,
                              maxMilliseconds: configuration.reconnectMaxMilliseconds)
        var failure: (any Error)?
        while !stop.isStopped {
            if let error = reap() {
                failure = error
                break
            }
            do {
                try tick(stop: stop)
                backoff.reset()
                stop.sleep(milliseconds: settings.tick.milliseconds)
            } catch {
                // The session is gone (or answers no more): nothing proves the leases are ours.
                if !held.isEmpty {
                    logger.error("lease session lost; stopping the work of every lease at once", metadata: ["error": "\(error)"])
                } else {
                    logger.warning("cannot reach PostgreSQL for the leases", metadata: ["error": "\(error)"])
                }
                abandonAll()
                session = nil
                stop.sleep(milliseconds: backoff.next())
            }
        }
        shutdown()
        if let failure { throw failure }
    }

    /// Ends finished units: a lost lease is one line; any other failure stops the process.
    private func reap() -> (any Error)? {
        for (unit, holding) in held {
            let (finished, error) = holding.flows.outcome
            guard finished else { continue }
            held[unit] = nil
            holding.fence.revoke()
            if let lost = error as? LeaseLost {
                logger.warning("\(lost)")
            } else if let error {
                return error
            }
        }
        abandoned.removeAll { holding in
            let (finished, error) = holding.flows.outcome
            if finished, let lost = error as? LeaseLost { logger.warning("\(lost)") }
            return finished
        }
        board.set(held.mapValues(\.fence.token))
        return nil
    }

    private func connect() throws -> PostgresConnection {
        let c = try PostgresConnection(url: configuration.postgresURL, applicationName: Self.applicationPrefix + me)
        // A renewal that hangs must fail before the lease runs out, so the flows stop in time.
        try c.query("SET statement_timeout = \(max(settings.lease.milliseconds / 2, 100))")
        try c.query("SELECT pg_advisory_lock(\(Self.instanceLockKey("$1")))", [me])
        unitNames = try units(c).sorted(by: KeyOrder.utf8Less)
        try c.query("""
            INSERT INTO nocobridge.leases (unit) SELECT unnest($1::text[]) ON CONFLICT (unit) DO NOTHING
            """, [PostgresConnection.arrayLiteral(unitNames)])
        try heartbeat(c)
        logger.info("lease session open", metadata: ["instance": "\(me)", "units": "\(unitNames.count)"])
        return c
    }

    private func heartbeat(_ c: PostgresConnection) throws {
        try c.query(cached: """
            INSERT INTO nocobridge.instances (id, host, pid, expires_at) VALUES ($1, $2, $3::integer, now() + $4::interval)
            ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), expires_at = EXCLUDED.expires_at
            """, [me, ProcessInfo.processInfo.hostName, String(getpid()), ttl])
    }

    private func tick(stop: StopSignal) throws {
        let c = try session ?? connect()
        session = c
        ticks += 1
        // Renew first: every unit not returned was taken (we were frozen or cut off).
        let sent = ContinuousClock.now
        let mine = Array(held)
        let renewed = try Set(c.query(cached: """
            UPDATE nocobridge.leases SET expires_at = now() + $2::interval
            WHERE holder = $1 AND (unit, token) IN (SELECT * FROM unnest($3::text[], $4::bigint[]))
            RETURNING unit
            """, [me, ttl, PostgresConnection.arrayLiteral(mine.map(\.key)),
                  PostgresConnection.arrayLiteral(mine.map { String($0.value.fence.token) })]).rows.compactMap { $0[0] })
        try heartbeat(c)
        let validUntil = sent + settings.lease - settings.margin
        for (unit, holding) in held {
            if renewed.contains(unit) {
                holding.fence.extend(until: validUntil)
            } else {
                logger.warning("lease of \(unit) lost (token \(holding.fence.token)); its flows stop")
                holding.fence.revoke()
                holding.stop.stop()
                abandoned.append(holding)
                held[unit] = nil
            }
        }
        // Units given back whose flows have ended: free their rows.
        for (unit, holding) in releasing where holding.flows.outcome.finished {
            try c.query("""
                UPDATE nocobridge.leases SET holder = NULL, expires_at = now() WHERE unit = $1 AND holder = $2 AND token = $3::bigint
                """, [unit, me, String(holding.fence.token)])
            releasing[unit] = nil
            logger.info("lease of \(unit) given back", metadata: ["token": "\(holding.fence.token)"])
        }
        guard !stop.isStopped else { return }

        let view = try read(c)
        let plan = LeasePlanner.plan(me: me, live: view.live, leases: view.leases, held: Set(held.keys))
        for unit in plan.release {
            guard let holding = held.removeValue(forKey: unit) else { continue }
            holding.stop.stop()
            releasing[unit] = holding
        }
        // Not while the unit's previous flows here still wind down (given back, or lost with
        // the session): two sets of one unit's flows in one process would share nothing.
        let busy = Set(releasing.keys).union(abandoned.map(\.fence.unit))
        let dead = Set(view.leases.filter { $0.holder != nil && !$0.holderAlive }.compactMap(\.holder))
        for unit in plan.acquire where !busy.contains(unit) && held[unit] == nil {
            guard let acquired = try acquire(unit, dead: dead, on: c) else { continue }
            let (token, previous) = acquired
            let fence = Fence(unit: unit, holder: me, token: token, previousHolder: previous == me ? nil : previous,
                              validUntil: ContinuousClock.now + settings.lease - settings.margin)
            let unitStop = stop.child()
            logger.info("lease of \(unit) acquired", metadata: ["token": "\(token)", "previous": "\(previous ?? "-")"])
            held[unit] = Holding(fence: fence, stop: unitStop, flows: start(unit, fence, unitStop))
        }
        if held.isEmpty && releasing.isEmpty {
            if !announcedStandby {
                logger.info("standby: every unit is held by another nocobridge instance; waiting to take over")
                announcedStandby = true
            }
        } else {
            announcedStandby = false
        }
        board.set(held.mapValues(\.fence.token))
        if ticks % 30 == 0 { try cleanUp(c) }
    }

    private struct View {
        var live: [String] = []
        var leases: [LeasePlanner.Lease] = []
    }

    /// Live instances (row current and lock held) and every unit's lease, in one statement.
    private func read(_ c: PostgresConnection) throws -> View {
        let rows = try c.query(cached: """
            WITH live AS MATERIALIZED (
                SELECT id FROM nocobridge.instances
                WHERE expires_at > now()
                  AND (id = $1 OR NOT CASE WHEN pg_try_advisory_lock(\(Self.instanceLockKey("id")))
                                           THEN pg_advisory_unlock(\(Self.instanceLockKey("id"))) ELSE false END))
            SELECT 'instance', id, NULL, NULL FROM live
            UNION ALL
            SELECT 'lease', l.unit, l.holder, CASE WHEN l.expires_at <= now() THEN 'expired' WHEN l.holder IN (SELECT id FROM live) THEN 'alive' ELSE 'dead' END
            FROM nocobridge.leases l WHERE l.unit = ANY($2::text[])
            """, [me, PostgresConnection.arrayLiteral(unitNames)]).rows
        var view = View()
        for r in rows {
            guard let name = r[1] else { continue }
            if r[0] == "instance" {
                view.live.append(name)
            } else {
                view.leases.append(.init(unit: name, holder: r[2], expired: r[3] == "expired", holderAlive: r[3] == "alive"))
            }
        }
        return view
    }

    /// Takes `unit` if it is still free; returns the new token and who held it before.
    private func acquire(_ unit: String, dead: Set<String>, on c: PostgresConnection) throws -> (Int64, String?)? {
        let row = try c.query(cached: """
            UPDATE nocobridge.leases l
            SET holder = $2, token = nextval('nocobridge.lease_token'), expires_at = now() + $3::interval, acquired_at = now()
            FROM (SELECT unit, holder FROM nocobridge.leases WHERE unit = $1 FOR UPDATE) prev
            WHERE l.unit = prev.unit
              AND (l.holder IS NULL OR l.expires_at <= now() OR l.holder = $2 OR l.holder = ANY($4::text[]))
            RETURNING l.token, prev.holder
            """, [unit, me, ttl, PostgresConnection.arrayLiteral(Array(dead))]).rows.first
        guard let row, let token = row[0].flatMap({ Int64($0) }) else { return nil }
        return (token, row[1])
    }

    /// Rows of instances long gone (expired ten leases ago, lock free).
    private func cleanUp(_ c: PostgresConnection) throws {
        try c.query("""
            DELETE FROM nocobridge.instances
            WHERE id <> $1 AND expires_at < now() - $2::interval * 10
              AND CASE WHEN pg_try_advisory_lock(\(Self.instanceLockKey("id"))) THEN pg_advisory_unlock(\(Self.instanceLockKey("id"))) ELSE false END
            """, [me, ttl])
    }

    private func abandonAll() {
        for (_, holding) in held.merging(releasing, uniquingKeysWith: { a, _ in a }) {
            holding.fence.revoke()
            holding.stop.stop()
            abandoned.append(holding)
        }
        held.removeAll()
        releasing.removeAll()
        board.set([:])
    }

    /// SIGTERM: stop every unit, wait for its batch, give the leases back so the others take
    /// them at their next tick, and leave the instances list.
    private func shutdown() {
        let all = Array(held) + Array(releasing)
        for (_, holding) in all { holding.stop.stop() }
        for (_, holding) in all { try? holding.flows.join() }
        for holding in abandoned { try? holding.flows.join() }
        board.set([:])
        guard let c = session, c.isConnected else { return }
        for (unit, holding) in all {
            _ = try? c.query("""
                UPDATE nocobridge.leases SET holder = NULL, expires_at = now() WHERE unit = $1 AND holder = $2 AND token = $3::bigint
                """, [unit, me, String(holding.fence.token)])
        }
        _ = try? c.query("DELETE FROM nocobridge.instances WHERE id = $1", [me])
        _ = try? c.query("SELECT pg_advisory_unlock(\(Self.instanceLockKey("$1")))", [me])
        if !all.isEmpty { logger.info("leases given back", metadata: ["units": "\(all.count)"]) }
        session = nil
    }
}

/// The leases this process holds now, for `/status`, the console and `/metrics`.
public final class LeaseBoard: Sendable {
    private let held = Mutex<[String: Int64]>([:])

    public init() {}

    /// Unit → fencing token.
    public var units: [String: Int64] { held.withLock { $0 } }

    func set(_ units: [String: Int64]) { held.withLock { $0 = units } }
}

extension Duration {
    var milliseconds: Int {
        let (s, a) = components
        return Int(s) * 1000 + Int(a / 1_000_000_000_000_000)
    }
}
