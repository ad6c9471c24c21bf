import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

@Suite struct InstallAndFailureTests {
    /// NocoDB reports any trigger error as a failed edit; capture problems must be recorded,
    /// flag the table for reconciliation, and let NocoDB's write commit.
    @Test func aFailingCaptureNeverFailsNocoDBsWrite() throws {
        let f = try BridgeFixture()
        let t = f.table("waiter_ops")
        // Make every changelog insert fail.
        try f.sql("ALTER TABLE nocobridge.changelog ADD CONSTRAINT always_fails CHECK (false) NOT VALID")
        try f.sql("INSERT INTO \(t) (table_no, action) VALUES (1, 'seat')")
        try f.sql("UPDATE \(t) SET action = 'order'")
        try f.sql("DELETE FROM \(t)")
        let errors = try f.sql("SELECT table_name, op, sqlstate FROM nocobridge.capture_errors ORDER BY id").rows
        #expect(errors.map { $0[1] } == ["INSERT", "UPDATE", "DELETE"])
        #expect(errors.allSatisfy { $0[0] == "waiter_ops" && $0[2] == "23514" })
        let flagged = try f.sql("SELECT needs_reconcile FROM nocobridge.synced_tables WHERE table_name = 'waiter_ops'")
        #expect(flagged.rows[0][0] == "t")
        // Even with the error log itself unwritable, the write commits (a warning is all).
        try f.sql("ALTER TABLE nocobridge.capture_errors ADD CONSTRAINT also_fails CHECK (false) NOT VALID")
        try f.sql("INSERT INTO \(t) (table_no) VALUES (2)")
        #expect(try f.sql("SELECT count(*) FROM \(t)").rows[0][0] == "1")
    }

    /// A unique violation's DETAIL quotes the row ("Key (card)=(4111…) already exists"), and
    /// errors reach logs, `/status` and dead letters: they carry the server's message and
    /// SQLSTATE, never the DETAIL.
    @Test func postgresErrorsLeaveOutTheDetailThatQuotesRowValues() throws {
        let c = try PostgresConnection(url: TestServers.fromEnvironment().adminURL)
        try c.query("CREATE TEMP TABLE cards (card text PRIMARY KEY)")
        try c.query("INSERT INTO cards VALUES ($1)", ["4111-1111-1111-1111"])
        let error = #expect(throws: PostgresError.self) { try c.query("INSERT INTO cards VALUES ($1)", ["4111-1111-1111-1111"]) }
        #expect(error?.sqlState == "23505")
        #expect(error?.description.contains("duplicate key value violates unique constraint") == true, "\(String(describing: error))")
        #expect(error?.description.contains("4111") == false, "\(String(describing: error))")
    }

    @Test func installIsIdempotentAndUninstallRemovesOnlyWhatItAdded() throws {
        let f = try BridgeFixture()
        let installer = Installer(configuration: f.ownerConfiguration, logger: testLogger())
        try installer.install()
        func objects() throws -> [String] {
            try f.sql("""
                SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE $1
                UNION ALL SELECT 'index ' || indexname FROM pg_indexes WHERE schemaname = $2
                UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = 'nocobridge'
                UNION ALL SELECT 'table ' || tablename FROM pg_tables WHERE schemaname = 'nocobridge' AND tablename IN ('leases', 'instances')
                UNION ALL SELECT 'sequence ' || sequencename FROM pg_sequences WHERE schemaname = 'nocobridge' AND sequencename = 'lease_token'
                ORDER BY 1
                """, ["%\(f.schema)%", f.schema]).rows.map { $0[0] ?? "" }
        }
        let installed = try objects()
        #expect(installed.contains("schema nocobridge"))
        #expect(installed.contains("table leases") && installed.contains("table instances") && installed.contains("sequence lease_token"))
        // Per table: the stamp row trigger, two statement marks, three capture triggers.
        #expect(installed.filter { $0.hasPrefix("trigger") }.count == 6 * BridgeFixture.tables.count)
        #expect(installed.contains("index waiter_ops_externalId_nb_key"))
        let mongoIndexes = try f.mongo.withClient { (c: MongoClient) throws(MongoError) in
            try c.runCommand(["listIndexes": .string("waiter_ops")])
        }
        #expect(JSON.serialize(.document(mongoIndexes)).contains(Installer.mongoIndexName))
        try installer.uninstall()
        try installer.uninstall()
        let left = try objects()
        #expect(!left.contains { $0.hasPrefix("trigger") || $0.contains("nb_key") || $0 == "schema nocobridge" || $0.hasPrefix("table") || $0.hasPrefix("sequence") })
        #expect(left.contains("index waiter_ops_order_idx") && left.contains("index waiter_ops_pkey"))
        let after = try f.mongo.withClient { (c: MongoClient) throws(MongoError) in
            try c.runCommand(["listIndexes": .string("waiter_ops")])
        }
        #expect(!JSON.serialize(.document(after)).contains("nocobridge"))
        // NocoDB's own writes keep working without the bridge.
        try f.sql("INSERT INTO \(f.table("waiter_ops")) (table_no) VALUES (9)")
    }

