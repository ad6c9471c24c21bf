@testable import Bridge
import Foundation
import Mongo
import Postgres
import Synchronization
import SyncCore
import Testing

/// The bridge against MongoDB failing the way production does: a failover in the middle of a
/// bulk, an app's insert racing the bridge's, a frozen server, an app's write landing between
/// the bridge's read and its write, marker writes lost to failovers, history the server no
/// longer has. Each test has a SecantusDB of its own (`OwnSecantus`): failpoints are
/// server-wide (and SecantusDB keeps one at a time), and a frozen server must freeze nobody else.
@Suite struct MongoProductionTests {
    /// A fixture on a server of the test's own, with a known instance, so failpoints can name
    /// the bridge's connections (`appName` ends with `nocobridge/<instance>`).
    static func fixture(_ own: OwnSecantus, capture: BridgeConfiguration.Capture = .triggers) throws -> BridgeFixture {
        let shared = try TestServers.fromEnvironment()
        let f = try BridgeFixture(servers: TestServers(adminURL: shared.adminURL, mongoURL: own.url), capture: capture)
        f.configuration.instanceID = "bridge" + randomSuffix(6)
        return f
    }

    static func appName(_ f: BridgeFixture) -> String { MongoIdentity.identity(instance: f.configuration.instanceID) }

    static func failCommand(_ f: BridgeFixture, times: Int32, _ data: Document) throws {
        var d = data
        d["appName"] = .string(appName(f))
        try f.mongoWrite { (c: MongoClient) throws(MongoError) in
            _ = try c.runCommand(["configureFailPoint": .string("failCommand"), "mode": .document(["times": .int32(times)]),
                                  "data": .document(d)], database: "admin")
        }
    }

    static func failpointOff(_ f: BridgeFixture) {
        try? f.mongoWrite { (c: MongoClient) throws(MongoError) in
            _ = try c.runCommand(["configureFailPoint": .string("failCommand"), "mode": .string("off")], database: "admin")
        }
    }

