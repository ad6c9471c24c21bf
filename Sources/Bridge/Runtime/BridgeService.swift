import Foundation
import CoreMetrics
import Logging
import Mongo
import Postgres
import ServiceLifecycle
import Synchronization
import SyncCore

/// The running bridge as one `Service`: each direction's pipeline on its own thread,
/// stopped together on graceful shutdown (SIGTERM/SIGINT through the `ServiceGroup`).
public struct BridgeService: Service {
    public let configuration: BridgeConfiguration
    public let logger: Logger
    public let toMongoStatistics: PipelineStatistics
    public let toNocoDBStatistics: PipelineStatistics
    /// Long-lived connections for `/status`, `/readyz` and `/metrics`.
    public let probe: HealthProbe

    /// - Parameter metrics: where the pipelines report (the Prometheus registry behind
    ///   `/metrics` in `run`); no-op by default.
    public init(configuration: BridgeConfiguration, logger: Logger, metrics: any MetricsFactory = NOOPMetricsHandler.instance) {
        self.configuration = configuration
        self.logger = logger
        toMongoStatistics = PipelineStatistics(direction: "to-mongo", metrics: metrics)
        toNocoDBStatistics = PipelineStatistics(direction: "to-nocodb", metrics: metrics)
        probe = HealthProbe(configuration: configuration)
    }

    /// The bridge's health now (blocking: call from a thread, not the cooperative pool).
    public func health() -> BridgeHealth {
        BridgeHealth.collect(configuration: configuration, probe: probe, toMongo: toMongoStatistics, toNocoDB: toNocoDBStatistics)
    }

