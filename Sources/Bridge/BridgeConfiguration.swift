import SyncCore

/// Everything `nocobridge run` needs, as plain values with defaults (read from the
/// environment and flags by the CLI).
public struct BridgeConfiguration: Sendable {
    public enum Direction: String, Sendable, CaseIterable {
        case both
        case toMongo = "to-mongo"
        case toNocoDB = "to-nocodb"

        public var includesToMongo: Bool { self != .toNocoDB }
        public var includesToNocoDB: Bool { self != .toMongo }
    }

    /// libpq URL of NocoDB's PostgreSQL database.
    public var postgresURL: String
    /// MongoDB URL; change streams need a replica set (`?replicaSet=`).
    public var mongoURL: String
    public var mongoDatabase: String
    public var tables: [TableMapping]
    public var direction: Direction = .both
    /// How records edited on both sides since they last agreed are decided.
    public var policy = ConflictPolicy()
    /// Ask change streams for pre-images (`fullDocumentBeforeChange: whenAvailable`), so a
    /// delete finds its `externalId` even for documents the key map never saw. Needs
    /// `changeStreamPreAndPostImages` enabled on the collections.
    public var usePreImages = false
    /// Changes read and written per batch; larger batches raise throughput, smaller ones
    /// bound memory and the work redone after a crash.
    public var batchSize: Int = 1000
    /// Column kinds that the PostgreSQL type does not tell (MultiSelect, JSON kept in text),
    /// keyed by `table.column`.
    public var columnKinds: [String: ColumnKind] = [:]
    /// MongoDB field name per `table.column` where it differs from the column name: NocoDB
    /// field titles found through its meta API (a title "Table No" is column "Table_No").
    public var fieldNames: [String: String] = [:]
    /// How NocoDB's changes are captured (`SYNC_CAPTURE`).
    public var capture: Capture = .triggers

    public enum Capture: String, Sendable, CaseIterable {
        /// Row triggers writing a changelog in NocoDB's transaction (the default).
        case triggers
        /// A logical replication slot (`pgoutput`): no triggers on NocoDB's tables.
        case logical
    }
    /// NocoDB's own database sessions (`SYNC_NOCODB_SESSIONS`: application names, or
    /// `role:NAME`), recorded by `install`. An insert from one of them that copies a used
    /// `externalId` (duplicate row, paste, CSV import) becomes a new record with a fresh key;
    /// nil leaves what is installed as it is.
    public var nocodbSessions: String?
    /// What a plain INSERT of a used `externalId` from any other client does
    /// (`SYNC_DUPLICATE_KEYS`), recorded by `install`; nil leaves what is installed.
    public var duplicateKeys: DuplicateKeys?

    public enum DuplicateKeys: String, Sendable, CaseIterable {
        /// The unique index refuses it, as it would for any unique key (23505).
        case error
        /// It becomes a new record with a fresh key.
        case newRecord = "new-record"
    }

    /// Logical capture keeps a key trigger (and the unique index) on the synced tables so
    /// upserts and NocoDB's duplicate row behave as with trigger capture (`install
    /// --no-key-trigger` leaves no trigger at all).
    public var logicalKeyTrigger = true

    /// Asked for current field names whenever table shapes are (re)built; nil without NocoDB.
    public var fieldMetadata: (any FieldMetadataSource)?
    /// How often the pipelines look for columns added, renamed or removed.
    public var schemaCheckInterval: Duration = .seconds(1)
    /// How long to wait for a notification before sweeping all tables anyway; a safety net
    /// for lost notifications, not the delivery path.
    public var idleSweepMilliseconds: Int32 = 1000
    /// Delay before reconnecting after a connection failure, doubled up to the maximum.
    public var reconnectBaseMilliseconds: Int = 100
    public var reconnectMaxMilliseconds: Int = 5000
    /// How often the restore-detection generation advances while running.
    public var generationInterval: Duration = .seconds(300)
    /// This process among the bridge's writers: names its write intents and its MongoDB
    /// connections (`appName`), so a successor can tell when its last writes have ended.
    public var instanceID = WriteJournal.newInstanceID()
    /// Days of record history kept (`SYNC_HISTORY_DAYS`); 0 writes none.
    public var historyDays = 30

    /// What the synchronizers record history with (nil when `historyDays` is 0).
    public var history: HistoryLog? { historyDays > 0 ? HistoryLog(days: historyDays) : nil }

    /// How long a collection replaced under the running bridge (dropped, renamed: a restore
    /// beginning) must see no change before its table is reconciled and syncing goes on.
    public var restoreQuietPeriod: Duration = .seconds(5)
    /// How often a running pipeline looks for write intents left by a writer that died
    /// (a killed `resync`, say); it always looks when it (re)connects.
    public var intentRecoveryInterval: Duration = .seconds(10)
    /// How long a table's lease lasts without renewal (`SYNC_LEASE_SECONDS`): how soon the
    /// others take over from an instance that froze or was cut off (a dead one is noticed at
    /// the next tick), and the longest a pause may last without costing the leases.
    public var leaseDuration: Duration = .seconds(10)
    /// How often leases are renewed and rebalanced (`SYNC_LEASE_TICK_MS`); at most a fifth of
    /// the lease, so a few late renewals do not lose it.
    public var leaseTick: Duration {
        get { min(leaseTickSetting, leaseDuration / 5) }
        set { leaseTickSetting = newValue }
    }
    private var leaseTickSetting: Duration = .milliseconds(1000)


    public init(postgresURL: String, mongoURL: String, mongoDatabase: String, tables: [TableMapping]) {
        self.postgresURL = postgresURL
        self.mongoURL = mongoURL
        self.mongoDatabase = mongoDatabase
        self.tables = tables
    }

    /// Parses `SYNC_COLUMN_TYPES`: `table.column=multiselect|json,…`.
    public static func parseColumnKinds(_ text: String) throws(ConfigurationError) -> [String: ColumnKind] {
        var out: [String: ColumnKind] = [:]
        for entry in text.split(separator: ",") {
            let parts = entry.split(separator: "=").map { String($0).trimmed }
            guard parts.count == 2, parts[0].contains(".") else {
                throw ConfigurationError(setting: "SYNC_COLUMN_TYPES", message: "entry \"\(entry)\" is not table.column=kind")
            }
            let kind: ColumnKind
            switch parts[1].lowercased() {
            case "multiselect", "multi_select": kind = .multiSelect
            case "json": kind = .json
            default:
                throw ConfigurationError(setting: "SYNC_COLUMN_TYPES", message: "unknown kind \"\(parts[1])\" (multiselect or json)")
            }
            out[parts[0]] = kind
        }
        return out
    }
}

public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public let setting: String
    public let message: String

    public init(setting: String, message: String) {
        self.setting = setting
        self.message = message
    }

    public var description: String { "\(setting): \(message)" }
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
