import CoreMetrics
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
    public let toMongoStatistics: PipelineStatistics
    public let toNocoDBStatistics: PipelineStatistics

    /// - Parameter metrics: where the pipelines report (the Prometheus registry behind
    ///   `/metrics` in `run`); no-op by default.
    public init(configuration: BridgeConfiguration, logger: Logger, metrics: any MetricsFactory = NOOPMetricsHandler.instance) {
        self.configuration = configuration
        self.logger = logger
        toMongoStatistics = PipelineStatistics(direction: "to-mongo", metrics: metrics)
        toNocoDBStatistics = PipelineStatistics(direction: "to-nocodb", metrics: metrics)
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
            _ = try TableCatalog.shape(of: mapping, on: connection, columnKinds: configuration.columnKinds, fieldNames: configuration.fieldNames)
            let attached = try connection.query(
                "SELECT capture FROM nocobridge.synced_tables WHERE schema_name = $1 AND table_name = $2",
                [mapping.schema, mapping.table])
            guard let capture = attached.rows.first?.first.flatMap({ $0 }) else {
                throw ConfigurationError(setting: "SYNC_TABLES", message: "table \(mapping.qualifiedName) is not installed for capture; run `nocobridge install`")
            }
            guard capture == configuration.capture.rawValue else {
                throw ConfigurationError(setting: "SYNC_CAPTURE", message: "table \(mapping.qualifiedName) is installed for \(capture) capture; run `nocobridge install` with SYNC_CAPTURE=\(configuration.capture.rawValue) to switch")
            }
        }
        if configuration.capture == .logical {
            try LogicalSlot.checkPrivileges(on: connection)
            try LogicalSlot.check(try LogicalSlot.name(on: connection), on: connection)
        }
        try warnIfNocoDBSessionsUnseen(on: connection)
        let pool = try MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase)
        try pool.ping()
        try GenerationMarker().checkAndAdvance(connection: connection, mongo: pool)
    }

    /// Once NocoDB's sessions are named, only they turn a copied `externalId` into a new
    /// record: if NocoDB connects under another name, its duplicate row, paste and CSV import
    /// of copied keys fail with a unique-key error. Said at start, where an operator looks.
    private func warnIfNocoDBSessionsUnseen(on connection: PostgresConnection) throws {
        guard let sessions = try connection.query("SELECT value FROM nocobridge.meta WHERE key = 'nocodb_sessions'").rows.first?[0],
              !sessions.isEmpty else { return }
        let seen = try connection.query("""
            SELECT count(*) FROM pg_stat_activity a, unnest(string_to_array($1, ',')) AS e(x)
            WHERE a.datname = current_database()
              AND CASE WHEN btrim(x) LIKE 'role:%' THEN a.usename = substr(btrim(x), 6) ELSE a.application_name = btrim(x) END
            """, [sessions]).rows.first?[0]
        if seen == "0" {
            logger.warning("no NocoDB session is connected under the configured names; if NocoDB uses another name, its duplicate row, paste and CSV import of copied keys fail with a unique-key error (set PGAPPNAME on NocoDB, or SYNC_NOCODB_SESSIONS and run install)",
                           metadata: ["nocodb.sessions": "\(sessions)"])
        }
    }

    public func run() async throws {
        let mongo = try MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase,
                                        appName: configuration.mongoAppName)
        let shutdown = StopSignal()
        try await withGracefulShutdownHandler {
            // One leadership term per iteration: losing the lock's session (a PostgreSQL
            // restart, a network cut) stops this term's work at once, so a standby can never
            // work beside it, and this instance queues for the lock again.
            while !shutdown.isStopped {
                let term = shutdown.child()
                let leader = LeaderLock(postgresURL: configuration.postgresURL, mongoDatabase: configuration.mongoDatabase, logger: logger,
                                        instanceID: configuration.instanceID)
                guard await leader.acquire(stop: term) else {
                    leader.release()
                    break
                }
                do {
                    try await runPipelines(mongo: mongo, stop: term)
                } catch {
                    term.stop()
                    leader.release()
                    throw error
                }
                term.stop()
                leader.release()
                if leader.wasLost && !shutdown.isStopped {
                    logger.warning("leader lock lost; waiting to take it again")
                    continue
                }
                break
            }
        } onGracefulShutdown: {
            shutdown.stop()
        }
    }

    private func runPipelines(mongo: MongoClientPool, stop: StopSignal) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            /// Each pipeline on its own thread; one that fails for good stops the others.
            func start(_ name: String, _ body: @escaping @Sendable () throws -> Void) {
                group.addTask {
                    do {
                        try await DedicatedThread.run(name: name, stop: stop, body)
                    } catch {
                        stop.stop()
                        throw error
                    }
                }
            }
            if configuration.direction.includesToMongo {
                switch configuration.capture {
                case .triggers:
                    let pipeline = ToMongoPipeline(configuration: configuration, mongo: mongo, stop: stop,
                                                   logger: logger, statistics: toMongoStatistics)
                    start("nocobridge-to-mongo") { pipeline.run() }
                case .logical:
                    let pipeline = LogicalCapturePipeline(configuration: configuration, mongo: mongo, stop: stop,
                                                          logger: logger, statistics: toMongoStatistics)
                    start("nocobridge-to-mongo") { try pipeline.run() }
                }
            }
            if configuration.direction.includesToNocoDB {
                let pipeline = ToNocoDBPipeline(configuration: configuration, mongo: mongo, stop: stop,
                                                logger: logger, statistics: toNocoDBStatistics)
                start("nocobridge-to-nocodb") { try pipeline.run() }
            }
            try await group.waitForAll()
        }
    }
}
