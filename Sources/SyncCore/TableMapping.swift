/// Which NocoDB table syncs with which MongoDB collection.
public struct TableMapping: Sendable, Hashable, CustomStringConvertible {
    public let schema: String
    public let table: String
    public let collection: String

    public init(schema: String, table: String, collection: String) {
        self.schema = schema
        self.table = table
        self.collection = collection
    }

    public var qualifiedName: String { "\(schema).\(table)" }
    public var description: String { "\(schema).\(table)=\(collection)" }

    public static let defaultTables = "waiter_ops,chef_orders,cashier_txns"

    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public let entry: String
        public let reason: String
        public var description: String { "SYNC_TABLES entry \"\(entry)\": \(reason)" }
    }

    /// Parses `SYNC_TABLES`: `table[=collection]`, comma separated; `schema.table` overrides
    /// the default schema for one entry.
    public static func parseList(_ text: String, defaultSchema: String) throws(ParseError) -> [TableMapping] {
        var result: [TableMapping] = []
        var seen = Set<String>()
        for raw in text.split(separator: ",") {
            let entry = raw.trimmingCharacters(in: " \t")
            guard !entry.isEmpty else { continue }
            let parts = entry.split(separator: "=", omittingEmptySubsequences: false).map(String.init)
            guard parts.count <= 2, !parts[0].isEmpty, parts.count == 1 || !parts[1].isEmpty else {
                throw ParseError(entry: entry, reason: "expected table or table=collection")
            }
            var schema = defaultSchema
            var table = parts[0]
            if let dot = table.firstIndex(of: ".") {
                schema = String(table[..<dot])
                table = String(table[table.index(after: dot)...])
                guard !schema.isEmpty, !table.isEmpty else {
                    throw ParseError(entry: entry, reason: "expected schema.table")
                }
            }
            let collection = parts.count == 2 ? parts[1] : table
            guard !collection.contains("$"), !collection.hasPrefix("system.") else {
                throw ParseError(entry: entry, reason: "\"\(collection)\" is not a valid MongoDB collection name")
            }
            guard seen.insert(collection).inserted else {
                throw ParseError(entry: entry, reason: "collection \"\(collection)\" is mapped twice")
            }
            result.append(TableMapping(schema: schema, table: table, collection: collection))
        }
        guard !result.isEmpty else { throw ParseError(entry: text, reason: "no tables given") }
        return result
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
