import Foundation
import Mongo
import Postgres
import SyncCore
import Synchronization

/// An application writing to one side until stopped, retrying each operation until it
/// succeeds, through restarts of its server.
protocol SideWriter: Sendable {
    /// Applies one operation; throws when the server could not be reached or refused.
    func apply(_ op: Operation) throws
    func reconnect()
}

/// Drives one writer with its operation stream on a thread.
final class WriterLoop: Sendable {
    private let stopped = Atomic(false)
    private let done = DispatchSemaphore(value: 0)
    let retries = Atomic(0)

    init(writer: some SideWriter, stream: OperationStream, expected: ExpectedState, pauseMicroseconds: UInt32) {
        nonisolated(unsafe) var stream = stream
        Thread { [self] in
            while !self.stopped.load(ordering: .relaxed) {
                let op = stream.nextOperation()
                while true {
                    do {
                        try writer.apply(op)
                        break
                    } catch {
                        self.retries.add(1, ordering: .relaxed)
                        usleep(100_000)
                        writer.reconnect()
                    }
                }
                expected.apply(op)
                usleep(pauseMicroseconds)
            }
            self.done.signal()
        }.start()
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        done.wait()
    }
}

/// Writes as NocoDB does: rows in the base's schema, soft deletes by `__nc_deleted`.
final class NocoDBWriter: SideWriter, @unchecked Sendable {
    private let url: String
    private let schema: String
    private let lock = NSLock()
    private var connection: PostgresConnection?

    init(url: String, schema: String) {
        self.url = url
        self.schema = schema
    }

    func reconnect() { lock.withLock { connection = nil } }

    func apply(_ op: Operation) throws {
        try lock.withLock {
            let c = try connection ?? PostgresConnection(url: url, applicationName: "chaos-nocodb-app")
            connection = c
            let table = PostgresConnection.quoteIdentifier(schema) + "." + PostgresConnection.quoteIdentifier(op.table)
            let names = op.fields.keys.sorted()
            switch op.kind {
            case .insert:
                let columns = (["externalId"] + names).map(PostgresConnection.quoteIdentifier).joined(separator: ", ")
                let values = (1...(names.count + 1)).map { "$\($0)" }.joined(separator: ", ")
                try c.query("""
                    INSERT INTO \(table) (\(columns), "created_at", "updated_at") SELECT \(values), now(), now()
                    WHERE NOT EXISTS (SELECT 1 FROM \(table) WHERE "externalId" = $1)
                    """, [op.key] + names.map { op.fields[$0] })
            case .update:
                let sets = names.enumerated().map { "\(PostgresConnection.quoteIdentifier($0.element)) = $\($0.offset + 2)" }
                try c.query("UPDATE \(table) SET \(sets.joined(separator: ", ")), \"updated_at\" = now() WHERE \"externalId\" = $1",
                            [op.key] + names.map { op.fields[$0] })
            case .delete:
                try c.query("DELETE FROM \(table) WHERE \"externalId\" = $1", [op.key])
            case .softDelete:
                try c.query("UPDATE \(table) SET \"__nc_deleted\" = true, \"updated_at\" = now() WHERE \"externalId\" = $1", [op.key])
            }
        }
    }
}

/// Writes as most integrations do (an ETL job, a script, a retry after a timeout): every
/// insert and update is `INSERT … ON CONFLICT ("externalId") DO UPDATE`, alternating the
/// extended protocol and prepared statements, so the upsert must stay one record per key.
final class IntegrationWriter: SideWriter, @unchecked Sendable {
    private let url: String
    private let schema: String
    private let lock = NSLock()
    private var connection: PostgresConnection?
    private var count = 0

    init(url: String, schema: String) {
        self.url = url
        self.schema = schema
    }

    func reconnect() { lock.withLock { connection = nil } }

    func apply(_ op: Operation) throws {
        try lock.withLock {
            let c = try connection ?? PostgresConnection(url: url, applicationName: "chaos-etl")
            connection = c
            count += 1
            let table = PostgresConnection.quoteIdentifier(schema) + "." + PostgresConnection.quoteIdentifier(op.table)
            switch op.kind {
            case .insert, .update:
                let names = op.fields.keys.sorted()
                let columns = (["externalId"] + names).map(PostgresConnection.quoteIdentifier).joined(separator: ", ")
                let values = (1...(names.count + 1)).map { "$\($0)" }.joined(separator: ", ")
                let sets = names.map { "\(PostgresConnection.quoteIdentifier($0)) = EXCLUDED.\(PostgresConnection.quoteIdentifier($0))" }
                let sql = "INSERT INTO \(table) (\(columns)) VALUES (\(values)) ON CONFLICT (\"externalId\") DO UPDATE SET \(sets.joined(separator: ", "))"
                let parameters = [op.key] + names.map { op.fields[$0] }
                if count % 2 == 0 { try c.query(cached: sql, parameters) } else { try c.query(sql, parameters) }
            case .delete, .softDelete:
                try c.query("DELETE FROM \(table) WHERE \"externalId\" = $1", [op.key])
            }
        }
    }
}

/// Writes as the restaurant's MongoDB apps do: insertOne, updateOne `$set`, deleteOne.
final class MongoAppWriter: SideWriter, @unchecked Sendable {
    private let pool: MongoClientPool

    init(pool: MongoClientPool) { self.pool = pool }

    func reconnect() {}

    static func bson(_ field: String, _ text: String) -> Value {
        if ChaosTables.integerFields.contains(field) { return .int64(Int64(text)!) }
        if ChaosTables.decimalFields.contains(field) { return (try? Decimal128Text(text)).map(Value.decimal) ?? .string(text) }
        return .string(text)
    }

    func apply(_ op: Operation) throws {
        var fields = Document()
        for (name, text) in op.fields.sorted(by: { $0.key < $1.key }) { fields[name] = Self.bson(name, text) }
        try pool.withClient { (c: MongoClient) throws(MongoError) in
            switch op.kind {
            case .insert:
                var doc: Document = ["externalId": .string(op.key)]
                for f in fields.fields { doc[f.key] = f.value }
                do throws(MongoError) {
                    try c.insertOne(doc, collection: op.table)
                } catch {
                    // 11000: a retried insert whose first attempt had committed.
                    if error.code != 11000 { throw error }
                }
            case .update:
                try c.updateOne(filter: ["externalId": .string(op.key)], update: ["$set": .document(fields)], collection: op.table)
            case .delete, .softDelete:
                try c.deleteOne(filter: ["externalId": .string(op.key)], collection: op.table)
            }
        }
    }
}
