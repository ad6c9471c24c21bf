import Foundation
import Mongo
import Postgres
import SyncCore

/// Per-table sync state read straight from both databases, so it works with the bridge down.
public struct StatusReport: Sendable, Codable {
    public struct TableStatus: Sendable, Codable {
        public let table: String
        public let collection: String
        public let nocodbRows: Int
        public let mongoDocuments: Int
        public let backlog: Int
        public let deadLetters: Int
        public let captureErrors: Int
    }

    public let tables: [TableStatus]

    public static func collect(configuration: BridgeConfiguration) throws -> StatusReport {
        let connection = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-status")
        let pool = try MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase, instance: configuration.instanceID)
        var tables: [TableStatus] = []
        for mapping in configuration.tables {
            let shape = try TableCatalog.shape(of: mapping, on: connection)
            let qualified = PostgresConnection.quoteIdentifier(mapping.schema) + "." + PostgresConnection.quoteIdentifier(mapping.table)
            let live = shape.hasSoftDelete ? " WHERE NOT coalesce(\"__nc_deleted\", false)" : ""
            let rows = try connection.query("SELECT count(*) FROM \(qualified)\(live)")
            let state = try SyncedTablesStore.counts(mapping, legacySource: configuration.mongoDatabase + "." + mapping.collection,
                                                     on: connection)
            let docs = try pool.withClient { (client: MongoClient) throws(MongoError) in
                try client.count(collection: mapping.collection)
            }
            tables.append(TableStatus(
                table: mapping.qualifiedName, collection: mapping.collection,
                nocodbRows: Int(rows.rows[0][0] ?? "0") ?? 0, mongoDocuments: docs,
                backlog: state.backlog, deadLetters: state.deadLetters, captureErrors: state.captureErrors))
        }
        return StatusReport(tables: tables)
    }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (String(data: (try? encoder.encode(self)) ?? Data(), encoding: .utf8) ?? "{}") + "\n"
    }

    public func table() -> String {
        var lines = ["TABLE                          COLLECTION      NOCODB   MONGO  BACKLOG  DEAD  CAPTURE_ERR"]
        for t in tables {
            lines.append([t.table.padded(30), t.collection.padded(15), String(t.nocodbRows).leftPadded(6),
                          String(t.mongoDocuments).leftPadded(7), String(t.backlog).leftPadded(8),
                          String(t.deadLetters).leftPadded(5), String(t.captureErrors).leftPadded(12)].joined(separator: " "))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension String {
    func padded(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
