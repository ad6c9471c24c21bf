import Bridge
import Foundation
import Mongo
import Postgres
import Synchronization
import SyncCore
import Testing

/// Several `nocobridge run` processes on the same databases share the tables through leases
/// (`LeaseKeeper`): spread evenly, moved when one leaves or dies, never worked on by two at
/// once, and a holder frozen past its lease cannot commit what it decided before the freeze.
@Suite struct LeaseTests {
    /// Current holders by unit.
    static func holders(_ f: BridgeFixture) throws -> [String: String] {
        var out: [String: String] = [:]
        for r in try f.sql("SELECT unit, holder FROM nocobridge.leases WHERE holder IS NOT NULL AND expires_at > now()").rows {
            if let u = r[0], let h = r[1] { out[u] = h }
        }
        return out
    }

    static func liveInstances(_ f: BridgeFixture) throws -> Set<String> {
        Set(try f.sql("SELECT id FROM nocobridge.instances WHERE expires_at > now()").rows.compactMap { $0[0] })
    }

    /// Starts a bridge and returns it with its instance id (read from `nocobridge.instances`).
    static func start(_ f: BridgeFixture, _ env: [String: String]) throws -> (BridgeProcess, String) {
        let before = try liveInstances(f)
        let p = try BridgeProcess(environment: env)
        var id = ""
        try eventually("instance registered", seconds: 30) {
            let new = try liveInstances(f).subtracting(before)
            id = new.first ?? ""
            return new.count == 1
        }
        return (p, id)
    }

    /// Samples `pg_stat_activity` every 100 ms: which instances have a flow session on which
    /// table (`<flow>/<instance>/<table>`). A table with sessions of two instances (other than
    /// `excluded` ones, whose killed sessions may outlive them for a moment) is recorded.
    final class OverlapSampler: Sendable {
        let stop = StopSignal()
        let overlaps = Mutex<[String]>([])
        let excluded = Mutex<Set<String>>([])
        let samples = Mutex(0)
        private let done = DispatchSemaphore(value: 0)

        init(url: String) {
            Thread { [self] in
                defer { done.signal() }
                let c: PostgresConnection
                do {
                    c = try PostgresConnection(url: url, applicationName: "lease-test-sampler")
                } catch {
                    overlaps.withLock { $0.append("sampler cannot connect: \(error)") }
                    return
                }
                while !stop.isStopped {
                    if let rows = try? c.query("""
                        SELECT split_part(application_name, '/', 3), split_part(application_name, '/', 2)
                        FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'nocobridge-to-%/%/%'
                        """).rows {
                        let skip = excluded.withLock { $0 }
                        var byTable: [String: Set<String>] = [:]
                        for r in rows { if let t = r[0], let i = r[1], !skip.contains(i) { byTable[t, default: []].insert(i) } }
                        for (t, i) in byTable where i.count > 1 { overlaps.withLock { $0.append("\(t): \(i.sorted())") } }
                        samples.withLock { $0 += 1 }
                    }
                    stop.sleep(milliseconds: 100)
                }
            }.start()
        }

        func finish() -> [String] {
            stop.stop()
            done.wait()
            return overlaps.withLock { $0 }
        }
    }

    final class LoadState: Sendable {
        let writes = Mutex(0)
        let failures = Mutex<[String]>([])
    }

    static func counts(_ holders: [String: String]) -> [String: Int] {
        holders.values.reduce(into: [:]) { $0[$1, default: 0] += 1 }
    }

