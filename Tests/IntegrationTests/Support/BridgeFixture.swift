import CoreMetrics
import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore

/// One test's world: its own PostgreSQL database holding a NocoDB-shaped base schema, its
/// own MongoDB database, and the bridge installed between them. Tests run in parallel
/// without sharing any state.
final class BridgeFixture: @unchecked Sendable {
    let servers: TestServers
    let databaseName: String
    let postgresURL: String
    let schema: String
    let mongoDatabase: String
    let mongo: MongoClientPool
    /// The bridge's configuration: it connects as `role`, a login role holding only what
    /// `nocobridge.grant_bridge_role` grants, never as a superuser or the tables' owner.
    var configuration: BridgeConfiguration
    /// The same, connected as the owner (install, uninstall).
    var ownerConfiguration: BridgeConfiguration
    let role: String
    /// Owned by the test's thread.
    let pg: PostgresConnection
    /// Login roles a test made (`loginRole`), dropped with the database.
    private var extraRoles: [String] = []

    static let tables = ["waiter_ops", "chef_orders", "cashier_txns", "type_zoo"]
    /// The synced tables: `tables`, then the copies of waiter_ops (`waiter_ops_2`, …).
    let tableNames: [String]

    /// The bridge connects as a limited role in both capture modes; with `.logical` the role
    /// also has the REPLICATION attribute (streaming a slot needs it).
    init(columnKinds: [String: ColumnKind] = ["type_zoo.tags": .multiSelect, "type_zoo.json_text": .json],
         install: Bool = true, batchSize: Int = 1000, servers: TestServers? = nil,
         capture: BridgeConfiguration.Capture = .triggers, extraTables: Int = 0) throws {
        self.servers = try servers ?? TestServers.fromEnvironment()
        let suffix = randomSuffix()
        databaseName = "nbtest_" + suffix
        schema = "p" + randomSuffix(14)
        mongoDatabase = "nbtest_" + suffix
        let admin = try PostgresConnection(url: self.servers.adminURL)
        try admin.query("CREATE DATABASE \(databaseName)")
        postgresURL = Self.url(self.servers.adminURL, database: databaseName)
        pg = try PostgresConnection(url: postgresURL, applicationName: "nocodb-test")
        try pg.execute(script: NocoSchema.ddl(schema: schema))
        let copies = extraTables > 0 ? (2...(extraTables + 1)).map { "waiter_ops_\($0)" } : []
        for copy in copies {
            try pg.query("CREATE TABLE \(PostgresConnection.quoteIdentifier(schema)).\(PostgresConnection.quoteIdentifier(copy)) (LIKE \(PostgresConnection.quoteIdentifier(schema)).\"waiter_ops\" INCLUDING ALL)")
        }
        tableNames = Self.tables + copies
        mongo = try MongoClientPool(url: self.servers.mongoURL, database: mongoDatabase)
        let baseSchema = schema
        configuration = BridgeConfiguration(
            postgresURL: postgresURL, mongoURL: self.servers.mongoURL, mongoDatabase: mongoDatabase,
            tables: tableNames.map { TableMapping(schema: baseSchema, table: $0, collection: $0) })
        configuration.columnKinds = columnKinds
        configuration.batchSize = batchSize
        configuration.reconnectBaseMilliseconds = 20
        configuration.reconnectMaxMilliseconds = 500
        configuration.capture = capture
        ownerConfiguration = configuration
        role = "nb_role_" + suffix
        try admin.query("CREATE ROLE \(role) LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        if capture == .logical { try admin.query("ALTER ROLE \(role) REPLICATION") }
        configuration.postgresURL = Self.url(self.servers.adminURL, database: databaseName, user: role)
        if install {
            try Installer(configuration: ownerConfiguration, logger: testLogger()).install(grantTo: role, replicaIdentityFull: true)
        }
    }

    deinit {
        try? mongo.withClient { (client: MongoClient) throws(MongoError) in
            _ = try client.runCommand(["dropDatabase": .int32(1)])
        }
        if let admin = try? PostgresConnection(url: servers.adminURL) {
            // A logical slot (cluster-wide) would keep the database from being dropped.
            _ = try? admin.query("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL", [databaseName])
            _ = try? admin.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1", [databaseName])
            _ = try? admin.query("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname LIKE $1", ["nocobridge_" + databaseName + "_%"])
            _ = try? admin.query("DROP DATABASE IF EXISTS \(databaseName) WITH (FORCE)")
            _ = try? admin.query("DROP ROLE IF EXISTS \(role)")
            for extra in extraRoles { _ = try? admin.query("DROP ROLE IF EXISTS \(extra)") }
        }
    }

    /// A login role of the test's own that may read and write the base's tables, as the role
    /// NocoDB logs in as would: for sessions told apart by their login role rather than by
    /// their application name. Returns its name and a URL connecting as it.
    func loginRole() throws -> (name: String, url: String) {
        let name = "nb_login_" + randomSuffix()
        let admin = try PostgresConnection(url: servers.adminURL)
        try admin.query("CREATE ROLE \(name) LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        extraRoles.append(name)
        let s = PostgresConnection.quoteIdentifier(schema)
        try pg.execute(script: """
            GRANT USAGE ON SCHEMA \(s) TO \(name);
            GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \(s) TO \(name);
            GRANT USAGE ON ALL SEQUENCES IN SCHEMA \(s) TO \(name);
            """)
        return (name, Self.url(servers.adminURL, database: databaseName, user: name))
    }

    static func url(_ base: String, database: String, user: String? = nil) -> String {
        PostgresConnection.url(base, database: database, user: user)
    }

    func table(_ name: String) -> String {
        PostgresConnection.quoteIdentifier(schema) + "." + PostgresConnection.quoteIdentifier(name)
    }

    /// Runs SQL as NocoDB would (own connection, autocommit).
    @discardableResult
    func sql(_ text: String, _ params: [String?] = []) throws -> PostgresRows {
        try pg.query(text, params)
    }

    func documents(_ collection: String, filter: Document = Document()) throws -> [Document] {
        try mongo.withClient { (client: MongoClient) throws(MongoError) in
            try client.find(filter, options: ["sort": .document(["externalId": .int32(1)])], collection: collection)
        }
    }

    func document(_ collection: String, key: String) throws -> Document? {
        try documents(collection, filter: ["externalId": .string(key)]).first
    }

    func count(_ collection: String) throws -> Int {
        try mongo.withClient { (client: MongoClient) throws(MongoError) in try client.count(collection: collection) }
    }

    func backlog() throws -> Int {
        Int(try sql("SELECT count(*) FROM nocobridge.changelog").rows[0][0] ?? "0") ?? 0
    }

    /// Waits until every NocoDB change made so far was applied: an empty changelog with
    /// triggers; with logical capture, the slot confirmed past the WAL written until now.
    func waitCaughtUp(seconds: Double = 60) throws {
        switch configuration.capture {
        case .triggers:
            try eventually("changelog drained", seconds: seconds) { try backlog() == 0 }
        case .logical:
            guard let target = try sql("SELECT pg_current_wal_lsn()::text").rows[0][0] else { throw SetupError("no WAL position") }
            try eventually("slot confirmed past \(target)", seconds: seconds) {
                try sql("SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE database = current_database()", [target]).rows.first?[0] == "t"
            }
        }
    }

    func deadLetters() throws -> PostgresRows {
        try sql("SELECT source_name, key, field, error, op FROM nocobridge.dead_letters ORDER BY id")
    }

    /// Starts the NocoDB → MongoDB pipeline in this process.
    func startToMongo() -> RunningPipeline {
        RunningPipeline(configuration: configuration, mongo: mongo)
    }

    /// Starts both directions in this process.
    func startBridge(policy: ConflictPolicy = ConflictPolicy(), metrics: any MetricsFactory = NOOPMetricsHandler.instance) -> RunningBridge {
        var config = configuration
        config.policy = policy
        return RunningBridge(configuration: config, mongo: mongo, metrics: metrics)
    }

    func mongoWrite(_ body: (MongoClient) throws(MongoError) -> Void) throws {
        try mongo.withClient { (client: MongoClient) throws(MongoError) in try body(client) }
    }

    /// Watches a collection so a test can count the writes that reach it.
    func watch(_ collection: String) throws -> ChangeStream {
        var options = ChangeStreamOptions()
        options.maxAwaitMilliseconds = 50
        options.fullDocumentUpdateLookup = false
        return try mongo.watch(collection: collection, options: options)
    }

    /// `xmin` of a row: it changes with every write to the row.
    func xmin(_ table: String, key: String) throws -> String? {
        try sql("SELECT xmin::text FROM \(self.table(table)) WHERE \"externalId\" = $1", [key]).rows.first?[0]
    }

    /// Environment for running the `nocobridge` binary against this fixture.
    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["PG_URL"] = configuration.postgresURL
        env["MONGO_URL"] = servers.mongoURL
        env["MONGO_DB"] = mongoDatabase
        env["SYNC_PG_SCHEMA"] = schema
        env["SYNC_TABLES"] = tableNames.joined(separator: ",")
        env["SYNC_COLUMN_TYPES"] = "type_zoo.tags=multiselect,type_zoo.json_text=json"
        env["LOG_LEVEL"] = "warning"
        env["STATUS_ADDR"] = "127.0.0.1:0"
        env["SYNC_CAPTURE"] = configuration.capture.rawValue
        return env
    }
}

/// The bridge's NocoDB → MongoDB direction, as `nocobridge run --direction to-mongo` runs it,
/// stopped and joined by `shutdown()`.
final class RunningPipeline: Sendable {
    private let bridge: RunningBridge
    var statistics: PipelineStatistics { bridge.toMongo }