    @Test func sqlFilesMatchTheEmbeddedScripts() throws {
        let root = packageRoot()
        let install = try String(contentsOf: root.appendingPathComponent("sql/install.sql"), encoding: .utf8)
        let uninstall = try String(contentsOf: root.appendingPathComponent("sql/uninstall.sql"), encoding: .utf8)
        #expect(install == InstallSQL.install + "\n")
        #expect(uninstall == InstallSQL.uninstall + "\n")
    }

    @Test func startupProblemsGiveOneClearLineAndNonZeroExit() throws {
        let f = try BridgeFixture()
        var env = f.environment
        env["SYNC_TABLES"] = "waiter_ops,no_such_table"
        let missing = try runCLI(["run"], environment: env)
        #expect(missing.status == 2)
        #expect(missing.output.contains("no_such_table") && missing.output.contains("does not exist"))
        #expect(missing.output.split(separator: "\n").count == 1)

        try f.sql("ALTER TABLE \(f.table("chef_orders")) RENAME COLUMN \"externalId\" TO \"extId\"")
        env["SYNC_TABLES"] = "chef_orders"
        let noKey = try runCLI(["run"], environment: env)
        #expect(noKey.status == 2)
        #expect(noKey.output.contains("chef_orders") && noKey.output.contains("externalId"))
        try f.sql("ALTER TABLE \(f.table("chef_orders")) RENAME COLUMN \"extId\" TO \"externalId\"")

        env = f.environment
        env["MONGO_URL"] = "mongodb://nobody:s3cret@127.0.0.1:1/?replicaSet=secantus&serverSelectionTimeoutMS=300"
        let unreachable = try runCLI(["run"], environment: env)
        #expect(unreachable.status == 1, "\(unreachable.output)")
        #expect(!unreachable.output.contains("s3cret"))

        env = f.environment
        env["SYNC_DIRECTION"] = "sideways"
        let bad = try runCLI(["run"], environment: env)
        #expect(bad.status == 2)
        #expect(bad.output.contains("SYNC_DIRECTION"))

        env = f.environment
        env["PG_URL"] = "postgresql://postgres:hunter2@127.0.0.1:1/none"
        let pgDown = try runCLI(["run"], environment: env)
        #expect(pgDown.status == 1)
        #expect(!pgDown.output.contains("hunter2"))
    }

    /// Every configuration mistake: one line naming the setting, exit 2, no secret echoed.
    @Test(arguments: [
        ("SYNC_CONFLICT_POLICY", "last_writer_wins"),
        ("SYNC_DIRECTION", "sideways"),
        ("SYNC_TABLES", "waiter_ops=,=x"),
        ("SYNC_BATCH_SIZE", "lots"),
        ("SYNC_BATCH_SIZE", "0"),
        ("SYNC_PRIORITY_NOCO", "high"),
        ("SYNC_PRE_IMAGES", "perhaps"),
        ("SYNC_DUPLICATE_KEYS", "ignore"),
        ("SYNC_COLUMN_TYPES", "waiter_ops.notes=blob"),
        ("LOG_LEVEL", "loud"),
        ("LOG_FORMAT", "xml"),
        ("STATUS_ADDR", "8787"),
        ("PG_URL", "postgresql://nb:s3cret@127.0.0.1:notaport/db"),
        ("PG_URL", "mysql://nb:s3cret@127.0.0.1/db"),
        ("MONGO_URL", "mongodb://nb:s3cret@127.0.0.1:27017/?replicaSet=rs0&tls=perhaps"),
        ("MONGO_URL", "http://nb:s3cret@127.0.0.1"),
    ])
    func configurationMistakesExitWithTwo(setting: String, value: String) throws {
        let f = try BridgeFixture()
        var env = f.environment
        env[setting] = value
        let result = try runCLI(["run"], environment: env)
        #expect(result.status == 2, "\(setting)=\(value): \(result.output)")
        #expect(result.output.contains(setting), "\(result.output)")
        #expect(result.output.split(separator: "\n").count == 1, "\(result.output)")
        #expect(!result.output.contains("s3cret"))
    }