    /// (a) Three instances × twelve tables: 4/4/4; SIGTERM one and the others take its tables
    /// within two ticks; SIGKILL one and they take them within about two seconds; a new
    /// instance brings the spread back to 4/4/4; no table ever has flows of two instances.
    @Test func threeInstancesShareTwelveTablesAndTakeOverWhenOneLeaves() throws {
        let f = try BridgeFixture(extraTables: 8)
        #expect(f.tableNames.count == 12)
        var env = f.environment
        env["LOG_LEVEL"] = "info"
        let sampler = OverlapSampler(url: f.postgresURL)
        let (a, idA) = try Self.start(f, env)
        let (b, idB) = try Self.start(f, env)
        let (c, idC) = try Self.start(f, env)
        try eventually("4/4/4", seconds: 30) { Self.counts(try Self.holders(f)) == [idA: 4, idB: 4, idC: 4] }
        // Every table works, wherever it is held.
        for (i, table) in f.tableNames.enumerated() where table.hasPrefix("waiter_ops") {
            try f.sql("INSERT INTO \(f.table(table)) (\"externalId\", table_no) VALUES ($1, $2)", ["k-\(table)", String(i)])
        }
        try eventually("every waiter table delivered", seconds: 30) {
            try f.tableNames.filter { $0.hasPrefix("waiter_ops") }.allSatisfy { try f.count($0) == 1 }
        }

        // SIGTERM: A gives its leases back; B and C take them at their next tick.
        let termAt = Date()
        a.kill(SIGTERM)
        #expect(a.wait() == 0)
        var gone = Date()
        try eventually("B and C hold all twelve after SIGTERM", seconds: 10) {
            let h = Self.counts(try Self.holders(f))
            return h[idB, default: 0] + h[idC, default: 0] == 12 && h[idB] == 6
        }
        let afterTerm = Date().timeIntervalSince(gone)
        let termTotal = Date().timeIntervalSince(termAt)
        #expect(afterTerm < 2.5, "takeover after SIGTERM took \(afterTerm) s")

        // SIGKILL: C's session ends; B notices at its next tick (the instance lock is free).
        _ = sampler.excluded.withLock { $0.insert(idC) }
        c.kill(SIGKILL)
        c.wait()
        gone = Date()
        try eventually("B holds all twelve after SIGKILL", seconds: 15) { Self.counts(try Self.holders(f)) == [idB: 12] }
        let afterKill = Date().timeIntervalSince(gone)
        #expect(afterKill < 3, "takeover after SIGKILL took \(afterKill) s")

        // Two new instances: 4/4/4 again, moving only what must move.
        let (d, idD) = try Self.start(f, env)
        let (e, idE) = try Self.start(f, env)
        let joinAt = Date()
        try eventually("4/4/4 after two joins", seconds: 30) { Self.counts(try Self.holders(f)) == [idB: 4, idD: 4, idE: 4] }
        let rebalance = Date().timeIntervalSince(joinAt)
        for table in f.tableNames where table.hasPrefix("waiter_ops") {
            try f.sql("UPDATE \(f.table(table)) SET action = 'after' WHERE \"externalId\" = $1", ["k-\(table)"])
        }
        try eventually("every table delivered after rebalancing", seconds: 30) {
            try f.tableNames.filter { $0.hasPrefix("waiter_ops") }.allSatisfy { try f.document($0, key: "k-\($0)")?["action"] == .string("after") }
        }
        let overlaps = sampler.finish()
        #expect(overlaps.isEmpty, "tables with flows of two instances: \(overlaps.prefix(5))")
        #expect(sampler.samples.withLock { $0 } > 50)
        #expect(try f.sql("SELECT count(*) FROM nocobridge.conflicts").rows[0][0] == "0")
        print("lease takeover: SIGTERM \(String(format: "%.2f", afterTerm)) s after exit (\(String(format: "%.2f", termTotal)) s after the signal), SIGKILL \(String(format: "%.2f", afterKill)) s, 1→3 rebalance \(String(format: "%.2f", rebalance)) s")
        for p in [b, d, e] { p.kill(SIGTERM) }
        for p in [b, d, e] { #expect(p.wait() == 0) }
        #expect(try Self.holders(f).isEmpty)
        // C was killed: its row stays until it expires.
        #expect(try Self.liveInstances(f).isSubset(of: [idC]))
    }

    /// (c) A holder frozen (SIGSTOP) in the middle of a batch, past its lease: another instance
    /// takes the table over; resumed, the frozen one must not commit what it decided before
    /// the freeze (the fence check before COMMIT fails and the batch rolls back), and the new
    /// holder settles its MongoDB write. To stop A at that point, the test holds the record's
    /// `agreed_state` row: A writes MongoDB, then waits for the row inside its transaction,
    /// and is frozen there. A trigger of the test's own records which session wrote each
    /// agreed state, in the writing transaction: a rolled-back write leaves no trace, a
    /// committed stale one does. (Without the fence the data would still end right, since the
    /// frozen transaction holds the record's advisory lock and the new holder decides after
    /// it; what the fence adds is that nothing of the stale holder commits at all.)
    @Test func aHolderFrozenPastItsLeaseCannotCommitWhenItResumes() throws {
        let f = try BridgeFixture()
        var env = f.environment
        env["LOG_LEVEL"] = "info"
        env["SYNC_LEASE_SECONDS"] = "3"
        env["SYNC_LEASE_TICK_MS"] = "300"
        env["SYNC_TABLES"] = "waiter_ops"
        let t = f.table("waiter_ops")
        try f.pg.execute(script: """
            CREATE TABLE public.agreed_audit (app text, key text, action text);
            CREATE FUNCTION public.agreed_audit() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
            BEGIN
                INSERT INTO public.agreed_audit VALUES (current_setting('application_name'), NEW.external_id, NEW.fields->>'action');
                RETURN NULL;
            END $$;
            CREATE TRIGGER agreed_audit AFTER INSERT OR UPDATE ON nocobridge.agreed_state
            FOR EACH ROW EXECUTE FUNCTION public.agreed_audit();
            """)
        func agreedWrites(by instance: String, action: String) throws -> Int {
            Int(try f.sql("SELECT count(*) FROM public.agreed_audit WHERE app LIKE $1 AND key = 'k' AND action = $2",
                          ["%/\(instance)/%", action]).rows[0][0] ?? "") ?? -1
        }
        let (a, idA) = try Self.start(f, env)
        try f.sql("INSERT INTO \(t) (\"externalId\", action) VALUES ('k', 'v0')")
        try eventually("synced") { try f.document("waiter_ops", key: "k")?["action"] == .string("v0") }
        try f.waitCaughtUp()
        try eventually("agreed on v0") { try agreedWrites(by: idA, action: "v0") >= 1 }

        let locker = try PostgresConnection(url: f.postgresURL, applicationName: "lease-test-locker")
        try locker.query("BEGIN")
        try locker.query("SELECT 1 FROM nocobridge.agreed_state WHERE external_id = 'k' FOR UPDATE")
        try f.sql("UPDATE \(t) SET action = 'v1' WHERE \"externalId\" = 'k'")
        try eventually("A wrote v1 to MongoDB and waits for the agreed state row", seconds: 15) {
            try f.document("waiter_ops", key: "k")?["action"] == .string("v1")
                && f.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1 AND wait_event_type = 'Lock'",
                         ["nocobridge-to-mongo/\(idA)/%"]).rows[0][0] == "1"
        }
        a.kill(SIGSTOP)
        defer { a.kill(SIGKILL) }
        usleep(3_500_000)  // past A's lease
        let (b, idB) = try Self.start(f, env)
        try eventually("B holds the table", seconds: 15) { try Self.holders(f)["\(f.schema).waiter_ops"] == idB }
        try f.sql("UPDATE \(t) SET action = 'v2' WHERE \"externalId\" = 'k'")
        // A's statement completes in the server; A itself is still frozen, its transaction open.
        try locker.query("COMMIT")
        usleep(500_000)
        a.kill(SIGCONT)
        try eventually("both sides hold v2", seconds: 30) {
            try f.document("waiter_ops", key: "k")?["action"] == .string("v2")
                && f.sql("SELECT action FROM \(t) WHERE \"externalId\" = 'k'").rows[0][0] == "v2"
        }
        try f.waitCaughtUp()
        try eventually("agreed on v2") {
            try f.sql("SELECT fields->>'action' FROM nocobridge.agreed_state WHERE external_id = 'k'").rows.first?[0] == "v2"
        }
        #expect(try f.document("waiter_ops", key: "k")?["action"] == .string("v2"))
        #expect(try f.sql("SELECT count(*) FROM nocobridge.conflicts").rows[0][0] == "0")
        #expect(try f.sql("SELECT count(*) FROM nocobridge.write_intents").rows[0][0] == "0")
        #expect(try f.count("waiter_ops") == 1)
        let refused = { a.log.contains("lease of \(f.schema).waiter_ops lost (token") && a.log.contains("batch rolled back") }
        for _ in 0..<50 where !refused() { usleep(200_000) }
        #expect(refused(), "A's log does not name the lost lease")
        // A's v1 decision never committed; B settled A's MongoDB write, then agreed on v2.
        #expect(try agreedWrites(by: idA, action: "v1") == 0, "the frozen holder committed its stale decision after losing the lease")
        #expect(try agreedWrites(by: idB, action: "v2") >= 1)
        b.kill(SIGTERM)
        #expect(b.wait() == 0)
    }

