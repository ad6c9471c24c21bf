import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

/// `nocobridge dlq`: list, show, retry and drop dead letters. A retry re-decides the record
/// from both sides' current state through the normal conflict policy, so a row or document
/// fixed since goes through, and one still bad stays (with the new error and a retry count).
public struct DeadLetters: Sendable {
    public let configuration: BridgeConfiguration
    public let logger: Logger

    public init(configuration: BridgeConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public typealias Entry = DeadLetterStore.Entry

    public struct NotFound: Error, CustomStringConvertible {
        public let id: Int64
        public var description: String { "dead letter \(id) does not exist" }
    }

    public func list(limit: Int = 100) throws -> [Entry] {
        try DeadLetterStore.list(limit: limit, on: connect())
    }

    /// Entries with their payloads for the console, newest first.
    public static func entries(sources: [String]?, key: String?, limit: Int, on connection: PostgresConnection) throws -> [Entry] {
        try DeadLetterStore.entries(sources: sources, key: key, limit: limit, on: connection)
    }

    public func show(_ id: Int64) throws -> Entry {
        guard let entry = try DeadLetterStore.entries(id, on: connect()).first else { throw NotFound(id: id) }
        return entry
    }

    public func drop(_ id: Int64) throws {
        guard try DeadLetterStore.delete(id, on: connect()) else { throw NotFound(id: id) }
    }

    /// Drops several entries in one statement; returns how many existed.
    public func drop(_ ids: [Int64], on connection: PostgresConnection) throws -> Int {
        try DeadLetterStore.delete(ids, on: connection)
    }

    /// Retries one entry (or all when `id` is nil); returns (resolved, still failing).
    public func retry(_ id: Int64?) throws -> (resolved: Int, failing: Int) {
        let connection = try connect()
        if let id, try DeadLetterStore.entries(id, on: connection).isEmpty { throw NotFound(id: id) }
        return try retry(id.map { [$0] }, on: connection)
    }

    /// Retries the given entries (every entry when nil) on the caller's connection, each in
    /// its own transaction and decided as its kind says (`DeadLetterKind.retryMode`); ids that
    /// no longer exist are skipped.
    public func retry(_ ids: [Int64]?, on connection: PostgresConnection) throws -> (resolved: Int, failing: Int) {
        let entries = try DeadLetterStore.entries(ids, on: connection)
        guard !entries.isEmpty else { return (0, 0) }
        let mongo = try MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase,
                                        instance: configuration.instanceID)
        let journal = WriteJournal(url: configuration.postgresURL, instanceID: configuration.instanceID)
        var synchronizers: [String: RecordSynchronizer] = [:]
        for mapping in configuration.tables {
            let shape = try TableCatalog.shape(of: mapping, on: connection, columnKinds: configuration.columnKinds,
                                               fieldNames: configuration.fieldNames)
            let sync = RecordSynchronizer(shape: shape, policy: configuration.policy, capture: configuration.capture, journal: journal,
                                          history: configuration.history)
            synchronizers[mapping.qualifiedName] = sync
            // Dead letters recorded before sources were named by table.
            synchronizers[configuration.mongoDatabase + "." + mapping.collection] = sync
        }
        var resolved = 0, failing = 0
        for entry in entries {
            guard let sync = synchronizers[entry.source], let key = entry.key, !key.isEmpty, key != "-" else {
                failing += 1
                logger.warning("dead letter cannot be retried (no key, or its table is not synced)", metadata: ["dlq.id": "\(entry.id)"])
                continue
            }
            let kind = DeadLetterKind(rawValue: entry.direction) ?? .toMongo
            let failed = try connection.bridgeTransaction {
                let outcome = try sync.synchronize(mode: kind.retryMode, hints: [.init(key: key, changedAt: wallClockMilliseconds())],
                                                   connection: connection, mongo: mongo)
                if let again = outcome.rejections.first {
                    try DeadLetterStore.retriedAndFailed(entry.id, again: again, on: connection)
                    return true
                }
                _ = try DeadLetterStore.delete(entry.id, on: connection)
                return false
            }
            if failed { failing += 1 } else { resolved += 1 }
        }
        return (resolved, failing)
    }

    private func connect() throws -> PostgresConnection {
        try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-dlq")
    }
}
