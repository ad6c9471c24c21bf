import Logging
import Mongo
import Postgres
import SyncCore

/// Installs and removes what the bridge needs on both sides.
public struct Installer: Sendable {
    public let configuration: BridgeConfiguration
    public let logger: Logger

    /// The MongoDB indexes the bridge creates on each collection: a partial unique index
    /// (uniqueness among string keys) and a plain one for lookups, because a query planner
    /// may not use a partial index for a plain equality match (SecantusDB never does; mongod
    /// only when the query repeats the partial filter).
    public static let mongoIndexName = "externalId_unique_nocobridge"
    public static let mongoLookupIndexName = "externalId_lookup_nocobridge"

    public init(configuration: BridgeConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// The slot first, then the triggers come off: a change in between is in both the
    /// changelog (drained when the logical pipeline starts) and the slot, and applying a record
    /// twice changes nothing. Nothing falls in a gap.
    private func installLogical(on connection: PostgresConnection, replicaIdentityFull: Bool) throws {
        let slot = try LogicalSlot.name(on: connection)
        let level = try connection.query("SHOW wal_level").rows.first?.first.flatMap { $0 }
        guard level == "logical" else {
            throw ConfigurationError(setting: "SYNC_CAPTURE", message: "logical capture needs wal_level = logical on the PostgreSQL server (it is \(level ?? "unknown"); change it and restart PostgreSQL)")
        }
        for mapping in configuration.tables {
            try connection.query("SELECT nocobridge.publish($1, $2, $3)", [mapping.schema, mapping.table, replicaIdentityFull ? "true" : "false"])
        }
        if try LogicalSlot.walStatus(slot, on: connection) == nil {
            try connection.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot])
            logger.info("created the logical replication slot", metadata: ["slot": "\(slot)"])
        }
        try retireOrigins(slot: slot, on: connection)
        for mapping in configuration.tables {
            try connection.query("SELECT nocobridge.attach_logical($1, $2, $3)",
                                 [mapping.schema, mapping.table, configuration.logicalKeyTrigger ? "true" : "false"])
            let identity = try connection.query("SELECT relreplident::text FROM pg_class WHERE oid = to_regclass($1)",
                                                [PostgresConnection.quoteIdentifier(mapping.schema) + "." + PostgresConnection.quoteIdentifier(mapping.table)])
            if identity.rows.first?.first.flatMap({ $0 }) != "f" {
                logger.warning("REPLICA IDENTITY is not FULL: a hard delete will reach the bridge without its externalId and become a dead letter (soft deletes are fine); rerun install with --replica-identity-full", metadata: ["table": "\(mapping.qualifiedName)"])
            }
            logger.info("registered for logical capture", metadata: ["table": "\(mapping.qualifiedName)"])
        }
    }

    /// Creates the `nocobridge` schema (idempotent), attaches every synced table, and creates
    /// the MongoDB indexes. Checks every table first so a typo fails before anything changes.
    /// - Parameter replicaIdentityFull: logical capture only: set REPLICA IDENTITY FULL on the
    ///   tables, so an update's and a delete's old row (and its `externalId`) reach the bridge.
    /// - Returns: true when it retired a logical replication slot (switching back to
    ///   triggers): changes the slot had not delivered are then found by a resync, which the
    ///   caller must run.
    @discardableResult
    public func install(createMongoIndexes: Bool = true, grantTo role: String? = nil, replicaIdentityFull: Bool = false) throws -> Bool {
        var retiredSlot = false
        let connection = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-install")
        for mapping in configuration.tables {
            _ = try TableCatalog.shape(of: mapping, on: connection, columnKinds: configuration.columnKinds, fieldNames: configuration.fieldNames)
        }
        try connection.execute(script: InstallSQL.install)
        try recordKeySettings(on: connection)
        switch configuration.capture {
        case .triggers:
            for mapping in configuration.tables {
                try connection.query("SELECT nocobridge.attach($1, $2)", [mapping.schema, mapping.table])
                logger.info("attached capture triggers", metadata: ["table": "\(mapping.qualifiedName)"])
            }
            retiredSlot = try retireLogicalCapture(on: connection)
        case .logical:
            try installLogical(on: connection, replicaIdentityFull: replicaIdentityFull)
        }
        if let role {
            try connection.query("SELECT nocobridge.grant_bridge_role($1)", [role])
            logger.info("granted the bridge's privileges", metadata: ["role": "\(role)"])
        }
        if createMongoIndexes {
            // An index build on a large collection outlasts the pools' 10 s socket timeout.
            let pool = try MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase,
                                           socketTimeoutMS: MongoClientPool.libmongocDefaultSocketTimeoutMS)
            for mapping in configuration.tables {
                try Self.createKeyIndex(collection: mapping.collection, pool: pool)
                logger.info("ensured MongoDB index", metadata: ["collection": "\(mapping.collection)", "index": "\(Self.mongoIndexName)"])
            }
            try recordStartingPosition(pool: pool, connection: connection)
        }
        return retiredSlot
    }

    /// Stores how inserts of a used `externalId` are treated, where the key trigger reads it
    /// (`nocobridge.rekeys_used_key`); an empty value clears a setting.
    private func recordKeySettings(on connection: PostgresConnection) throws {
        let settings: [(String, String?)] = [(MetaStore.nocodbSessions, configuration.nocodbSessions),
                                             (MetaStore.duplicateKeys, configuration.duplicateKeys?.rawValue)]
        for (key, value) in settings {
            guard let value else { continue }
            if value.isEmpty {
                try MetaStore.remove(key, on: connection)
            } else {
                try MetaStore.set(key, to: value, on: connection)
            }
        }
    }

    /// Back to triggers (they are attached by now): the slot, its publication and origins go,
    /// so no WAL is held for a reader that will not come. Returns whether there was a slot.
    private func retireLogicalCapture(on connection: PostgresConnection) throws -> Bool {
        let slot = try LogicalSlot.name(on: connection)
        let existed = try LogicalSlot.walStatus(slot, on: connection) != nil
        if existed {
            try connection.query("SELECT pg_drop_replication_slot($1)", [slot])
            logger.warning("retired the logical replication slot; run a resync for changes it had not delivered", metadata: ["slot": "\(slot)"])
        }
        try connection.query("DROP PUBLICATION IF EXISTS nocobridge")
        try retireOrigins(slot: slot, on: connection)
        return existed
    }

    /// Replication origins older versions created to mark their writes; the logical decoding
    /// message does that now.
    private func retireOrigins(slot: String, on connection: PostgresConnection) throws {
        try connection.query("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname = ANY($1::text[])",
                             [PostgresConnection.arrayLiteral(LogicalSlot.retiredOrigins.map { slot + $0 })])
    }

    /// Stores the change streams' current position for each collection that has none, so
    /// MongoDB changes made between `install` and the first `run` are delivered too.
    func recordStartingPosition(pool: MongoClientPool, connection: PostgresConnection) throws {
        let database = configuration.mongoDatabase
        var recorded: [String] = []
        for mapping in configuration.tables {
            guard try ChangeStreamFlow.storedPosition(database: database, collection: mapping.collection, on: connection) == nil else { continue }
            let stream = ChangeStreamFlow.streamName(database: database, collection: mapping.collection)
            guard let token = try ChangeStreamFlow.startingToken(collection: mapping.collection, pool: pool) else {
                logger.warning("MongoDB gave no change stream position; the first run starts from its own start time",
                               metadata: ["collection": "\(database).\(mapping.collection)"])
                continue
            }
            try PositionStore.save(stream, position: token, on: connection)
            recorded.append(stream)
        }
        if !recorded.isEmpty { logger.info("recorded MongoDB change stream starting positions", metadata: ["streams": "\(recorded)"]) }
    }

    /// A unique index over documents whose `externalId` is a string only (partial), so an app
    /// inserting documents without a key is never refused (a plain unique index would index
    /// every missing key as null and reject the second such insert).
    public static func createKeyIndex(collection: String, pool: MongoClientPool) throws(MongoError) {
        try pool.withClient { (client: MongoClient) throws(MongoError) in
            _ = try client.runCommand([
                "createIndexes": .string(collection),
                "indexes": .array([.document([
                    "key": .document([RowMapper.keyField: .int32(1)]),
                    "name": .string(mongoIndexName),
                    "unique": .bool(true),
                    "partialFilterExpression": .document([RowMapper.keyField: .document(["$type": .string("string")])]),
                ]), .document([
                    "key": .document([RowMapper.keyField: .int32(1)]),
                    "name": .string(mongoLookupIndexName),
                ])]),
            ])
        }
    }

    /// Whether the collection has the bridge's unique key index (listIndexes).
    public static func hasKeyIndex(collection: String, pool: MongoClientPool) throws(MongoError) -> Bool {
        try pool.withClient { (client: MongoClient) throws(MongoError) -> Bool in
            let reply: Document
            do {
                reply = try client.runCommand(["listIndexes": .string(collection)])
            } catch let error as MongoError {
                if error.code == 26 { return false }  // NamespaceNotFound: no collection yet.
                throw error
            } catch {
                throw MongoError(kind: .server, message: "\(error)")
            }
            guard case .document(let cursor)? = reply["cursor"], case .array(let batch)? = cursor["firstBatch"] else { return false }
            return batch.contains { if case .document(let index) = $0 { index["name"] == .string(mongoIndexName) } else { false } }
        }
    }

    /// Removes the triggers, functions, indexes and the `nocobridge` schema, and the MongoDB
    /// indexes the bridge created; nothing else.
    public func uninstall(dropMongoIndexes: Bool = true) throws {
        let connection = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-uninstall")
        try connection.execute(script: InstallSQL.uninstall)
        guard dropMongoIndexes else { return }
        let pool = try MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase, instance: configuration.instanceID)
        for mapping in configuration.tables {
            for index in [Self.mongoIndexName, Self.mongoLookupIndexName] {
                try pool.withClient { (client: MongoClient) throws(MongoError) in
                    try client.dropIndex(index, collection: mapping.collection)
                }
            }
        }
    }
}