    /// (d) Logical capture: one slot, one consumer, so one instance works and the other waits;
    /// SIGKILL the active one and the other takes the slot over.
    @Test func logicalCaptureRunsOnOneInstanceAndMovesOnSigkill() throws {
        let f = try BridgeFixture(capture: .logical)
        var env = f.environment
        env["LOG_LEVEL"] = "info"
        let t = f.table("waiter_ops")
        let (a, idA) = try Self.start(f, env)
        try eventually("A holds the slot", seconds: 30) { try Self.holders(f).values.contains(idA) }
        let (b, idB) = try Self.start(f, env)
        try eventually("B waits", seconds: 15) { b.log.contains("standby") }
        #expect(try Self.holders(f).count == 1)
        try f.sql("INSERT INTO \(t) (table_no) VALUES (1)")
        try eventually("A delivers") { try f.count("waiter_ops") == 1 }
        #expect(!b.log.contains("logical capture running"))
        a.kill(SIGKILL)
        a.wait()
        try eventually("B holds the slot", seconds: 15) { try Self.holders(f).values.contains(idB) }
        try f.sql("INSERT INTO \(t) (table_no) SELECT g FROM generate_series(2, 50) g")
        try eventually("B delivers", seconds: 30) { try f.count("waiter_ops") == 50 }
        #expect(b.log.contains("logical capture running"))
        b.kill(SIGTERM)
        #expect(b.wait() == 0)
    }

