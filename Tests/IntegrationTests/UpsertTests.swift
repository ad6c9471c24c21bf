import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

/// Integrations write NocoDB's tables with `INSERT … ON CONFLICT ("externalId")`: with the
/// bridge installed that must stay an upsert (one record per key on both sides), through every
/// way a client can send it, in both capture modes; NocoDB's own copies of a row (duplicate
/// row, paste, CSV import) still become new records.
@Suite struct UpsertTests {
    /// One record per key after repeated upserts, on both sides.
    private func expectOneRecord(_ f: BridgeFixture, key: String, tableNo: Int, file: String = #filePath, line: Int = #line) throws {
        let t = f.table("waiter_ops")
        try f.waitCaughtUp()
        let rows = try f.sql("SELECT \"externalId\", table_no FROM \(t) ORDER BY id").rows
        #expect(rows.count == 1, "NocoDB rows: \(rows)")
        #expect(rows.first?[0] == key && rows.first?[1] == String(tableNo), "NocoDB rows: \(rows)")
        try eventually("MongoDB holds \(key) with table_no \(tableNo)") {
            let docs = try f.documents("waiter_ops")
            return docs.count == 1 && docs[0]["externalId"] == .string(key) && docs[0]["table_no"] == .int64(Int64(tableNo))
        }
    }

    /// NocoDB's records once the bridge caught up (key → table_no; no key twice), and
    /// MongoDB eventually holding exactly those: the same keys with the same values.
    @discardableResult
    private func expectMongoMirrorsNocoDB(_ f: BridgeFixture) throws -> [String: Int64] {
        try f.waitCaughtUp()
        let rows = try f.sql("SELECT \"externalId\", table_no FROM \(f.table("waiter_ops"))").rows
        var nocodb: [String: Int64] = [:]
        for row in rows { nocodb[row[0] ?? ""] = row[1].flatMap { Int64($0) } }
        try #require(nocodb.count == rows.count, "NocoDB holds a key twice: \(rows)")
        try eventually("MongoDB holds NocoDB's \(nocodb.count) records") {
            let docs = try f.documents("waiter_ops")
            var mongo: [String: Int64] = [:]
            for doc in docs {
                guard case .string(let key)? = doc["externalId"], case .int64(let n)? = doc["table_no"] else { return false }
                mongo[key] = n
            }
            return docs.count == nocodb.count && mongo == nocodb
        }
        return nocodb
    }

    /// `nocobridge install` as an operator runs it: the owner's URL, the key settings from the
    /// environment (nil: unset), so the CLI's reading of them is part of what is tested.
    private func installFromEnvironment(_ f: BridgeFixture, _ settings: [String: String?]) throws {
        var env = f.environment
        env["PG_URL"] = f.postgresURL
        for (name, value) in settings { env[name] = value }
        let result = try runCLI(["install", "--replica-identity-full"], environment: env, timeoutSeconds: 120)
        try #require(result.status == 0, "\(result.output)")
    }

