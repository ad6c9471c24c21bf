import Foundation
import Mongo
import Postgres
import SyncCore

/// The NocoDB-shaped base every measurement runs on: the demo schema with the bridge
/// installed by its own CLI, plus the floor relay's copies of two tables (same columns, same
/// indexes, the bridge's included, on both sides), and the observers' triggers.
struct BenchBase {
    static let database = "bench_bridge"
    static let schema = "pnocobridgedemo"
    static let bridgeTables = ["waiter_ops", "chef_orders", "cashier_txns"]
    /// Single-row changes (latency) go through this table…
    static let probeTable = "waiter_ops"
    /// …and bulk edits through this one.
    static let bulkTable = "cashier_txns"
    /// The floor relay's copies of `probeTable` and `bulkTable`.
    static let floorProbeTable = "floor_ops"
    static let floorBulkTable = "floor_cashier"
    /// Every collection the MongoDB observer watches (the same in every measurement).
    static let observedCollections = [probeTable, bulkTable, floorProbeTable, floorBulkTable]

    /// PostgreSQL URL of the benchmark database, and of the one it was created from.
    let url: String
    let adminURL: String
    let mongoURL: String
    /// The benchmark's own MongoDB writes and reads (the observer and the relay have their own pools).
    let mongo: MongoClientPool
    let cli: NocoBridgeCLI

    static func quoted(_ table: String) -> String {
        PostgresConnection.quoteIdentifier(schema) + "." + PostgresConnection.quoteIdentifier(table)
    }

    /// A NocoDB-side connection for the benchmark's own writes (`bench-source`, never counted
    /// by the observer triggers because its values carry no NocoDB-bound stamp).
    func connect(_ applicationName: String = "bench-source") throws -> PostgresConnection {
        try PostgresConnection(url: url, applicationName: applicationName)
    }

    static func create(settings: Settings) throws -> BenchBase {
        let admin = try PostgresConnection(url: settings.pgURL, applicationName: "bench-admin")
        // A slot left on the database by an interrupted run would block DROP DATABASE.
        try admin.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", [database])
        try admin.query("DROP DATABASE IF EXISTS \(database) WITH (FORCE)")
        try admin.query("CREATE DATABASE \(database)")
        let url = PostgresConnection.url(settings.pgURL, database: database)
        // The benchmark's own bulk statements (a 20,000-document updateMany takes ~17 s on
        // SecantusDB) outlast the 10 s socket timeout the bridge's pools default to.
        let mongo = try MongoClientPool(url: settings.mongoURL, database: database, instance: "bench-source", socketTimeoutMS: 300_000)
        try mongo.withClient { (c: MongoClient) throws(MongoError) in _ = try c.runCommand(["dropDatabase": .int32(1)]) }
        let pg = try PostgresConnection(url: url, applicationName: "bench-admin")
        try pg.execute(script: try String(contentsOfFile: "Scripts/demo-schema.sql", encoding: .utf8))

        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SYNC_") && !$0.key.hasPrefix("NOCODB_") && !$0.key.hasPrefix("STATUS_") }
        env["PG_URL"] = url
        env["MONGO_URL"] = settings.mongoURL
        env["MONGO_DB"] = database
        env["SYNC_PG_SCHEMA"] = schema
        env["SYNC_TABLES"] = bridgeTables.joined(separator: ",")
        env["LOG_LEVEL"] = settings.bridgeLogLevel
        let cli = NocoBridgeCLI(binary: settings.bridgeBinary, environment: env, logPath: settings.bridgeLogPath)
        try cli.run(["install"], capture: .triggers)

        let base = BenchBase(url: url, adminURL: settings.pgURL, mongoURL: settings.mongoURL, mongo: mongo, cli: cli)
        // Created after install, so LIKE … INCLUDING ALL copies the bridge's unique key index.
        for (floor, original) in [(floorProbeTable, probeTable), (floorBulkTable, bulkTable)] {
            try pg.query("CREATE TABLE \(quoted(floor)) (LIKE \(quoted(original)) INCLUDING ALL)")
            try base.copyIndexes(from: original, to: floor)
        }
        try pg.execute(script: ObserverSQL.install(schema: schema, stampedTables: [probeTable, floorProbeTable], markedTable: bulkTable))
        return base
    }

    /// Removes the benchmark database on both servers (left in place when a run fails, for a look).
    func drop() throws {
        try mongo.withClient { (c: MongoClient) throws(MongoError) in _ = try c.runCommand(["dropDatabase": .int32(1)]) }
        let admin = try PostgresConnection(url: adminURL, applicationName: "bench-admin")
        try admin.query("DROP DATABASE IF EXISTS \(Self.database) WITH (FORCE)")
    }

    /// Creates on `target` the indexes the bridge created on `source` (listIndexes), so the
    /// floor writes into a collection indexed exactly as the bridge's, whatever the bridge
    /// defines. Fails when there is no `externalId` index: the floor would then be unfair.
    func copyIndexes(from source: String, to target: String) throws {
        try mongo.withClient { (c: MongoClient) throws in
            let reply = try c.runCommand(["listIndexes": .string(source)])
            guard case .document(let cursor)? = reply["cursor"], case .array(let batch)? = cursor["firstBatch"] else {
                throw BenchError("listIndexes \(source): unexpected reply")
            }
            var specs: [Value] = []
            for case .document(var index) in batch where index["name"] != .string("_id_") {
                index["v"] = nil
                index["ns"] = nil
                specs.append(.document(index))
            }
            let keyed = specs.contains { spec in
                if case .document(let d) = spec, case .document(let key)? = d["key"] { return key[RowMapper.keyField] != nil }
                return false
            }
            guard keyed else { throw BenchError("\(source) has no \(RowMapper.keyField) index after nocobridge install") }
            _ = try c.runCommand(["createIndexes": .string(target), "indexes": .array(specs)])
        }
    }
}
