import Postgres

/// `nocobridge.table_holds`: collections whose changes wait while MongoDB is restored under
/// the bridge (see `ChangeStreamFlow`).
enum TableHoldStore {
    static func hold(_ collection: String, reason: String, on connection: PostgresConnection) throws(PostgresError) {
        try connection.query(cached: """
            INSERT INTO nocobridge.table_holds (collection, reason) VALUES ($1, $2)
            ON CONFLICT (collection) DO UPDATE SET reason = EXCLUDED.reason
            """, [collection, reason])
    }

    static func release(_ collection: String, on connection: PostgresConnection) throws(PostgresError) {
        try connection.query(cached: "DELETE FROM nocobridge.table_holds WHERE collection = $1", [collection])
    }

    /// The hold's reason, or nil when the collection is not held.
    static func reason(_ collection: String, on connection: PostgresConnection) throws(PostgresError) -> String? {
        try connection.query(cached: "SELECT reason FROM nocobridge.table_holds WHERE collection = $1", [collection]).named.first?["reason"]
    }
}

/// A NocoDB → MongoDB flow's view of its table's hold, read at most once a second: while
/// MongoDB is being restored under the bridge the flow leaves NocoDB's changes waiting
/// (the changelog or the slot's backlog keeps them) rather than write into a half-restored
/// collection.
struct HoldWatch {
    let collection: String
    private var held = false
    private var lastCheck: ContinuousClock.Instant?

    init(collection: String) {
        self.collection = collection
    }

    mutating func isHeld(on connection: PostgresConnection) throws -> Bool {
        if let lastCheck, ContinuousClock.now - lastCheck < .seconds(1) { return held }
        lastCheck = .now
        held = try TableHoldStore.reason(collection, on: connection) != nil
        return held
    }
}