    init(configuration: BridgeConfiguration, mongo: MongoClientPool) {
        var config = configuration
        config.direction = .toMongo
        bridge = RunningBridge(configuration: config, mongo: mongo)
    }

    func shutdown() { bridge.shutdown() }
}

/// The bridge as `nocobridge run` runs it (both directions, every table's flows), on its own
/// thread, stopped and joined by `shutdown()`.
final class RunningBridge: Sendable {
    let stop = StopSignal()
    let service: BridgeService
    var toMongo: PipelineStatistics { service.toMongoStatistics }
    var toNocoDB: PipelineStatistics { service.toNocoDBStatistics }
    private let done = DispatchSemaphore(value: 0)
    /// What the bridge logged last, for a test's failure message.
    let log = LogTail()

    init(configuration: BridgeConfiguration, mongo: MongoClientPool, metrics: any MetricsFactory = NOOPMetricsHandler.instance) {
        let service = BridgeService(configuration: configuration, logger: log.logger(), metrics: metrics)
        self.service = service
        let stop = stop, done = done
        Thread {
            do { try service.run(until: stop) } catch { testLogger().error("bridge stopped: \(error)") }
            done.signal()
        }.start()
    }

    func shutdown() {
        stop.stop()
        done.wait()
    }
}

/// Counts events on a change stream until none arrived for `quietMilliseconds`.
func countEvents(_ stream: ChangeStream, quietMilliseconds: Int = 600) throws -> [Document] {
    var events: [Document] = []
    var lastEvent = Date()
    while Date().timeIntervalSince(lastEvent) * 1000 < Double(quietMilliseconds) {
        if let e = try stream.next() { events.append(e); lastEvent = Date() }
    }
    return events
}

/// A `nocobridge` child process.
final class BridgeProcess: @unchecked Sendable {
    let process = Process()
    let output: URL

