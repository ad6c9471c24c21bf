import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

/// Record history: one entry per user edit (none for the bridge's own writes coming back),
/// with side, editor, change and decision, committed with the agreed state; off with
/// `SYNC_HISTORY_DAYS=0`; pruned in batches.
@Suite struct HistoryTests {
    /// (side, op, by, decision, changed) of a key's entries, oldest first.
    func entries(_ f: BridgeFixture, key: String) throws -> [[String?]] {
        try f.sql("""
            SELECT side, op, edited_by, decision, changed::text, via FROM nocobridge.history
            WHERE external_id = $1 ORDER BY id
            """, [key]).rows
    }

    @Test func eachEditIsRecordedOnceWithItsSideEditorAndDecision() throws {
        let f = try BridgeFixture()
        let t = f.table("waiter_ops")
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        try f.sql("INSERT INTO \(t) (\"externalId\", action, notes, updated_by) VALUES ('h-1', 'seat', 'n1', 'us_alice')")
        try eventually("insert crossed") { try f.document("waiter_ops", key: "h-1") != nil }
        try f.sql("UPDATE \(t) SET notes = 'n2', updated_by = 'us_bob' WHERE \"externalId\" = 'h-1'")
        try eventually("update crossed") { try f.document("waiter_ops", key: "h-1")?["notes"] == .string("n2") }
        try f.mongoWrite { c throws(MongoError) in
            try c.updateOne(filter: ["externalId": .string("h-1")], update: ["$set": .document(["action": .string("leave")])], collection: "waiter_ops")
        }
        try eventually("MongoDB update crossed") { try f.sql("SELECT action FROM \(t) WHERE \"externalId\" = 'h-1'").rows.first?[0] == "leave" }
        try f.mongoWrite { c throws(MongoError) in try c.deleteOne(filter: ["externalId": .string("h-1")], collection: "waiter_ops") }
        try eventually("MongoDB delete crossed") { try f.sql("SELECT \"__nc_deleted\" FROM \(t) WHERE \"externalId\" = 'h-1'").rows.first?[0] == "t" }
        // Let the echoes of the bridge's own writes arrive and be recognised.
        usleep(1_000_000)
        try f.waitCaughtUp()

        let rows = try entries(f, key: "h-1")
        #expect(rows.count == 4, "\(rows)")
        guard rows.count == 4 else { return }
        #expect(rows[0] == ["nocodb", "insert", "us_alice", "write-mongo", #"{"notes": [null, "n1"], "action": [null, "seat"]}"#, "stream"])
        #expect(rows[1] == ["nocodb", "update", "us_bob", "write-mongo", #"{"notes": ["n1", "n2"]}"#, "stream"])
        // MongoDB knows no editor; NocoDB's updated_by is not claimed for a MongoDB edit.
        #expect(rows[2] == ["mongo", "update", nil, "write-nocodb", #"{"action": ["seat", "leave"]}"#, "stream"])
        #expect(rows[3] == ["mongo", "delete", nil, "write-nocodb", #"{"notes": ["n2", null], "action": ["leave", null]}"#, "stream"])

        // Written by the transaction that recorded the agreed state: same transaction id.
        let same = try f.sql("""
            SELECT h.xmin::text = a.xmin::text FROM nocobridge.history h JOIN nocobridge.agreed_state a
              ON a.collection = h.collection AND a.external_id = h.external_id
            WHERE h.external_id = 'h-1' ORDER BY h.id DESC LIMIT 1
            """).rows.first?[0]
        #expect(same == "t")
    }