    /// (b) Three instances and twelve tables under load from both sides (disjoint keys per
    /// side), instances killed (SIGKILL or SIGTERM) and restarted at random: both sides end
    /// equal record by record, nothing twice, no conflict (no double application), no dead
    /// letter, the changelog empty.
    @Test func underLoadWithRandomKillsBothSidesEndEqual() throws {
        let f = try BridgeFixture(extraTables: 8)
        let env = f.environment
        let tables = f.tableNames.filter { $0.hasPrefix("waiter_ops") }
        var bridges = try (0..<3).map { _ in try Self.start(f, env).0 }
        let stop = StopSignal()
        let load = LoadState()
        let done = DispatchSemaphore(value: 0)
        let url = f.postgresURL, schema = f.schema, mongoURL = f.servers.mongoURL, database = f.mongoDatabase
        // NocoDB side: inserts and updates of n-keys.
        Thread {
            defer { done.signal() }
            do {
                let c = try PostgresConnection(url: url, applicationName: "nocodb-test")
                var i = 0
                while !stop.isStopped {
                    i += 1
                    let table = tables[i % tables.count]
                    let q = PostgresConnection.quoteIdentifier(schema) + "." + PostgresConnection.quoteIdentifier(table)
                    if i % 3 == 0 {
                        try c.query("UPDATE \(q) SET notes = $1 WHERE \"externalId\" = $2", ["u\(i)", "n-\(table)-\(i / 3)"])
                    } else {
                        try c.query("INSERT INTO \(q) (\"externalId\", table_no) VALUES ($1, $2)", ["n-\(table)-\(i)", String(i)])
                    }
                    load.writes.withLock { $0 += 1 }
                    usleep(5_000)
                }
            } catch { load.failures.withLock { $0.append("nocodb writer: \(error)") } }
        }.start()
        // MongoDB side: inserts and updates of m-keys.
        Thread {
            defer { done.signal() }
            do {
                let pool = try MongoClientPool(url: mongoURL, database: database, instance: "app" + randomSuffix(4))
                var i = 0
                while !stop.isStopped {
                    i += 1
                    let table = tables[i % tables.count]
                    try pool.withClient { (c: MongoClient) throws(MongoError) in
                        if i % 3 == 0 {
                            try c.updateOne(filter: ["externalId": .string("m-\(table)-\(i - 1)")],
                                            update: ["$set": .document(["notes": .string("m\(i)")])], collection: table)
                        } else {
                            try c.insertOne(["externalId": .string("m-\(table)-\(i)"), "notes": .string("new")], collection: table)
                        }
                    }
                    load.writes.withLock { $0 += 1 }
                    usleep(5_000)
                }
            } catch { load.failures.withLock { $0.append("mongo writer: \(error)") } }
        }.start()
        var rng = SystemRandomNumberGenerator()
        let until = Date().addingTimeInterval(45)
        var kills = 0
        while Date() < until {
            usleep(UInt32.random(in: 3_000_000...6_000_000, using: &rng))
            let victim = Int.random(in: 0..<bridges.count, using: &rng)
            bridges[victim].kill(Bool.random(using: &rng) ? SIGKILL : SIGTERM)
            bridges[victim].wait()
            kills += 1
            usleep(UInt32.random(in: 0...1_500_000, using: &rng))
            bridges[victim] = try BridgeProcess(environment: env)
        }
        stop.stop()
        done.wait()
        done.wait()
        #expect(load.failures.withLock { $0 }.isEmpty, "\(load.failures.withLock { $0 })")
        try f.waitCaughtUp(seconds: 120)
        func sides(_ table: String) throws -> (rows: [String], documents: [String]) {
            let rows = try f.sql("SELECT \"externalId\", coalesce(notes, '') FROM \(f.table(table))").rows.map { "\($0[0] ?? "")=\($0[1] ?? "")" }
            let docs = try f.documents(table).map { d -> String in
                var notes = ""
                if case .string(let n)? = d["notes"] { notes = n }
                if case .string(let k)? = d["externalId"] { return "\(k)=\(notes)" }
                return "?"
            }
            // Sorted here, not by ORDER BY: PostgreSQL's collation orders keys differently.
            return (rows.sorted(), docs.sorted())
        }
        for table in tables {
            let q = f.table(table)
            do {
                try eventually("\(table) equal on both sides", seconds: 60) { let s = try sides(table); return s.rows == s.documents }
            } catch {
                let s = try sides(table)
                let onlyRows = Set(s.rows).subtracting(s.documents).sorted(), onlyDocs = Set(s.documents).subtracting(s.rows).sorted()
                Issue.record("\(table) differs: only in NocoDB \(onlyRows.prefix(10)), only in MongoDB \(onlyDocs.prefix(10)); rows \(s.rows.count), documents \(s.documents.count)")
                continue
            }
            let keys = try f.documents(table).compactMap { $0["externalId"] }
            #expect(Set(keys).count == keys.count, "\(table): duplicate documents")
            let dupRows = try f.sql("SELECT count(*) - count(DISTINCT \"externalId\") FROM \(q)").rows[0][0]
            #expect(dupRows == "0", "\(table): duplicate rows")
        }
        #expect(try f.sql("SELECT count(*) FROM nocobridge.conflicts").rows[0][0] == "0")
        #expect(try f.deadLetters().rows.isEmpty)
        #expect(try f.backlog() == 0)
        print("lease load: \(load.writes.withLock { $0 }) writes, \(kills) kills")
        for p in bridges { p.kill(SIGTERM) }
        for p in bridges { p.wait() }
    }
}
