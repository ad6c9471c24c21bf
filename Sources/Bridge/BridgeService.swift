import Logging
import Mongo
import Postgres
import ServiceLifecycle
import SyncCore

/// The running bridge as one `Service`: each direction's pipeline on its own thread,
/// stopped together on graceful shutdown (SIGTERM/SIGINT through the `ServiceGroup`).
public struct BridgeService: Service {
    public let configuration: BridgeConfiguration
    public let logger: Logger
    public let toMongoStatistics = PipelineStatistics()
    public let toNocoDBStatistics = PipelineStatistics()

    public init(configuration: BridgeConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Checks at start what would otherwise fail in a retry loop: both servers reachable,
    /// every table present with the common fields and attached.
    public func preflight() throws {
        let connection = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-preflight")
        let installed = try connection.query("SELECT to_regclass('nocobridge.changelog') IS NOT NULL")
        guard installed.rows.first?.first == "t" else {
            throw ConfigurationError(setting: "PG_URL", message: "the nocobridge schema is not installed in this database; run `nocobridge install`")
        }
        for mapping in configuration.tables {
            _ = try TableCatalog.shape(of: mapping, on: connection, columnKinds: configuration.columnKinds)
            let attached = try connection.query(
                "SELECT 1 FROM nocobridge.synced_tables WHERE schema_name = $1 AND table_name = $2",
                [mapping.schema, mapping.table])
            guard !attached.rows.isEmpty else {
                throw ConfigurationError(setting: "SYNC_TABLES", message: "table \(mapping.qualifiedName) has no capture triggers; run `nocobridge install`")
            }
        }
        let pool = try MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase)
        try pool.ping()
        try GenerationMarker().checkAndAdvance(connection: connection, mongo: pool)
    }

    public func run() async throws {
        let mongo = try MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase)
        let stop = StopSignal()
        let leader = LeaderLock(postgresURL: configuration.postgresURL, mongoDatabase: configuration.mongoDatabase, logger: logger)
        try await withGracefulShutdownHandler {
            guard await leader.acquire(stop: stop) else {
                leader.release()
                return
            }
            defer { leader.release() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                if configuration.direction.includesToMongo {
                    let pipeline = ToMongoPipeline(configuration: configuration, mongo: mongo, stop: stop,
                                                   logger: logger, statistics: toMongoStatistics)
                    group.addTask {
                        try await DedicatedThread.run(name: "nocobridge-to-mongo", stop: stop) { pipeline.run() }
                    }
                }
                if configuration.direction.includesToNocoDB {
                    let pipeline = ToNocoDBPipeline(configuration: configuration, mongo: mongo, stop: stop,
                                                    logger: logger, statistics: toNocoDBStatistics)
                    group.addTask {
                        do {
                            try await DedicatedThread.run(name: "nocobridge-to-nocodb", stop: stop) { try pipeline.run() }
                        } catch {
                            stop.stop()
                            throw error
                        }
                    }
                }
                try await group.waitForAll()
            }
            if leader.wasLost { throw LeaderLock.Lost() }
        } onGracefulShutdown: {
            stop.stop()
        }
    }
}