    @Test func aConflictNamesBothSidesTheWinnerAndWhatWasOverwritten() throws {
        let f = try BridgeFixture()
        let t = f.table("waiter_ops")
        var bridge: RunningBridge? = f.startBridge()
        try f.sql("INSERT INTO \(t) (\"externalId\", action, notes) VALUES ('h-2', 'seat', 'same')")
        try eventually("insert crossed") { try f.document("waiter_ops", key: "h-2") != nil }
        bridge?.shutdown()
        bridge = nil
        try f.sql("UPDATE \(t) SET action = 'cooking', updated_by = 'us_carol' WHERE \"externalId\" = 'h-2'")
        try f.mongoWrite { c throws(MongoError) in
            try c.updateOne(filter: ["externalId": .string("h-2")],
                            update: ["$set": .document(["action": .string("served"), "updatedAt": .date(wallClockMillisecondsForTests() + 60_000)])],
                            collection: "waiter_ops")
        }
        bridge = f.startBridge()
        defer { bridge?.shutdown() }
        try eventually("conflict decided") { try f.sql("SELECT count(*) FROM nocobridge.conflicts").rows[0][0] == "1" }
        try eventually("NocoDB's version on both sides") { try f.document("waiter_ops", key: "h-2")?["action"] == .string("cooking") }
        let rows = try f.sql("""
            SELECT side, op, edited_by, decision, winner, rule, changed::text, discarded::text FROM nocobridge.history
            WHERE external_id = 'h-2' AND winner IS NOT NULL
            """).rows
        #expect(rows.count == 1, "\(rows)")
        #expect(rows.first == ["both", "update", "us_carol", "write-mongo", "nocodb", "source_priority",
                               #"{"action": ["seat", "cooking"]}"#, #"{"mongo": {"action": "served"}}"#])
        // The console's form of it.
        let json = try #require(try HistoryQuery.rows(collection: "waiter_ops", key: "h-2", limit: 10, on: f.pg).first).json(table: "t")
        #expect(JSON.serialize(json).contains(#""discarded":{"mongo":{"action":"served"}}"#))
    }

    @Test func zeroDaysWritesNoHistory() throws {
        let f = try BridgeFixture()
        var config = f.configuration
        config.historyDays = 0
        #expect(config.history == nil)
        let bridge = RunningBridge(configuration: config, mongo: f.mongo)
        defer { bridge.shutdown() }
        try f.sql("INSERT INTO \(f.table("waiter_ops")) (\"externalId\", action) VALUES ('h-3', 'seat')")
        try eventually("insert crossed") { try f.document("waiter_ops", key: "h-3") != nil }
        try f.mongoWrite { c throws(MongoError) in
            try c.insertOne(["externalId": .string("h-4"), "action": .string("seat")], collection: "waiter_ops")
        }
        try eventually("MongoDB insert crossed") { try f.sql("SELECT 1 FROM \(f.table("waiter_ops")) WHERE \"externalId\" = 'h-4'").rows.count == 1 }
        #expect(try f.sql("SELECT count(*) FROM nocobridge.history").rows[0][0] == "0")
    }

    @Test func pruningDeletesOnlyExpiredEntriesInBatches() throws {
        let f = try BridgeFixture()
        try f.sql("""
            INSERT INTO nocobridge.history (at, collection, external_id, side, op, decision, via)
            SELECT now() - make_interval(days => d), 'waiter_ops', 'k' || d || '-' || g, 'nocodb', 'update', 'write-mongo', 'stream'
            FROM unnest(ARRAY[40, 31, 29, 0]) d, generate_series(1, 3) g
            """)
        var pruner = HistoryPruner(days: 30)
        pruner.batchSize = 2
        #expect(try pruner.prune(on: f.pg) == 6)
        #expect(try f.sql("SELECT count(*), min(at) > now() - interval '30 days' FROM nocobridge.history").rows[0] == ["6", "t"])
        #expect(try pruner.prune(on: f.pg) == 0)

        // The background service of `nocobridge run` does the same by itself.
        try f.sql("""
            INSERT INTO nocobridge.history (at, collection, external_id, side, op, decision, via)
            VALUES (now() - interval '45 days', 'waiter_ops', 'old', 'mongo', 'update', 'write-nocodb', 'stream')
            """)
        let service = HistoryPruneService(postgresURL: f.configuration.postgresURL, days: 30, interval: .milliseconds(200), logger: testLogger())
        let stop = StopSignal()
        let done = DispatchSemaphore(value: 0)
        Thread { service.run(until: stop); done.signal() }.start()
        defer { stop.stop(); done.wait() }
        try eventually("old entry pruned in the background", seconds: 10) {
            try f.sql("SELECT count(*) FROM nocobridge.history WHERE external_id = 'old'").rows[0][0] == "0"
        }
        #expect(try f.sql("SELECT count(*) FROM nocobridge.history").rows[0][0] == "6")
    }

