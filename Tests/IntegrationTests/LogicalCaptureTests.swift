import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

/// What only logical capture has: its slot's limits, and switching from triggers.
@Suite struct LogicalCaptureTests {
    /// A tiny `max_slot_wal_keep_size` and a burst of WAL while the bridge is stopped
    /// invalidate the slot: `run` stops with a clear message, `resync` recreates the slot and
    /// brings the changes the slot lost, and streaming works again.
    @Test func anInvalidatedSlotEndsInAClearMessageAndResyncRecovers() throws {
        let own = try OwnPostgres()
        let servers = try TestServers(adminURL: own.url, mongoURL: TestServers.fromEnvironment().mongoURL)
        let f = try BridgeFixture(servers: servers, capture: .logical)
        let t = f.table("waiter_ops")
        var bridge = try BridgeProcess(environment: f.environment)
        try f.sql("INSERT INTO \(t) (\"externalId\", action) VALUES ('before', 'seat')")
        try eventually("streaming works") { try f.document("waiter_ops", key: "before") != nil }
        bridge.kill(SIGTERM)
        #expect(bridge.wait() == 0)

        let admin = try PostgresConnection(url: own.url)
        try admin.query("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        try admin.query("SELECT pg_reload_conf()")
        try f.sql("INSERT INTO \(t) (\"externalId\", action) SELECT 'lost-' || g, 'order' FROM generate_series(1, 5) g")
        try f.sql("CREATE TABLE burst (x text)")
        for _ in 0..<3 {
            try f.sql("INSERT INTO burst SELECT repeat(md5(g::text), 40) FROM generate_series(1, 20000) g")
            try f.sql("SELECT pg_switch_wal()")
            try admin.query("CHECKPOINT")
        }
        try eventually("slot invalidated") {
            try f.sql("SELECT wal_status FROM pg_replication_slots WHERE database = current_database()").rows.first?[0] == "lost"
        }

        let stopped = try runCLI(["run"], environment: f.environment)
        #expect(stopped.status == 1, "\(stopped.output)")
        #expect(stopped.output.contains("cannot be used") && stopped.output.contains("nocobridge resync"), "\(stopped.output)")

        let resync = try runCLI(["resync"], environment: f.environment, timeoutSeconds: 120)
        #expect(resync.status == 0, "\(resync.output)")
        #expect(resync.output.contains("logical replication slot recreated"), "\(resync.output)")
        for i in 1...5 { #expect(try f.document("waiter_ops", key: "lost-\(i)") != nil) }

        bridge = try BridgeProcess(environment: f.environment)
        try f.sql("INSERT INTO \(t) (\"externalId\", action) VALUES ('after', 'serve')")
        try eventually("streaming works again") { try f.document("waiter_ops", key: "after") != nil }
        bridge.kill(SIGTERM)
        #expect(bridge.wait() == 0)
    }

    /// The bridge runs as a limited role in logical mode too (every fixture does); a role
    /// missing what logical capture needs (the REPLICATION attribute; the bridge marks its own
    /// writes with a logical decoding message, which needs no grant) is told what to do, in
    /// one line, exit 2.
    @Test func aRoleMissingLogicalPrivilegesIsToldWhatToGrant() throws {
        let f = try BridgeFixture(capture: .logical)
        let admin = try PostgresConnection(url: f.servers.adminURL)
        try admin.query("ALTER ROLE \(f.role) NOREPLICATION")
        let noReplication = try runCLI(["run"], environment: f.environment)
        #expect(noReplication.status == 2, "\(noReplication.output)")
        #expect(noReplication.output.contains("ALTER ROLE \"\(f.role)\" REPLICATION"), "\(noReplication.output)")
        #expect(noReplication.output.split(separator: "\n").count == 1, "\(noReplication.output)")
    }

    /// Echo suppression in logical capture: every transaction in which the bridge writes
    /// NocoDB's tables carries its logical decoding message, so the slot's collector drops it.
    /// Read from a second slot on the bridge's publication and decoded by the same collector:
    /// the bridge's insert (a MongoDB app's record) is absent, NocoDB's own edit of the same
    /// record is there. Dropping the message makes the insert show up here.
    @Test func theBridgesOwnWritesAreMarkedAndLeftOutOfTheSlot() throws {
        let f = try BridgeFixture(capture: .logical)
        let t = f.table("waiter_ops")
        let slot = "observer_" + randomSuffix(6).lowercased()
        try f.sql("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot])
        defer { _ = try? f.sql("SELECT pg_drop_replication_slot($1)", [slot]) }
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let key = "app-" + randomSuffix(6)
        try f.mongoWrite { c throws(MongoError) in
            try c.insertOne(["externalId": .string(key), "action": .string("seat"), "notes": .string("from the app")], collection: "waiter_ops")
        }
        try eventually("the app's record reaches NocoDB") { try f.sql("SELECT count(*) FROM \(t) WHERE \"externalId\" = $1", [key]).rows[0][0] == "1" }
        try f.sql("UPDATE \(t) SET notes = 'from NocoDB' WHERE \"externalId\" = $1", [key])
        try eventually("NocoDB's edit reaches MongoDB") { try f.document("waiter_ops", key: key)?["notes"] == .string("from NocoDB") }

        let rows = try f.sql("""
            SELECT data::text FROM pg_logical_slot_get_binary_changes($1, NULL, NULL,
                'proto_version', '1', 'publication_names', 'nocobridge', 'messages', 'true')
            """, [slot]).rows
        var collector = LogicalChangeCollector()
        var messages = 0
        for row in rows {
            let bytes = try #require(row[0].flatMap(PostgresConnection.bytes(fromBytea:)))
            let message = try PgOutput.decodeMessage(bytes)
            if case .message(true, LogicalChangeCollector.ownMessagePrefix, _) = message { messages += 1 }
            _ = collector.add(message)
        }
        let changes = collector.take().batches.values.flatMap(\.changes).filter { $0.key == key }
        #expect(messages >= 1, "the bridge's write carried no message")
        #expect(changes.map(\.operation) == [.update], "\(changes)")
    }

    /// Rows NocoDB writes without a key (a CSV import, say) get keys from the bridge, one
    /// statement per batch; each reaches MongoDB once, under the key NocoDB now shows.
    @Test func keylessRowsGetKeysInBulk() throws {
        let f = try BridgeFixture(capture: .logical)
        let t = f.table("waiter_ops")
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        try f.sql("INSERT INTO \(t) (action, notes) SELECT 'import', 'row ' || g FROM generate_series(1, 1500) g")
        try eventually("every row arrives", seconds: 60) { try f.count("waiter_ops") == 1500 }
        try f.waitCaughtUp()
        let rows = try f.sql("SELECT \"externalId\", notes FROM \(t)").rows
        let notesByKey = Dictionary(rows.map { ($0[0] ?? "", $0[1] ?? "") }, uniquingKeysWith: { a, _ in a })
        #expect(notesByKey.count == 1500 && notesByKey[""] == nil)
        let docs = try f.documents("waiter_ops")
        #expect(docs.count == 1500)
        let matching = docs.filter { doc in
            guard case .string(let key)? = doc["externalId"], case .string(let notes)? = doc["notes"] else { return false }
            return notesByKey[key] == notes
        }
        #expect(matching.count == 1500)
        #expect(try f.deadLetters().rows.isEmpty)
    }

    /// Changes captured by triggers and not yet applied when an operator switches to logical
    /// capture arrive, once, and so does everything after the switch.
    @Test func switchingFromTriggersLosesAndDuplicatesNothing() throws {
        let f = try BridgeFixture(capture: .triggers)
        let t = f.table("chef_orders")
        try f.sql("INSERT INTO \(t) (status, items) SELECT 'new', json_build_array(g) FROM generate_series(1, 30) g")
        #expect(try f.backlog() == 30)
        var logical = f.ownerConfiguration
        logical.capture = .logical
        try Installer(configuration: logical, logger: testLogger()).install(replicaIdentityFull: true)
        // No capture trigger is left, only the key trigger and its statement marks.
        let left = try f.sql("SELECT DISTINCT tgname FROM pg_trigger WHERE tgname LIKE 'nocobridge%' AND NOT tgisinternal ORDER BY 1").rows.map { $0[0] ?? "" }
        #expect(left == ["nocobridge_keys", "nocobridge_mark_insert", "nocobridge_mark_upsert"])
        try f.sql("INSERT INTO \(t) (\"externalId\", status, items) SELECT 'after-' || g, 'new', json_build_array(g) FROM generate_series(1, 20) g")
        try f.sql("INSERT INTO \(t) (status, items) VALUES ('new', '[\"keyless\"]')")
        var env = f.environment
        env["SYNC_CAPTURE"] = "logical"
        env["PG_URL"] = f.postgresURL
        let bridge = try BridgeProcess(environment: env)
        try eventually("every row arrives once", seconds: 60) { try f.count("chef_orders") == 51 }
        try eventually("changelog drained") { try f.backlog() == 0 }
        // The keyless row got a key written back in NocoDB, the same one MongoDB has.
        let key = try #require(try f.sql("SELECT \"externalId\" FROM \(t) WHERE items::text = '[\"keyless\"]'").rows.first?[0])
        #expect(try f.document("chef_orders", key: key) != nil)
        usleep(500_000)
        #expect(try f.count("chef_orders") == 51)
        bridge.kill(SIGTERM)
        #expect(bridge.wait() == 0)

        // And back: changes the slot never delivered reach MongoDB through the resync that
        // `install` runs when it retires the slot; no slot is left holding WAL.
        try f.sql("UPDATE \(t) SET status = 'served' WHERE \"externalId\" LIKE 'after-%'")
        var back = f.environment
        back["PG_URL"] = f.postgresURL
        back["SYNC_CAPTURE"] = "triggers"
        let install = try runCLI(["install"], environment: back, timeoutSeconds: 120)
        #expect(install.status == 0, "\(install.output)")
        #expect(try f.sql("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()").rows[0][0] == "0")
        #expect(try f.documents("chef_orders", filter: ["status": .string("served")]).count == 20)
        let triggers = try BridgeProcess(environment: back)
        try f.sql("INSERT INTO \(t) (status, items) VALUES ('new', '[\"triggers again\"]')")
        try eventually("triggers capture again") { try f.count("chef_orders") == 52 }
        triggers.kill(SIGTERM)
        #expect(triggers.wait() == 0)
    }
}