    /// SIGKILL the bridge repeatedly while NocoDB writes; after a clean restart MongoDB holds
    /// exactly the rows PostgreSQL has: none missing, none duplicated, latest values.
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func sigkillMidStreamLosesAndDuplicatesNothing(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let t = f.table("chef_orders")
        var bridge = try BridgeProcess(environment: f.environment)
        var kills = 0
        for round in 0..<6 {
            try f.sql("INSERT INTO \(t) (\"externalId\", status, items) SELECT gen_random_uuid()::text, 'new', json_build_array(g, \(round)) FROM generate_series(1, 400) g")
            try f.sql("UPDATE \(t) SET status = 'cooking' WHERE id % 3 = \(round % 3)")
            try f.sql("DELETE FROM \(t) WHERE id % 17 = \(round)")
            try f.sql("UPDATE \(t) SET \"__nc_deleted\" = true WHERE id % 23 = \(round)")
            usleep(UInt32.random(in: 50_000...300_000))
            bridge.kill(SIGKILL)
            bridge.wait()
            kills += 1
            bridge = try BridgeProcess(environment: f.environment)
        }
        try f.waitCaughtUp(seconds: 120)
        bridge.kill(SIGTERM)
        #expect(bridge.wait() == 0)
        let rows = try f.sql("SELECT \"externalId\", status, items::text FROM \(t) WHERE NOT \"__nc_deleted\" ORDER BY 1").rows
        let docs = try f.documents("chef_orders")
        #expect(docs.count == rows.count)
        #expect(Set(docs.compactMap { $0["externalId"] }).count == docs.count, "duplicated keys in MongoDB")
        let docByKey = Dictionary(uniqueKeysWithValues: docs.map { (doc: Document) -> (String, Document) in
            guard case .string(let k)? = doc["externalId"] else { return ("", doc) }
            return (k, doc)
        })
        var mismatches = 0
        for row in rows {
            guard let doc = docByKey[row[0] ?? ""], doc["status"] == .string(row[1] ?? ""),
                  doc["items"] == (try JSON.parse(row[2] ?? "null")) else { mismatches += 1; continue }
        }
        #expect(mismatches == 0)
        #expect(kills == 6)
        #expect(rows.count > 1500)
    }
}

@Suite struct LeastPrivilegeTests {
    /// The fixture's bridge role is an ordinary login role: no superuser, no ownership, and
    /// nothing on tables it does not sync.
    @Test func theBridgeRunsAsALimitedRole() throws {
        let f = try BridgeFixture()
        let bridgeConnection = try PostgresConnection(url: f.configuration.postgresURL)
        let me = try bridgeConnection.query("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").rows[0]
        #expect(me == [f.role, "f"])
        try f.sql("CREATE TABLE \(f.table("not_synced")) (id int)")
        #expect(throws: PostgresError.self) { try bridgeConnection.query("SELECT * FROM \(f.table("not_synced"))") }
        #expect(throws: PostgresError.self) { try bridgeConnection.query("DROP TRIGGER nocobridge_stamp ON \(f.table("waiter_ops"))") }
        #expect(throws: PostgresError.self) { try bridgeConnection.query("CREATE TABLE nocobridge.x (i int)") }
        // …and it still syncs both ways.
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        try f.sql("INSERT INTO \(f.table("waiter_ops")) (\"externalId\", action) VALUES ('lp-1', 'seat')")
        try f.mongoWrite { c throws(MongoError) in try c.insertOne(["externalId": .string("lp-2"), "action": .string("order")], collection: "waiter_ops") }
        try eventually("both ways as the limited role") {
            try f.document("waiter_ops", key: "lp-1") != nil
                && f.sql("SELECT 1 FROM \(f.table("waiter_ops")) WHERE \"externalId\" = 'lp-2'").rows.count == 1
        }
    }
}