    /// `preflight`, waiting out what a restart or a failover causes (a server not reachable
    /// yet, a primary stepping down): a bridge started by its service manager while MongoDB
    /// elects a new primary must not exit and leave both sides unsynced until someone
    /// notices. Each attempt that fails for such a reason is one warning line; what retrying
    /// cannot fix (schema not installed, a mongos, a missing table) ends the start at once.
    public func preflightWaitingForServers(maxAttempts: Int = .max) throws {
        var backoff = Backoff(baseMilliseconds: configuration.reconnectBaseMilliseconds,
                              maxMilliseconds: configuration.reconnectMaxMilliseconds)
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try preflight()
            } catch where Self.isTransient(error) && attempt < maxAttempts {
                let delay = backoff.next()
                logger.warning("start: a server is not available yet; retrying",
                               metadata: ["error": "\(error)", "retry.in_ms": "\(delay)", "attempt": "\(attempt)"])
                usleep(useconds_t(delay) * 1000)
            }
        }
    }

    /// A connection that failed or was lost, or a MongoDB node that is not (or no longer)
    /// primary: the next attempt may succeed.
    static func isTransient(_ error: any Error) -> Bool {
        switch error {
        case let e as MongoError: e.kind == .connection || e.hasLabel("RetryableWriteError") || e.hasLabel("TransientTransactionError")
        case let e as PostgresError: e.isConnectionProblem
        default: false
        }
    }

    /// Checks at start what would otherwise fail in a retry loop: both servers reachable,
    /// every table present with the common fields and attached.
    public func preflight() throws {
        let connection = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-preflight")
        guard try SyncedTablesStore.isInstalled(on: connection) else {
            throw ConfigurationError(setting: "PG_URL", message: "the nocobridge schema is not installed in this database; run `nocobridge install`")
        }
        for mapping in configuration.tables {
            _ = try TableCatalog.shape(of: mapping, on: connection, columnKinds: configuration.columnKinds, fieldNames: configuration.fieldNames)
            guard let capture = try SyncedTablesStore.capture(schema: mapping.schema, table: mapping.table, on: connection) else {
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
        let pool = try MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase, instance: configuration.instanceID)
        let info = try pool.serverInfo()
        if let problem = ServerCheck.problem(info) { throw ConfigurationError(setting: "MONGO_URL", message: problem) }
        if let skew = try ServerCheck.measureSkew(postgres: connection, mongo: pool), skew.isLarge {
            logger.warning("MongoDB's and PostgreSQL's clocks are more than a second apart; last_write_wins and tombstones compare their times (synchronise both hosts' clocks)",
                           metadata: ["clock.skew_ms": "\(skew.milliseconds)", "clock.uncertainty_ms": "\(skew.uncertaintyMilliseconds)"])
        }
        try GenerationMarker().checkAndAdvance(connection: connection, mongo: pool)
    }

    /// Once NocoDB's sessions are named, only they turn a copied `externalId` into a new
    /// record: if NocoDB connects under another name, its duplicate row, paste and CSV import
    /// of copied keys fail with a unique-key error. Said at start, where an operator looks.
    private func warnIfNocoDBSessionsUnseen(on connection: PostgresConnection) throws {
        guard let sessions = try MetaStore.value(MetaStore.nocodbSessions, on: connection), !sessions.isEmpty else { return }
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
        let shutdown = StopSignal()
        try await withGracefulShutdownHandler {
            try await BlockingExecutor.run(name: "nocobridge", stop: shutdown) { try self.run(until: shutdown) }
        } onGracefulShutdown: {
            shutdown.stop()
        }
    }

    /// The bridge until `stop`, on the calling thread (every flow on a thread of its own):
    /// one leadership term per iteration. Losing the lock's session (a PostgreSQL restart, a
    /// network cut) stops the term's work at once, so a standby can never work beside it, and
    /// this instance queues for the lock again.
    public func run(until stop: StopSignal) throws {
        let mongo = try MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase,
                                        instance: configuration.instanceID)
        while !stop.isStopped {
            let term = stop.child()
            let leader = LeaderLock(postgresURL: configuration.postgresURL, mongoDatabase: configuration.mongoDatabase, logger: logger,
                                    instanceID: configuration.instanceID)
            guard leader.waitForLock(stop: term) else {
                leader.release()
                break
            }
            let lost = Mutex(false)
            let watching = ThreadGroup(stop: term)
            watching.start("nocobridge-leader") { lost.withLock { $0 = leader.watchSession(stop: term) } }
            do {
                try runFlows(mongo: mongo, stop: term)
            } catch {
                term.stop()
                try? watching.join()
                leader.release()
                throw error
            }
            term.stop()
            try? watching.join()
            leader.release()
            if lost.withLock({ $0 }) && !stop.isStopped {
                logger.warning("leader lock lost; waiting to take it again")
                continue
            }
            break
        }
    }

    /// One flow per table and direction, each on its own thread (plus, with logical capture,
    /// the slot's reader); a flow that fails for good stops the others.
    private func runFlows(mongo: MongoClientPool, stop: StopSignal) throws {
        let environment = FlowEnvironment(configuration: configuration, mongo: mongo,
                                          journal: WriteJournal(url: configuration.postgresURL, instanceID: configuration.instanceID),
                                          logger: logger, stop: stop, toMongo: toMongoStatistics, toNocoDB: toNocoDBStatistics)
        let flows = ThreadGroup(stop: stop)
        let backlog = LogicalBacklog(tables: configuration.tables.map(\.qualifiedName))
        if configuration.direction.includesToMongo && configuration.capture == .logical {
            let reader = LogicalSlotReader(environment: environment, backlog: backlog)
            flows.start("nocobridge-logical") { try reader.run() }
        }
        for mapping in configuration.tables {
            if configuration.direction.includesToMongo {
                switch configuration.capture {
                case .triggers:
                    let flow = ChangelogFlow(mapping: mapping, environment: environment)
                    flows.start("nocobridge-to-mongo-\(mapping.table)") { try flow.run() }
                case .logical:
                    let flow = LogicalTableFlow(mapping: mapping, environment: environment, backlog: backlog)
                    flows.start("nocobridge-to-mongo-\(mapping.table)") { try flow.run() }
                }
            }
            if configuration.direction.includesToNocoDB {
                let flow = ChangeStreamFlow(mapping: mapping, environment: environment)
                flows.start("nocobridge-to-nocodb-\(mapping.table)") { try flow.run() }
            }
        }
        let housekeeping = Housekeeping(environment: environment)
        flows.start("nocobridge-housekeeping") { try housekeeping.run() }
        try flows.join()
    }
}