    @Test func resyncRecordsItsDecisionsAndItsProgress() throws {
        let f = try BridgeFixture()
        // A document NocoDB lacks, as after a restore of NocoDB from an older backup.
        try f.mongoWrite { c throws(MongoError) in
            try c.insertOne(["externalId": .string("h-5"), "action": .string("seat")], collection: "waiter_ops")
        }
        try f.sql("INSERT INTO \(f.table("cashier_txns")) (\"externalId\", amount) SELECT 'c' || g, g FROM generate_series(1, 25) g")
        let report = try Resync(configuration: f.configuration, options: ResyncOptions(), logger: testLogger()).run()
        #expect(report.tables.first { $0.table.hasSuffix(".waiter_ops") }?.onlyMongo == 1)
        let rows = try entries(f, key: "h-5")
        #expect(rows == [["mongo", "insert", nil, "write-nocodb", #"{"action": [null, "seat"]}"#, "resync"]])
        let progress = try ResyncProgress.rows(on: f.pg)
        #expect(progress.count == BridgeFixture.tables.count)
        #expect(progress.allSatisfy { $0.finishedAt != nil && !$0.running && !$0.interrupted })
        #expect(progress.first { $0.table.hasSuffix(".cashier_txns") }?.done == 25)
        #expect(progress.first { $0.table.hasSuffix(".waiter_ops") }?.done == 1)
    }

    @Test func runRefusesAnOlderSchemaAndARoleThatMayNotWriteHistory() throws {
        let f = try BridgeFixture()
        try f.sql("REVOKE ALL ON nocobridge.history FROM \(f.role)")
        let denied = try runCLI(["run"], environment: f.environment)
        #expect(denied.status == 2 && denied.output.contains("may not write nocobridge.history") && denied.output.contains("--grant-to"), "\(denied.output)")
        var off = f.environment
        off["SYNC_HISTORY_DAYS"] = "0"
        off["STATUS_ADDR"] = "off"
        let running = try BridgeProcess(environment: off)
        try f.sql("INSERT INTO \(f.table("waiter_ops")) (\"externalId\", action) VALUES ('h-6', 'seat')")
        try eventually("crossed without history", seconds: 30) { try f.document("waiter_ops", key: "h-6") != nil }
        running.kill(SIGTERM)
        #expect(running.wait() == 0)
        try f.sql("DROP TABLE nocobridge.history")
        let old = try runCLI(["run"], environment: f.environment)
        #expect(old.status == 2 && old.output.contains("predates this version (no nocobridge.history)"), "\(old.output)")
        let badDays = try runCLI(["run"], environment: f.environment.merging(["SYNC_HISTORY_DAYS": "forever"]) { _, b in b })
        #expect(badDays.status == 2 && badDays.output.contains("SYNC_HISTORY_DAYS"))
        try Installer(configuration: f.ownerConfiguration, logger: testLogger()).install(grantTo: f.role)
        #expect(try f.sql("SELECT has_table_privilege($1, 'nocobridge.history', 'INSERT')", [f.role]).rows[0][0] == "t")
    }