    init(arguments: [String] = ["run"], environment: [String: String]) throws {
        process.executableURL = URL(fileURLWithPath: try nocobridgeBinary())
        process.arguments = arguments
        process.environment = environment
        output = FileManager.default.temporaryDirectory.appendingPathComponent("nocobridge-\(randomSuffix()).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    func kill(_ signal: Int32) {
        Foundation.kill(process.processIdentifier, signal)
    }

    @discardableResult
    func wait() -> Int32 {
        process.waitUntilExit()
        return process.terminationStatus
    }

    var log: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

    deinit {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        if ProcessInfo.processInfo.environment["NB_KEEP_LOGS"] == nil { try? FileManager.default.removeItem(at: output) }
    }
}

/// Runs the CLI to completion and returns its exit code and combined output.
func runCLI(_ arguments: [String], environment: [String: String], timeoutSeconds: Double = 60) throws -> (status: Int32, output: String) {
    let p = try BridgeProcess(arguments: arguments, environment: environment)
    let deadline = Date().addingTimeInterval(timeoutSeconds)
    while p.process.isRunning && Date() < deadline { usleep(20_000) }
    if p.process.isRunning {
        p.kill(SIGKILL)
        p.wait()
        throw SetupError("nocobridge \(arguments.joined(separator: " ")) did not exit within \(timeoutSeconds) s; output: \(p.log)")
    }
    return (p.wait(), p.log)
}
