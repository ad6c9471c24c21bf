import Logging
import Mongo
import SyncCore

/// What the flows of one lease share: the settings, the MongoDB pool, the write journal (one
/// PostgreSQL session for the holding's intents, closed with its last flow), the statistics
/// behind `/status` and `/metrics`, the signal that ends the holding, and its fence.
struct FlowEnvironment: Sendable {
    let configuration: BridgeConfiguration
    let mongo: MongoClientPool
    var journal: WriteJournal
    let logger: Logger
    var stop: StopSignal
    let toMongo: PipelineStatistics
    let toNocoDB: PipelineStatistics
    /// The lease the flows work under; nil only where no lease is held (tests of one flow).
    var fence: Fence? = nil

    /// A synchronizer for one table as the flows decide its records.
    func synchronizer(_ shape: TableShape, optimisticInserts: Bool = false) -> RecordSynchronizer {
        RecordSynchronizer(shape: shape, policy: configuration.policy, capture: configuration.capture,
                           optimisticInserts: optimisticInserts, journal: journal, history: configuration.history, fence: fence)
    }

    /// A flow's PostgreSQL application name, `<flow>/<instance>/<table>` (PostgreSQL keeps 63
    /// bytes): an operator, or a test, sees in `pg_stat_activity` which instance works on
    /// which table.
    func applicationName(_ flow: String, table: TableMapping) -> String {
        flow + "/" + configuration.instanceID + "/" + table.qualifiedName
    }

    func logger(_ flow: String, table: TableMapping) -> Logger {
        var logger = logger
        logger[metadataKey: "flow"] = "\(flow)"
        logger[metadataKey: "table"] = "\(table.qualifiedName)"
        return logger
    }
}