    /// One NocoDB transaction updates ten records (one refused by a validator) and deletes ten;
    /// MongoDB answers the deletes with PrimarySteppedDown twice (the driver's retry too). The
    /// bulk's failure must not be swallowed because a write error was also present: the batch
    /// is retried whole, the ten deletes land, the refused record is a dead letter.
    @Test func aFailoverDuringABulkWithAWriteErrorLosesNoDelete() throws {
        let own = try OwnSecantus()
        let f = try Self.fixture(own)
        let bridge = f.startToMongo()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (\"externalId\", table_no) SELECT 'r' || g, g FROM generate_series(1, 20) g")
        try eventually("twenty documents") { try f.count("waiter_ops") == 20 }
        try f.waitCaughtUp()
        try f.mongoWrite { (c: MongoClient) throws(MongoError) in
            _ = try c.runCommand(["collMod": .string("waiter_ops"), "validator": .document(["$jsonSchema": .document([
                "properties": .document(["table_no": .document(["maximum": .int32(100)])]),
            ])])])
        }
        try Self.failCommand(f, times: 2, ["failCommands": .array([.string("delete")]), "errorCode": .int32(189)])
        defer { Self.failpointOff(f) }
        try f.pg.execute(script: """
            BEGIN;
            UPDATE \(t) SET table_no = table_no + 1000 WHERE "externalId" = 'r1';
            UPDATE \(t) SET table_no = table_no + 50 WHERE "externalId" IN ('r2','r3','r4','r5','r6','r7','r8','r9','r10');
            DELETE FROM \(t) WHERE "externalId" IN ('r11','r12','r13','r14','r15','r16','r17','r18','r19','r20');
            COMMIT;
            """)
        try eventually("the ten deletes reached MongoDB", seconds: 60) { try f.count("waiter_ops") == 10 }
        try f.waitCaughtUp()
        for n in 2...10 { #expect(try f.document("waiter_ops", key: "r\(n)")?["table_no"] == .int64(Int64(n + 50))) }
        #expect(try f.document("waiter_ops", key: "r1")?["table_no"] == .int64(1), "the refused update left the document alone")
        let dead = try f.deadLetters().rows
        #expect(dead.count == 1 && dead.first?[1] == "r1" && dead.first?[3]?.contains("121") == true, "\(dead)")
    }

    /// A bulk whose insert lands while its delete fails (a failover answering every delete)
    /// is retried; meanwhile NocoDB deletes the record the insert created. The landed insert
    /// must be settled as the bridge's own write, so NocoDB's delete reaches MongoDB, and a
    /// resync afterwards must not take the document for an app's insert and bring the record
    /// back on both sides (found by the chaos run's failover fault).
    @Test func aBulkThatFailedAfterItsInsertLandedLeavesNoRecordToComeBack() throws {
        let own = try OwnSecantus()
        let f = try Self.fixture(own)
        let bridge = f.startToMongo()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (\"externalId\", table_no) VALUES ('old', 1)")
        try eventually("old crossed") { try f.document("waiter_ops", key: "old") != nil }
        try f.waitCaughtUp()
        try Self.failCommand(f, times: 10_000, ["failCommands": .array([.string("delete")]), "errorCode": .int32(189)])
        defer { Self.failpointOff(f) }
        try f.pg.execute(script: """
            BEGIN;
            INSERT INTO \(t) ("externalId", table_no) VALUES ('new', 2);
            DELETE FROM \(t) WHERE "externalId" = 'old';
            COMMIT;
            """)
        try eventually("the insert landed while the delete keeps failing") { try f.document("waiter_ops", key: "new") != nil }
        #expect(try f.document("waiter_ops", key: "old") != nil)
        try f.sql("DELETE FROM \(t) WHERE \"externalId\" = 'new'")
        Thread.sleep(forTimeInterval: 1)
        Self.failpointOff(f)
        try eventually("both deletes reached MongoDB", seconds: 30) { try f.count("waiter_ops") == 0 }
        try f.waitCaughtUp()
        var config = f.configuration
        config.tables = [config.tables[0]]
        _ = try Resync(configuration: config, options: ResyncOptions(), logger: testLogger()).run()
        #expect(try f.count("waiter_ops") == 0)
        #expect(try f.sql("SELECT count(*) FROM \(t)").rows[0][0] == "0", "a deleted record came back in NocoDB")
    }

    /// An app made the key in MongoDB first; the bridge's insert of NocoDB's new record meets
    /// the duplicate key. The record is decided by the conflict policy (no `$set` of the
    /// generated `_id`, which MongoDB refuses with code 66), alone and with a failover on the
    /// insert too.
    @Test(arguments: [false, true])
    func anInsertRacingAnAppsInsertIsDecidedByThePolicy(failover: Bool) throws {
        let own = try OwnSecantus()
        let f = try Self.fixture(own)
        // Only NocoDB → MongoDB runs, so the app's document is not synced before the race.
        let bridge = f.startToMongo()
        defer { bridge.shutdown() }
        try f.mongoWrite { (c: MongoClient) throws(MongoError) in
            try c.insertOne(["externalId": .string("dup"), "action": .string("app"), "table_no": .int64(7)], collection: "waiter_ops")
        }
        if failover {
            try Self.failCommand(f, times: 2, ["failCommands": .array([.string("insert")]), "errorCode": .int32(189)])
        }
        defer { Self.failpointOff(f) }
        try f.sql("INSERT INTO \(f.table("waiter_ops")) (\"externalId\", action, table_no) VALUES ('dup', 'nocodb', 8)")
        // source_priority (NocoDB 2 > MongoDB 1): NocoDB's version wins the conflict.
        try eventually("the policy's winner in MongoDB", seconds: 60) { try f.document("waiter_ops", key: "dup")?["action"] == .string("nocodb") }
        try f.waitCaughtUp()
        #expect(try f.count("waiter_ops") == 1)
        let dead = try f.deadLetters().rows
        #expect(dead.isEmpty, "\(dead)")
        #expect(try f.sql("SELECT winner, rule FROM nocobridge.conflicts").rows.map { "\($0[0] ?? ""):\($0[1] ?? "")" } == ["nocodb:source_priority"])
    }

    /// The driver retries an insert command whose first attempt ran but whose reply was lost
    /// (a MongoDB restart), and the server runs it again instead of answering from its record
    /// of the first attempt: SecantusDB keeps that record in memory only, and none for a batch
    /// with a refused document. The bridge's own insert then comes back as a duplicate key.
    /// Taken for an app's record and sent round again, its intent went with the round's save;
    /// when NocoDB deleted the row meanwhile, the document stayed in MongoDB with nothing
    /// agreed, and the change stream copied it back to NocoDB (a 100-fault chaos run found
    /// five such records). Here the first attempt's document is put in place with the `_id`
    /// the insert generates; the insert must count as the bridge's write, landed.
    @Test func aRetriedInsertThatMeetsItsOwnDocumentIsTakenAsLanded() throws {
        let f = try BridgeFixture()
        let t = f.table("waiter_ops")
        let d = try DecisionFixture(f, optimisticInserts: true, history: HistoryLog(days: 30))
        let connection = d.connection
        var sync = d.sync
        let id = Value.objectId(.generate())
        sync.newDocumentID = { id }
        try f.sql("INSERT INTO \(t) (\"externalId\", action) VALUES ('mine', 'seat'), ('app-first', 'seat')")
        let row = try #require(try sync.writer.rows(for: ["mine"], on: connection)["mine"])
        let state = try #require(try sync.planner.nocodbState(RecordSnapshot(key: "mine", row: row, changedAt: 1), changed: .nocodb))
        let landed = try #require(try sync.planner.presumedDocument(key: "mine", agreed: state, id: id))
        try f.mongoWrite { (c: MongoClient) throws(MongoError) in
            // The first attempt's document, and an app's record under the other key.
            _ = try c.bulkWrite([.insertOne(landed), .insertOne(["externalId": .string("app-first"), "action": .string("app")])],
                                collection: "waiter_ops")
        }
        let outcome = try connection.bridgeTransaction {
            try sync.synchronize(mode: .change(.nocodb), hints: [.init(key: "mine", changedAt: 1), .init(key: "app-first", changedAt: 1)],
                                 connection: connection, mongo: f.mongo)
        }
        let decisions = try f.sql("SELECT external_id, decision FROM nocobridge.history WHERE external_id = 'mine'").rows
        #expect(decisions.map { $0[1] } == ["write-mongo"], "\(decisions)")
        #expect(outcome.mongoWrites == 2 && outcome.conflicts == 1, "\(outcome)")
        #expect(try f.sql("SELECT deleted FROM nocobridge.agreed_state WHERE external_id = 'mine'").rows.map { $0[0] } == ["f"])
        #expect(try f.sql("SELECT count(*) FROM nocobridge.write_intents").rows[0][0] == "0")
        #expect(try f.count("waiter_ops") == 2)
    }

    /// MongoDB frozen for 30 s with every socket open, while a change of a record is in
    /// flight: NocoDB's next edit of that record must not wait on MongoDB, and every change made
    /// meanwhile arrives once MongoDB answers again.
    @Test func aFrozenMongoDBNeverMakesNocoDBWait() throws {
        let own = try OwnSecantus()
        let f = try Self.fixture(own)
        let bridge = f.startBridge()
        defer { bridge.shutdown() }
        let t = f.table("waiter_ops")
        try f.sql("INSERT INTO \(t) (\"externalId\", action) VALUES ('k', 'v0')")
        try eventually("synced") { try f.document("waiter_ops", key: "k")?["action"] == .string("v0") }
        own.freeze()
        defer { own.thaw() }
        let frozenAt = Date()
        try f.sql("UPDATE \(t) SET action = 'v1' WHERE \"externalId\" = 'k'")
        usleep(1_000_000)  // the bridge has taken the change and waits on MongoDB
        let edit = try PostgresConnection(url: f.postgresURL, applicationName: "nocodb-test")
        try edit.query("SET statement_timeout = 5000")
        let started = Date()
        try edit.query("UPDATE \(t) SET action = 'v2' WHERE \"externalId\" = 'k'")
        let waited = Date().timeIntervalSince(started)
        #expect(waited < 2, "NocoDB's edit waited \(waited) s on a frozen MongoDB")
        try edit.query("INSERT INTO \(t) (\"externalId\", action) VALUES ('k2', 'made while frozen')")
        usleep(UInt32(max(0, 30 - Date().timeIntervalSince(frozenAt)) * 1_000_000))
        own.thaw()
        try eventually("every change made meanwhile arrived", seconds: 90) {
            try f.document("waiter_ops", key: "k")?["action"] == .string("v2")
                && f.document("waiter_ops", key: "k2")?["action"] == .string("made while frozen")
        }
        try f.waitCaughtUp()
        #expect(try f.count("waiter_ops") == 2)
    }

    /// An app's write to a field lands between the bridge's decision and its write (the
    /// bridge's update held by the server for 1.5 s). The bridge's write must not overwrite it:
    /// it matches nothing, the record is decided again, and the policy (here MongoDB first)
    /// decides the conflict.
    @Test func anAppWriteInTheReadThenWriteWindowIsNeverOverwritten() throws {
        let own = try OwnSecantus()
        let f = try Self.fixture(own)
        let bridge = f.startBridge(policy: ConflictPolicy(rule: .sourcePriority, nocodbPriority: 1, mongoPriority: 2))
        defer { bridge.shutdown() }
        let t = f.table("chef_orders")
        try f.sql("INSERT INTO \(t) (\"externalId\", status, items) VALUES ('o-17', 'new', '[]')")
        try eventually("synced") { try f.document("chef_orders", key: "o-17")?["status"] == .string("new") }
        try eventually("agreed") { try f.sql("SELECT count(*) FROM nocobridge.agreed_state WHERE external_id = 'o-17'").rows[0][0] == "1" }
        try Self.failCommand(f, times: 1, ["failCommands": .array([.string("update")]), "blockConnection": .bool(true),
                                           "blockTimeMS": .int32(1500)])
        defer { Self.failpointOff(f) }
        try f.sql("UPDATE \(t) SET status = 'cooking' WHERE \"externalId\" = 'o-17'")
        usleep(500_000)  // the bridge's update is now held by the server
        let app = try MongoClientPool(url: own.url, database: f.mongoDatabase, instance: "app" + randomSuffix(4))
        try app.withClient { (c: MongoClient) throws(MongoError) in
            try c.updateOne(filter: ["externalId": .string("o-17")], update: ["$set": .document(["status": .string("served")])],
                            collection: "chef_orders")
        }
        try eventually("both sides hold the app's write", seconds: 30) {
            try f.document("chef_orders", key: "o-17")?["status"] == .string("served")
                && f.sql("SELECT status FROM \(t) WHERE \"externalId\" = 'o-17'").rows[0][0] == "served"
        }
        usleep(500_000)
        #expect(try f.document("chef_orders", key: "o-17")?["status"] == .string("served"))
        #expect(try f.sql("SELECT winner FROM nocobridge.conflicts WHERE external_id = 'o-17'").rows.map { $0[0] } == ["mongo"])
    }

    /// Failovers and a frozen server made the MongoDB marker write fail at two starts in a
    /// row: PostgreSQL's generation moved, MongoDB's did not. That is not a restore, and the
    /// third start must not say it is.
    @Test func markerWritesLostToFailoversAreNoRestore() throws {
        let own = try OwnSecantus()
        let f = try Self.fixture(own)
        let service = BridgeService(configuration: f.configuration, logger: testLogger())
        try Self.failCommand(f, times: 100, ["failCommands": .array([.string("update")]), "errorCode": .int32(189)])
        for _ in 0..<2 { #expect(throws: (any Error).self) { try service.preflight() } }
        Self.failpointOff(f)
        try service.preflight()
        try service.preflight()
        let generation = try f.sql("SELECT value FROM nocobridge.meta WHERE key = 'generation'").rows[0][0].flatMap { Int64($0) }
        let marker = try f.documents(GenerationMarker.collection).first?["value"]
        #expect(generation.map(Value.int64) == marker, "PostgreSQL \(String(describing: generation)), MongoDB \(String(describing: marker))")
    }

    /// A bridge started (by its service manager, after a crash) while MongoDB fails over
    /// waits it out rather than exiting with nobody syncing; a start that cannot succeed
    /// (a table that is not there) still ends at once with its reason.
    @Test func aStartDuringAFailoverWaitsItOut() throws {
        let own = try OwnSecantus()
        let f = try Self.fixture(own)
        // A real step-down ends the server monitor's awaitable hello at once; an injected
        // error does not, so the monitor is told to look again soon, as after a real one.
        var config = f.configuration
        config.mongoURL += (config.mongoURL.contains("?") ? "&" : "?") + "heartbeatFrequencyMS=500"
        let service = BridgeService(configuration: config, logger: testLogger())
        try Self.failCommand(f, times: 6, ["failCommands": .array([.string("find"), .string("insert"), .string("update")]),
                                           "errorCode": .int32(189)])
        defer { Self.failpointOff(f) }
        #expect(throws: MongoError.self) { try service.preflightWaitingForServers(maxAttempts: 1) }
        try service.preflightWaitingForServers()
        let generation = try f.sql("SELECT value FROM nocobridge.meta WHERE key = 'generation'").rows[0][0].flatMap { Int64($0) }
        let marker = try f.documents(GenerationMarker.collection).first?["value"]
        #expect(generation != nil && generation.map(Value.int64) == marker)

        var wrong = f.configuration
        wrong.tables = [TableMapping(schema: f.configuration.tables[0].schema, table: "no_such_table", collection: "no_such_table")]
        let missing = wrong
        let ended = DispatchSemaphore(value: 0)
        let outcome = Mutex<(any Error)?>(nil)
        Thread {
            do { try BridgeService(configuration: missing, logger: testLogger()).preflightWaitingForServers(maxAttempts: 100) } catch {
                outcome.withLock { $0 = error }
            }
            ended.signal()
        }.start()
        #expect(ended.wait(timeout: .now() + 30) == .success, "a missing table was retried")
        #expect(String(describing: outcome.withLock { $0 }).contains("no_such_table"))
    }

    /// A server the bridge cannot work with is refused at start in one line that says what
    /// to do, not met later as a stream that never opens: a real standalone server (no
    /// replica set: no change streams, no majority writes), and, from `hello` replies as
    /// those servers send them, a mongos and a server older than 6.0.
    @Test func aServerThatCannotServeTheBridgeIsRefusedInOneLine() throws {
        let own = try OwnSecantus(["--standalone"])
        let f = try BridgeFixture(servers: TestServers.fromEnvironment())
        var config = f.configuration
        config.mongoURL = "mongodb://127.0.0.1:\(own.port)/"
        let error = #expect(throws: ConfigurationError.self) {
            try BridgeService(configuration: config, logger: testLogger()).preflightWaitingForServers(maxAttempts: 1)
        }
        #expect(error?.setting == "MONGO_URL")
        #expect(error?.message.contains("standalone") == true && error?.message.contains("rs.initiate()") == true)
        #expect(error.map { !String(describing: $0).contains("\n") } == true)

        let hello: (Document) -> ServerInfo = { ServerInfo(buildInfo: ["version": .string("7.0.4")], hello: $0, sentAt: 0, receivedAt: 0) }
        #expect(ServerCheck.problem(hello(["setName": .string("rs0")])) == nil)
        #expect(ServerCheck.problem(hello(["msg": .string("isdbgrid")]))?.contains("mongos") == true)
        #expect(ServerCheck.problem(hello([:]))?.contains("standalone") == true)
        let old = ServerInfo(buildInfo: ["version": .string("5.0.24")], hello: ["setName": .string("rs0")], sentAt: 0, receivedAt: 0)
        #expect(ServerCheck.problem(old)?.contains("5.0.24 is too old") == true)
    }

    /// The clocks' difference is measured against PostgreSQL's and counts as large only when
    /// it is more than a second beyond what the round trips leave uncertain.
    @Test func clockSkewIsLargeOnlyBeyondItsUncertainty() throws {
        let shared = try TestServers.fromEnvironment()
        let f = try BridgeFixture(servers: shared)
        let measured = try #require(try ServerCheck.measureSkew(postgres: f.pg, mongo: f.mongo))
        // Both servers run on this host: one clock.
        #expect(!measured.isLarge && abs(measured.milliseconds) <= measured.uncertaintyMilliseconds + 50, "\(measured)")
        let far = ServerCheck.skew(mongo: ClockOffset(milliseconds: 1_600, uncertaintyMilliseconds: 300),
                                   postgres: ClockOffset(milliseconds: 0, uncertaintyMilliseconds: 200))
        #expect(far.isLarge)
        let unsure = ServerCheck.skew(mongo: ClockOffset(milliseconds: 1_400, uncertaintyMilliseconds: 300),
                                      postgres: ClockOffset(milliseconds: 0, uncertaintyMilliseconds: 200))
        #expect(!unsure.isLarge)
    }

    /// Every answer MongoDB gives for a position it can no longer resume from stops the
    /// bridge with the advice to resync (or resyncs, when asked to), never a reconnect loop:
    /// at the aggregate that resumes (280, 260, 9, the malformed-token codes) and at a getMore
    /// mid-stream (286: events were pruned under an open stream).
    @Test func everyLostPositionStopsTheBridgeWithTheAdviceToResync() throws {
        let own = try OwnSecantus()
        let f = try Self.fixture(own)
        for (command, code) in [("aggregate", 280), ("aggregate", 260), ("aggregate", 9), ("aggregate", 40647), ("aggregate", 40649),
                                ("aggregate", 50795), ("aggregate", 50854), ("aggregate", 286), ("getMore", 286), ("getMore", 136)] {
            try Self.failCommand(f, times: 50, ["failCommands": .array([.string(command)]), "errorCode": .int32(Int32(code)),
                                                "errorLabels": .array([])])
            var config = f.configuration
            config.direction = .toNocoDB
            let service = BridgeService(configuration: config, logger: testLogger())
            let stop = StopSignal()
            let outcome = Mutex<(any Error)?>(nil)
            let done = DispatchSemaphore(value: 0)
            Thread {
                do { try service.run(until: stop) } catch { outcome.withLock { $0 = error } }
                done.signal()
            }.start()
            let ended = done.wait(timeout: .now() + 30) == .success
            if !ended {
                stop.stop()
                done.wait()
            }
            Self.failpointOff(f)
            #expect(ended, "\(command) \(code): the bridge kept reconnecting")
            let error = outcome.withLock { $0 }
            #expect(error is MongoHistoryLost, "\(command) \(code): \(String(describing: error))")
            #expect(String(describing: error).contains("nocobridge resync"), "\(command) \(code)")
        }
    }

    /// A resume token the server pruned (its oplog keeps 50 entries here) stops `run` with
    /// the advice to resync; `--on-history-lost=resync` resyncs and streams on.
    @Test func aPrunedHistoryIsRecognisedAndResynced() throws {
        let own = try OwnSecantus(["--oplog-max-entries", "50"])
        let f = try Self.fixture(own)
        var env = f.environment
        env["MONGO_URL"] = own.url
        try f.mongoWrite { (c: MongoClient) throws(MongoError) in
            for i in 0..<300 { try c.insertOne(["externalId": .string("old-\(i)"), "table_no": .int64(Int64(i))], collection: "waiter_ops") }
            _ = try c.runCommand(["secantusAdmin.pruneOplog": .int32(1)], database: "admin")
        }
        let stopped = try runCLI(["run"], environment: env, timeoutSeconds: 60)
        #expect(stopped.status == 1 && stopped.output.contains("nocobridge resync"), "\(stopped.output)")
        let bridge = try BridgeProcess(arguments: ["run", "--on-history-lost=resync"], environment: env)
        defer { bridge.kill(SIGTERM); bridge.wait() }
        let t = f.table("waiter_ops")
        try eventually("resync brought every document over", seconds: 90) { try f.sql("SELECT count(*) FROM \(t)").rows[0][0] == "300" }
        try f.mongoWrite { (c: MongoClient) throws(MongoError) in
            try c.insertOne(["externalId": .string("later"), "table_no": .int64(1)], collection: "waiter_ops")
        }
        try eventually("streaming resumed") { try f.sql("SELECT count(*) FROM \(t) WHERE \"externalId\" = 'later'").rows[0][0] == "1" }
    }
}
