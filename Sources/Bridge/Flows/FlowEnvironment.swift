import Logging
import Mongo
import SyncCore

/// What every flow of one leadership term shares: the settings, the MongoDB pool, the write
/// journal (one PostgreSQL session for all the process's intents), the statistics behind
/// `/status` and `/metrics`, and the signal that ends the term.
struct FlowEnvironment: Sendable {
    let configuration: BridgeConfiguration
    let mongo: MongoClientPool
    let journal: WriteJournal
    let logger: Logger
    let stop: StopSignal
    let toMongo: PipelineStatistics
    let toNocoDB: PipelineStatistics

    /// A synchronizer for one table as the flows decide its records.
    func synchronizer(_ shape: TableShape, optimisticInserts: Bool = false) -> RecordSynchronizer {
        RecordSynchronizer(shape: shape, policy: configuration.policy, capture: configuration.capture,
                           optimisticInserts: optimisticInserts, journal: journal, history: configuration.history)
    }

    func logger(_ flow: String, table: TableMapping) -> Logger {
        var logger = logger
        logger[metadataKey: "flow"] = "\(flow)"
        logger[metadataKey: "table"] = "\(table.qualifiedName)"
        return logger
    }
}
