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
    /// The leases this instance holds now.
    public let leases = LeaseBoard()

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
        BridgeHealth.collect(configuration: configuration, probe: probe, toMongo: toMongoStatistics, toNocoDB: toNocoDBStatistics,
                             held: leases.units)
    }

    /// `preflight`, waiting out what a restart or a failover causes (a server not reachable
    /// yet, a primary stepping down): a bridge started by its service manager while MongoDB
    /// elects a new primary must not exit and leave both sides unsynced until someone
    /// notices. Each attempt that fails for such a reason is one warning line, for at most
    /// `maxWait` (an election takes seconds; a server still unreachable after that is more
    /// likely a wrong URL, said in one line with exit 1, and the service manager's restart
    /// policy takes over). What retrying cannot fix (schema not installed, a `mongos`, a
    /// missing table) ends the start at once.
    public func preflightWaitingForServers(maxAttempts: Int = .max, maxWait: Duration = .seconds(30)) throws {
        var backoff = Backoff(baseMilliseconds: configuration.reconnectBaseMilliseconds,
                              maxMilliseconds: configuration.reconnectMaxMilliseconds)
        let deadline = ContinuousClock.now + maxWait
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try preflight()
            } catch where Self.isTransient(error) && attempt < maxAttempts && ContinuousClock.now < deadline {
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
        // Instances starting together would otherwise interleave their marker writes into
        // something that looks like a restore.
        let generationLock = "hashtextextended('nocobridge.generation', 0)"
        try connection.query("SELECT pg_advisory_lock(\(generationLock))")
        defer { _ = try? connection.query("SELECT pg_advisory_unlock(\(generationLock))") }
        try GenerationMarker().checkAndAdvance(connection: connection, mongo: pool)
    }

    /// Once NocoDB's sessions are named, only they turn a copied `externalId` into a new
    /// record: if NocoDB connects under another name, its duplicate row, paste and CSV import
    /// of copied keys fail with a unique-key error. Said at start, where an operator looks.
    private func warnIfNocoDBSessionsUnseen(on connection: PostgresConnection) throws {
        guard let sessions = try MetaStore.value(MetaStore.nocodbSessions, on: connection), !sessions.isEmpty else {
            if try MetaStore.value(MetaStore.duplicateKeys, on: connection) == "error" {
                logger.warning("SYNC_DUPLICATE_KEYS=error with no NocoDB session named: NocoDB's own duplicate row, paste and CSV import of copied keys fail with a unique-key error too (name NocoDB's sessions with SYNC_NOCODB_SESSIONS and run install)")
            }
            return
        }
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

    /// The bridge until `stop`, on the calling thread: the lease keeper ticks here and starts
    /// each unit's flows (every flow on a thread of its own) when it takes the unit's lease,
    /// and stops them when it gives the lease back or loses it. Losing the lease session (a
    /// PostgreSQL restart, a network cut) stops every unit's work at once, so no other
    /// instance ever works on a table beside this one.
    public func run(until stop: StopSignal) throws {
        let mongo = try MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase,
                                        instance: configuration.instanceID)
        let environment = FlowEnvironment(configuration: configuration, mongo: mongo,
                                          journal: WriteJournal(url: configuration.postgresURL, instanceID: configuration.instanceID),
                                          logger: logger, stop: stop, toMongo: toMongoStatistics, toNocoDB: toNocoDBStatistics)
        let chores = ThreadGroup(stop: stop)
        let housekeeping = Housekeeping(environment: environment)
        chores.start("nocobridge-housekeeping") { try housekeeping.run() }
        let configuration = configuration
        let keeper = LeaseKeeper(configuration: configuration, logger: logger, board: leases, units: { connection in
            try Self.units(of: configuration, on: connection)
        }, start: { unit, fence, unitStop in
            var unitEnvironment = environment
            unitEnvironment.stop = unitStop
            unitEnvironment.fence = fence
            // A journal (writer) per holding: once the unit's flows end, for whatever reason,
            // its session and so its owner lock go with them, and the intents a lost lease
            // left behind (written to MongoDB, the commit refused by the fence) belong to a
            // dead writer, settled by whichever instance holds the unit next, this one included.
            unitEnvironment.journal = WriteJournal(url: configuration.postgresURL, instanceID: configuration.instanceID)
            return Self.startFlows(unit: unit, environment: unitEnvironment)
        })
        defer {
            stop.stop()
            try? chores.join()
        }
        try keeper.run(stop: stop)
    }

    /// The unit prefix of logical capture: one slot has one consumer, so its holder runs every table.
    static let logicalUnitPrefix = "logical:"

    /// A unit per table (both directions move together), or with logical capture the slot.
    static func units(of configuration: BridgeConfiguration, on connection: PostgresConnection) throws -> [String] {
        if configuration.capture == .logical {
            return [logicalUnitPrefix + (try LogicalSlot.name(on: connection))]
        }
        return configuration.tables.map(\.qualifiedName)
    }

    /// One unit's flows, one per table and direction on its own thread (plus, for the logical
    /// unit, the slot's reader); a flow that fails for good stops the unit's others.
    static func startFlows(unit: String, environment: FlowEnvironment) -> ThreadGroup {
        let configuration = environment.configuration
        let flows = ThreadGroup(stop: environment.stop)
        let logical = unit.hasPrefix(logicalUnitPrefix)
        let tables = logical ? configuration.tables : configuration.tables.filter { $0.qualifiedName == unit }
        let backlog = LogicalBacklog(tables: tables.map(\.qualifiedName))
        if logical && configuration.direction.includesToMongo {
            let reader = LogicalSlotReader(environment: environment, backlog: backlog)
            flows.start("nocobridge-logical") { try reader.run() }
        }
        for mapping in tables {
            if configuration.direction.includesToMongo {
                if logical {
                    let flow = LogicalTableFlow(mapping: mapping, environment: environment, backlog: backlog)
                    flows.start("nocobridge-to-mongo-\(mapping.table)") { try flow.run() }
                } else {
                    let flow = ChangelogFlow(mapping: mapping, environment: environment)
                    flows.start("nocobridge-to-mongo-\(mapping.table)") { try flow.run() }
                }
            }
            if configuration.direction.includesToNocoDB {
                let flow = ChangeStreamFlow(mapping: mapping, environment: environment)
                flows.start("nocobridge-to-nocodb-\(mapping.table)") { try flow.run() }
            }
        }
        return flows
    }
}