    /// What `install` recorded for the key trigger (key → value).
    private func keySettings(_ f: BridgeFixture) throws -> [String: String] {
        var settings: [String: String] = [:]
        for row in try f.sql("SELECT key, value FROM nocobridge.meta WHERE key IN ('nocodb_sessions', 'duplicate_keys')").rows {
            settings[row[0] ?? ""] = row[1] ?? ""
        }
        return settings
    }

    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func onConflictDoUpdateUpsertsThroughEveryProtocol(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        let client = try PostgresConnection(url: f.postgresURL, applicationName: "etl-job")
        let upsert = "INSERT INTO \(t) (\"externalId\", table_no) VALUES ($1, $2) ON CONFLICT (\"externalId\") DO UPDATE SET table_no = EXCLUDED.table_no"
        func literal(_ key: String, _ n: Int) -> String {
            "INSERT INTO \(t) (\"externalId\", table_no) VALUES ('\(key)', \(n)) ON CONFLICT (\"externalId\") DO UPDATE SET table_no = EXCLUDED.table_no"
        }
        // Simple query protocol (PQexec), the issue's reproduction: three runs, one record.
        for n in 1...3 { try client.execute(script: literal("k-simple", n)) }
        try expectOneRecord(f, key: "k-simple", tableNo: 3)
        try f.sql("DELETE FROM \(t)")
        try f.waitCaughtUp()
        try eventually("MongoDB emptied") { try f.count("waiter_ops") == 0 }

        // Extended protocol, unnamed statement (PQexecParams).
        for n in 1...3 { try client.query(upsert, ["k-extended", String(n)]) }
        try expectOneRecord(f, key: "k-extended", tableNo: 3)
        try f.sql("DELETE FROM \(t)")
        try f.waitCaughtUp()
        try eventually("MongoDB emptied") { try f.count("waiter_ops") == 0 }

        // Protocol-level prepared statement (PQprepare + PQexecPrepared).
        for n in 1...3 { try client.query(cached: upsert, ["k-prepared", String(n)]) }
        try expectOneRecord(f, key: "k-prepared", tableNo: 3)
        try f.sql("DELETE FROM \(t)")
        try f.waitCaughtUp()
        try eventually("MongoDB emptied") { try f.count("waiter_ops") == 0 }

        // SQL-level PREPARE / EXECUTE (what some ORMs and psql scripts send).
        try client.execute(script: "PREPARE nb_upsert(text, bigint) AS INSERT INTO \(t) (\"externalId\", table_no) VALUES ($1, $2) ON CONFLICT (\"externalId\") DO UPDATE SET table_no = EXCLUDED.table_no")
        for n in 1...3 { try client.execute(script: "EXECUTE nb_upsert('k-sql-prepared', \(n))") }
        try expectOneRecord(f, key: "k-sql-prepared", tableNo: 3)
        #expect(try f.deadLetters().rows.isEmpty)
    }

    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func onConflictDoNothingLeavesTheRecordAlone(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        let client = try PostgresConnection(url: f.postgresURL, applicationName: "etl-job")
        try client.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 1)")
        for n in 2...4 {
            let r = try client.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', $1) ON CONFLICT (\"externalId\") DO NOTHING", [String(n)])
            #expect(r.affected == 0, "ON CONFLICT DO NOTHING inserted a row")
        }
        // Without a conflict target, too.
        try client.execute(script: "INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 9) ON CONFLICT DO NOTHING")
        try expectOneRecord(f, key: "k1", tableNo: 1)
    }

    /// A bulk load of upserts on few keys (the issue's 13,000-on-400, scaled down), multi-row
    /// statements included: exactly one record per key on both sides, with the last value.
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func repeatedBulkUpsertsKeepOneRecordPerKey(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        let client = try PostgresConnection(url: f.postgresURL, applicationName: "etl-job")
        let keys = 100
        var last: [Int: Int] = [:]
        for round in 0..<20 {
            // 50 rows per statement, keys cycling over 100 (no key twice in one statement:
            // PostgreSQL refuses that for DO UPDATE, with or without the bridge).
            let rows = (0..<50).map { i -> String in
                let k = (round * 50 + i) % keys
                last[k] = round * 1000 + i
                return "('u-\(k)', \(round * 1000 + i))"
            }
            try client.execute(script: "INSERT INTO \(t) (\"externalId\", table_no) VALUES \(rows.joined(separator: ", ")) ON CONFLICT (\"externalId\") DO UPDATE SET table_no = EXCLUDED.table_no")
            // And single-row upserts through the extended protocol in between.
            for k in stride(from: round % 5, to: keys, by: 25) {
                last[k] = round * 1000 + 900 + k
                try client.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ($1, $2) ON CONFLICT (\"externalId\") DO UPDATE SET table_no = EXCLUDED.table_no",
                                 ["u-\(k)", String(round * 1000 + 900 + k)])
            }
        }
        try f.waitCaughtUp()
        let rows = try f.sql("SELECT \"externalId\", table_no FROM \(t)").rows
        try #require(rows.count == keys, "NocoDB has \(rows.count) rows for \(keys) keys")
        for row in rows { #expect(row[1] == last[Int(row[0]!.dropFirst(2))!].map(String.init), "row \(row)") }
        try eventually("MongoDB has one document per key with the last value") {
            let docs = try f.documents("waiter_ops")
            return docs.count == keys && docs.allSatisfy { doc in
                guard case .string(let k)? = doc["externalId"], let n = Int(k.dropFirst(2)) else { return false }
                return doc["table_no"] == .int64(Int64(last[n]!))
            }
        }
        #expect(try f.deadLetters().rows.isEmpty)
    }

    /// Once NocoDB's sessions are named, a copy NocoDB makes is a new record and any other
    /// client's plain INSERT of a used key gets the unique-key error it would get from any
    /// unique key; ON CONFLICT behaves natively for everyone.
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func namedNocoDBSessionsCopyWhileOtherClientsGetTheUniqueKeyError(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        var owner = f.ownerConfiguration
        owner.nocodbSessions = "nocodb-test"  // the fixture's NocoDB-side connection
        try Installer(configuration: owner, logger: testLogger()).install(grantTo: f.role, replicaIdentityFull: true)
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        let etl = try PostgresConnection(url: f.postgresURL, applicationName: "etl-job")
        try etl.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 1)")
        // A plain INSERT of k1 again: refused with 23505, nothing changes.
        do {
            try etl.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 2)")
            Issue.record("a plain INSERT of a used key from a client that is not NocoDB was accepted")
        } catch {
            #expect(error.sqlState == "23505", "\(error)")
        }
        // DO NOTHING and DO UPDATE as without the bridge, through a function too.
        try etl.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 3) ON CONFLICT DO NOTHING")
        try etl.execute(script: """
            CREATE FUNCTION public.etl_upsert(k text, n bigint) RETURNS void LANGUAGE sql AS $$
                INSERT INTO \(t) ("externalId", table_no) VALUES (k, n) ON CONFLICT ("externalId") DO NOTHING
            $$;
            SELECT public.etl_upsert('k1', 4);
            """)
        try expectOneRecord(f, key: "k1", tableNo: 1)
        // NocoDB's "duplicate row": the copy gets a fresh key and is a record of its own.
        try f.sql("INSERT INTO \(t) (\"externalId\", table_no, created_at) SELECT \"externalId\", table_no, now() FROM \(t) WHERE \"externalId\" = 'k1'")
        try f.waitCaughtUp()
        let keys = try f.sql("SELECT \"externalId\" FROM \(t) ORDER BY id").rows.map { $0[0] ?? "" }
        #expect(keys.count == 2 && keys[0] == "k1" && UUID(uuidString: keys[1]) != nil, "keys \(keys)")
        try eventually("both records in MongoDB") { try f.count("waiter_ops") == 2 }
        #expect(try f.deadLetters().rows.isEmpty)
    }

    /// Nothing configured: a used key from any client is a new record (as NocoDB needs),
    /// except where the statement says ON CONFLICT, which the trigger finds in the client's
    /// text (DO NOTHING has no other mark), through SQL-level EXECUTE too; inside a function
    /// the client says what it wants with `nocobridge.duplicate_keys`.
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func unconfiguredCopiesAreNewRecordsButOnConflictDoNothingIsKept(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        let etl = try PostgresConnection(url: f.postgresURL, applicationName: "etl-job")
        try etl.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 1)")
        try etl.execute(script: "INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 2) /* ON CONFLICT in a comment */ ON CONFLICT DO NOTHING")
        try etl.execute(script: """
            PREPARE nb_keep(text, bigint) AS INSERT INTO \(t) ("externalId", table_no) VALUES ($1, $2) ON CONFLICT ("externalId") DO NOTHING;
            EXECUTE nb_keep('k1', 3);
            """)
        try etl.execute(script: "EXECUTE nb_keep('k1', 4)")
        try etl.execute(script: """
            CREATE FUNCTION public.etl_keep(k text, n bigint) RETURNS void LANGUAGE sql AS $$
                INSERT INTO \(t) ("externalId", table_no) VALUES (k, n) ON CONFLICT ("externalId") DO NOTHING
            $$;
            """)
        try etl.execute(script: "BEGIN; SET LOCAL nocobridge.duplicate_keys = 'error'; SELECT public.etl_keep('k1', 5); COMMIT")
        try expectOneRecord(f, key: "k1", tableNo: 1)
        // A literal holding the words is not a clause: this plain INSERT copies, so a new record.
        try etl.query("INSERT INTO \(t) (\"externalId\", table_no, notes) VALUES ('k1', 6, 'on conflict do nothing')")
        try f.waitCaughtUp()
        let rows = try f.sql("SELECT \"externalId\", table_no FROM \(t) ORDER BY id").rows
        #expect(rows.count == 2 && rows[1][0] != "k1" && rows[1][1] == "6", "rows \(rows)")
        try eventually("both records in MongoDB") { try f.count("waiter_ops") == 2 }
    }

    /// DO NOTHING leaves no statement mark: with nothing configured the trigger reads the
    /// statement's text, which for a protocol-level prepared statement (PQprepare +
    /// PQexecPrepared: node-postgres's named queries, JDBC after a few runs) is the prepared
    /// text, on every execution and not only the first; a plain prepared INSERT of a used key
    /// on the same connection, in the same transaction, is still a copy.
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func onConflictDoNothingThroughAProtocolPreparedStatementLeavesTheRecordAlone(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        let client = try PostgresConnection(url: f.postgresURL, applicationName: "etl-job")
        try client.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 1)")
        let keep = "INSERT INTO \(t) (\"externalId\", table_no) VALUES ($1, $2) ON CONFLICT (\"externalId\") DO NOTHING"
        let keepAnyConflict = "INSERT INTO \(t) (\"externalId\", table_no) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        let plain = "INSERT INTO \(t) (\"externalId\", table_no) VALUES ($1, $2)"
        for n in 2...4 {
            #expect(try client.query(cached: keep, ["k1", String(n)]).affected == 0, "ON CONFLICT (\"externalId\") DO NOTHING inserted a row")
            #expect(try client.query(cached: keepAnyConflict, ["k1", String(n)]).affected == 0, "ON CONFLICT DO NOTHING inserted a row")
        }
        try expectOneRecord(f, key: "k1", tableNo: 1)
        try client.transaction { () throws in
            #expect(try client.query(cached: keep, ["k1", "5"]).affected == 0)
            #expect(try client.query(cached: plain, ["k1", "6"]).affected == 1)
            #expect(try client.query(cached: keep, ["k1", "7"]).affected == 0)
            #expect(try client.query(cached: keep, ["k2", "8"]).affected == 1)
        }
        let records = try expectMongoMirrorsNocoDB(f)
        #expect(records.count == 3 && records["k1"] == 1 && records["k2"] == 8, "records \(records)")
        let copy = records.first { $0.value == 6 }?.key
        #expect(copy.flatMap { UUID(uuidString: $0) } != nil, "the plain INSERT's copy has key \(String(describing: copy))")
        #expect(try f.deadLetters().rows.isEmpty)
    }

    /// The README promises DO UPDATE inside a function and a CTE. Inside a function the client's
    /// text says nothing of ON CONFLICT, so only the statement mark can keep the key there;
    /// a data-modifying CTE runs its INSERT as a statement of its own. Three runs, one record.
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func onConflictDoUpdateUpsertsInsideFunctionsAndCTEs(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        let client = try PostgresConnection(url: f.postgresURL, applicationName: "etl-job")
        let upsert = "INSERT INTO \(t) (\"externalId\", table_no) VALUES (k, n) ON CONFLICT (\"externalId\") DO UPDATE SET table_no = EXCLUDED.table_no"
        try client.execute(script: """
            CREATE FUNCTION public.etl_upsert_plpgsql(k text, n bigint) RETURNS void LANGUAGE plpgsql AS $$
            BEGIN
                \(upsert);
            END
            $$;
            CREATE FUNCTION public.etl_upsert_sql(k text, n bigint) RETURNS void LANGUAGE sql AS $$
                \(upsert)
            $$;
            CREATE FUNCTION public.etl_upsert_cte(k text, n bigint) RETURNS bigint LANGUAGE plpgsql AS $$
            DECLARE
                written bigint;
            BEGIN
                WITH up AS (\(upsert) RETURNING id) SELECT count(*) INTO written FROM up;
                RETURN written;
            END
            $$;
            """)
        let ways: [(key: String, sql: String)] = [
            ("k-plpgsql", "SELECT public.etl_upsert_plpgsql($1, $2)"),
            ("k-sql-function", "SELECT public.etl_upsert_sql($1, $2)"),
            ("k-cte-in-function", "SELECT public.etl_upsert_cte($1, $2)"),
            ("k-cte-source", "WITH src(k, n) AS (VALUES ($1::text, $2::bigint)) INSERT INTO \(t) (\"externalId\", table_no) SELECT k, n FROM src ON CONFLICT (\"externalId\") DO UPDATE SET table_no = EXCLUDED.table_no"),
            ("k-cte-modifying", "WITH up AS (INSERT INTO \(t) (\"externalId\", table_no) VALUES ($1, $2) ON CONFLICT (\"externalId\") DO UPDATE SET table_no = EXCLUDED.table_no RETURNING id) SELECT count(*) FROM up"),
        ]
        for way in ways {
            for n in 1...3 { try client.query(way.sql, [way.key, String(n)]) }
            try expectOneRecord(f, key: way.key, tableNo: 3)
            try f.sql("DELETE FROM \(t)")
            try f.waitCaughtUp()
            try eventually("MongoDB emptied") { try f.count("waiter_ops") == 0 }
        }
        #expect(try f.deadLetters().rows.isEmpty)
    }

    /// NocoDB's CSV import copies whatever keys the file holds. It sends what
    /// `BaseModelSqlv2.bulkInsert` sends (packages/nocodb/src/db/BaseModelSqlv2.ts at 0.258.3):
    /// one transaction, knex `batchInsert` in chunks (100 by default), each chunk one multi-row
    /// `INSERT … VALUES … RETURNING` the primary key, values bound as parameters. From NocoDB's
    /// named session every row whose key another row already has, an existing record's or an
    /// earlier row of the same file, becomes a record of its own; new keys are kept.
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func csvImportFromNocoDBsSessionGivesEveryCopiedRowAFreshKey(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        var owner = f.ownerConfiguration
        owner.nocodbSessions = "nocodb"  // PGAPPNAME=nocodb on NocoDB, as the README says
        try Installer(configuration: owner, logger: testLogger()).install(grantTo: f.role, replicaIdentityFull: true)
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 1), ('k2', 2)")
        // 30 rows: existing keys copied, a key repeated within the file, new keys.
        let file: [(key: String, tableNo: Int)] = (0..<30).map { i in
            switch i % 5 {
            case 0: ("k1", 100 + i)
            case 1: ("k2", 100 + i)
            case 2: ("csv-repeated", 100 + i)
            default: ("csv-\(i)", 100 + i)
            }
        }
        let chunks = stride(from: 0, to: file.count, by: 10).map { Array(file[$0..<min($0 + 10, file.count)]) }
        func insert(_ chunk: [(key: String, tableNo: Int)], on connection: PostgresConnection) throws(PostgresError) -> PostgresRows {
            let values = chunk.indices.map { "($\(2 * $0 + 1), $\(2 * $0 + 2))" }.joined(separator: ", ")
            return try connection.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES \(values) RETURNING \"id\"",
                                        chunk.flatMap { [$0.key, String($0.tableNo)] })
        }
        // The same chunk from a client that is not NocoDB is refused whole, as any unique key would.
        let etl = try PostgresConnection(url: f.postgresURL, applicationName: "etl-job")
        do {
            _ = try insert(chunks[0], on: etl)
            Issue.record("a multi-row INSERT of used keys from a client that is not NocoDB was accepted")
        } catch {
            #expect(error.sqlState == "23505", "\(error)")
        }
        let nocodb = try PostgresConnection(url: f.postgresURL, applicationName: "nocodb")
        try nocodb.transaction { () throws in
            for chunk in chunks { #expect(try insert(chunk, on: nocodb).rows.count == chunk.count) }
        }
        let records = try expectMongoMirrorsNocoDB(f)
        #expect(records.count == 2 + file.count, "records \(records)")
        #expect(records["k1"] == 1 && records["k2"] == 2, "an existing record was overwritten: \(records)")
        var keyOf: [Int64: String] = [:]
        for (key, n) in records { keyOf[n] = key }
        var seen: Set<String> = ["k1", "k2"]
        for row in file {
            let key = keyOf[Int64(row.tableNo)]
            if seen.insert(row.key).inserted {
                #expect(key == row.key, "file row \(row) got key \(String(describing: key))")
            } else {
                #expect(key.flatMap { UUID(uuidString: $0) } != nil, "copied file row \(row) got key \(String(describing: key))")
            }
        }
        #expect(try f.deadLetters().rows.isEmpty)
    }

    /// `SYNC_NOCODB_SESSIONS` names NocoDB by its login role with `role:NAME`, for a deployment
    /// whose application name cannot be set: any session of that role copies, whatever
    /// application name it gives; a session of another role does not, even under the role's
    /// name or the entry's own text as application name. The list's application-name entry
    /// still counts, and an upsert from NocoDB's role is still an upsert.
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func nocodbSessionsNamedByLoginRoleCopyWhileOtherRolesGetTheUniqueKeyError(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        let nocodbRole = try f.loginRole()
        try installFromEnvironment(f, ["SYNC_NOCODB_SESSIONS": " other-app , role:\(nocodbRole.name) ", "SYNC_DUPLICATE_KEYS": nil])
        #expect(try keySettings(f) == ["nocodb_sessions": "other-app,role:\(nocodbRole.name)"])
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 1)")
        // NocoDB's "duplicate row" from its role, under an application name the list lacks.
        let nocodb = try PostgresConnection(url: nocodbRole.url, applicationName: "node-postgres")
        try nocodb.query("INSERT INTO \(t) (\"externalId\", table_no) SELECT \"externalId\", 2 FROM \(t) WHERE \"externalId\" = 'k1'")
        let other = try PostgresConnection(url: f.postgresURL, applicationName: "other-app")
        try other.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 3)")
        for name in [nocodbRole.name, "role:\(nocodbRole.name)"] {
            let impostor = try PostgresConnection(url: f.postgresURL, applicationName: name)
            do {
                try impostor.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 4)")
                Issue.record("a session of another role under application name \(name) copied a key")
            } catch {
                #expect(error.sqlState == "23505", "\(error)")
            }
        }
        try nocodb.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 5) ON CONFLICT (\"externalId\") DO UPDATE SET table_no = EXCLUDED.table_no")
        let records = try expectMongoMirrorsNocoDB(f)
        #expect(records.count == 3 && records["k1"] == 5, "records \(records)")
        for n: Int64 in [2, 3] {
            let key = records.first { $0.value == n }?.key
            #expect(key.flatMap { UUID(uuidString: $0) } != nil, "the copy with table_no \(n) has key \(String(describing: key))")
        }
        #expect(try f.deadLetters().rows.isEmpty)
    }

    /// `SYNC_DUPLICATE_KEYS=error` with no session named: nobody counts as NocoDB, so every
    /// plain INSERT of a used key is refused as any unique key refuses it, NocoDB's
    /// "duplicate row" under `PGAPPNAME=nocodb` too until that name is listed; ON CONFLICT
    /// behaves natively, and a session may still choose new records for itself.
    @Test(arguments: BridgeConfiguration.Capture.allCases)
    func explicitErrorPolicyWithoutNamedSessionsRefusesEveryCopy(capture: BridgeConfiguration.Capture) throws {
        let f = try BridgeFixture(capture: capture)
        try installFromEnvironment(f, ["SYNC_DUPLICATE_KEYS": "error", "SYNC_NOCODB_SESSIONS": nil])
        #expect(try keySettings(f) == ["duplicate_keys": "error"])
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 1)")
        // Said at start (`run`'s preflight), where an operator looks.
        let start = LogTail()
        try BridgeService(configuration: f.configuration, logger: start.logger()).preflight()
        #expect(start.text().contains("SYNC_DUPLICATE_KEYS=error with no NocoDB session named"), "\(start.text())")
        let nocodb = try PostgresConnection(url: f.postgresURL, applicationName: "nocodb")
        let etl = try PostgresConnection(url: f.postgresURL, applicationName: "etl-job")
        let refused: [(client: PostgresConnection, sql: String)] = [
            (nocodb, "INSERT INTO \(t) (\"externalId\", table_no) SELECT \"externalId\", 2 FROM \(t) WHERE \"externalId\" = 'k1'"),
            (etl, "INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k-new', 3), ('k1', 3)"),
        ]
        for (client, sql) in refused {
            do {
                try client.query(sql)
                Issue.record("accepted with SYNC_DUPLICATE_KEYS=error: \(sql)")
            } catch {
                #expect(error.sqlState == "23505", "\(error)")
            }
        }
        #expect(try etl.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 4) ON CONFLICT DO NOTHING").affected == 0)
        for n in 5...7 {
            try etl.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', $1) ON CONFLICT (\"externalId\") DO UPDATE SET table_no = EXCLUDED.table_no", [String(n)])
        }
        try etl.transaction {
            try etl.query("SET LOCAL nocobridge.duplicate_keys = 'new-record'")
            try etl.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 8)")
        }
        // The choice ended with the transaction.
        #expect(throws: PostgresError.self) { try etl.query("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 9)") }
        let records = try expectMongoMirrorsNocoDB(f)
        #expect(records.count == 2 && records["k1"] == 7, "records \(records)")
        let copy = records.first { $0.value == 8 }?.key
        #expect(copy.flatMap { UUID(uuidString: $0) } != nil, "the session's chosen copy has key \(String(describing: copy))")
        #expect(try f.deadLetters().rows.isEmpty)
    }

    /// Logical capture with `install --no-key-trigger` leaves nothing on the table: no
    /// unique index, so ON CONFLICT ("externalId") is refused as it would be without the
    /// bridge, and the bridge itself gives a copied row a fresh key after the fact.
    @Test func logicalCaptureWithoutTheKeyTriggerLeavesTheTableAsItWas() throws {
        let f = try BridgeFixture(install: false, capture: .logical)
        var owner = f.ownerConfiguration
        owner.logicalKeyTrigger = false
        try Installer(configuration: owner, logger: testLogger()).install(grantTo: f.role, replicaIdentityFull: true)
        let triggers = try f.sql("SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal", [f.table("waiter_ops")]).rows[0][0]
        #expect(triggers == "0")
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 1)")
        do {
            try f.sql("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('k1', 2) ON CONFLICT (\"externalId\") DO UPDATE SET table_no = 2")
            Issue.record("ON CONFLICT found a unique index that --no-key-trigger should not install")
        } catch let error as PostgresError {
            #expect(error.sqlState == "42P10", "\(error)")
        }
        try f.sql("INSERT INTO \(t) (\"externalId\", table_no) SELECT \"externalId\", 7 FROM \(t)")
        try eventually("the copy got a fresh key") {
            let keys = try f.sql("SELECT \"externalId\" FROM \(t) ORDER BY id").rows.map { $0[0] ?? "" }
            return keys.count == 2 && keys[0] == "k1" && UUID(uuidString: keys[1]) != nil
        }
        try eventually("both records in MongoDB") { try f.count("waiter_ops") == 2 }
    }
}
