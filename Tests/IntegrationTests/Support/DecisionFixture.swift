import Bridge
import Postgres
import SyncCore

/// A table's synchronizer as a flow builds it, with a write journal of its own and an owner
/// connection, for tests that drive decisions and the journal without a running bridge.
struct DecisionFixture {
    let connection: PostgresConnection
    let journal: WriteJournal
    let sync: RecordSynchronizer

    init(_ f: BridgeFixture, table: String = "waiter_ops", optimisticInserts: Bool = false, history: HistoryLog? = nil) throws {
        connection = try PostgresConnection(url: f.ownerConfiguration.postgresURL)
        guard let mapping = f.configuration.tables.first(where: { $0.table == table }) else { throw SetupError("no mapping for \(table)") }
        let shape = try TableCatalog.shape(of: mapping, on: connection, columnKinds: f.configuration.columnKinds, fieldNames: [:])
        journal = WriteJournal(url: f.ownerConfiguration.postgresURL, instanceID: f.configuration.instanceID)
        sync = RecordSynchronizer(shape: shape, policy: ConflictPolicy(), optimisticInserts: optimisticInserts, journal: journal,
                                  history: history)
    }
}