    @Test func anInterruptedResyncIsToldApartFromARunningOne() throws {
        let f = try BridgeFixture()
        let other = try PostgresConnection(url: f.configuration.postgresURL)
        try ResyncProgress.report(table: "s.t", collection: "t", done: 5, estimate: 10, elapsedSeconds: 1, dryRun: false, finished: false, on: other)
        #expect(try ResyncProgress.rows(on: f.pg).first.map { ($0.running, $0.interrupted, $0.rate) } ?? (false, false, 0) == (true, false, 5))
        try f.sql("SELECT pg_terminate_backend($1::int)", [String(other.backendPID)])
        try eventually("session gone") { try ResyncProgress.rows(on: f.pg).first?.interrupted == true }
        #expect(try ResyncProgress.rows(on: f.pg).first?.running == false)
    }
}

/// `HistoryLog.entries`: which decisions leave an entry, and what it says. Pure.
@Suite struct HistoryEntryTests {
    func present(_ fields: [String: String?], at: Int64 = 1) -> RecordState { .present(fields: fields, at: at) }

    @Test func anEchoLeavesNoEntry() {
        let state = present(["a": "1"])
        let entries = HistoryLog.entries(.init(mode: .change(.mongo), keys: ["k"], before: ["k": state], after: ["k": present(["a": "1"], at: 2)],
                                               mongoWritten: [], nocodbWritten: [], conflicts: [], editors: ["k": "us_x"], rejections: []))
        #expect(entries.isEmpty)
    }

    @Test func aRefusedResurrectionIsATombstoneConflict() throws {
        let stale = present(["a": "stale"], at: 5)
        let resolution = ConflictResolver.resolve(changed: .mongo, nocodb: .absent(at: 10), mongo: stale, agreed: .absent(at: 10), policy: ConflictPolicy())
        let conflict = try #require(resolution.conflict)
        #expect(resolution.agreed == nil && resolution.writeMongo == .absent(at: 10))
        let entries = HistoryLog.entries(.init(
            mode: .change(.mongo), keys: ["k"], before: ["k": .absent(at: 10)], after: [:], mongoWritten: ["k"], nocodbWritten: [],
            conflicts: [SyncPlan.Conflict(key: "k", nocodb: .absent(at: 10), mongo: stale, resolution: conflict)], editors: [:], rejections: []))
        // The agreed tombstone stays; MongoDB's stale document is deleted again.
        #expect(entries.count == 1)
        #expect(entries.first.map { ($0.side, $0.op, $0.decision, $0.rule) } ?? ("", "", "", nil) == ("both", "insert", "write-mongo", "tombstone"))
        #expect(entries.first?.discarded == #"{"mongo":{"a":"stale"}}"#)
    }

    @Test func aDeadLetterIsRecordedWithItsReasonAndNoChange() throws {
        let entries = HistoryLog.entries(.init(mode: .change(.nocodb), keys: ["k", "k"], before: [:], after: [:], mongoWritten: [],
                                               nocodbWritten: [], conflicts: [], editors: ["k": "us_y"],
                                               rejections: [Rejection(key: "k", field: "amount", reason: "too many digits")]))
        #expect(entries.count == 1)
        let e = try #require(entries.first)
        #expect([e.key, e.side, e.op, e.editedBy, e.decision, e.note] == ["k", "nocodb", "rejected", "us_y", "dead-letter", "amount: too many digits"])
        #expect(e.changed == nil && e.discarded == nil && e.winner == nil && e.rule == nil)
    }

    @Test func aResyncNamesTheSideItCopiedFrom() {
        let entries = HistoryLog.entries(.init(mode: .reconcile(restored: nil), keys: ["k"], before: [:], after: ["k": present(["a": "1", "b": nil])],
                                               mongoWritten: ["k"], nocodbWritten: [], conflicts: [], editors: ["k": "us_z"], rejections: []))
        #expect(entries.map { ($0.side, $0.op, $0.decision, $0.editedBy, $0.changed) }.first ?? ("", "", "", nil, nil)
                == ("nocodb", "insert", "write-mongo", "us_z", #"{"a":[null,"1"]}"#))
    }
}
