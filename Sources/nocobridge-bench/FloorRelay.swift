import Foundation
import Mongo
import Postgres
import Synchronization
import SyncCore

/// The floor: a minimal relay in the benchmark process doing the hops the bridge does, on the
/// same servers in the same state, with no decision logic (no agreed state, no conflict
/// policy, no intents, no echo detection). Whatever the bridge's latency exceeds this by is
/// the bridge's own cost.
///
/// Like the bridge it keeps both directions' capture open while it relays one: NocoDB's
/// capture (a NOTIFY trigger, or a logical replication slot) and a database-wide change
/// stream with the bridge's own stages and `fullDocument: updateLookup`. The direction not
/// being measured is read and dropped, as the bridge reads its echoes. Both copies of the
/// table carry the bridge's indexes (`BenchBase`), and the bridge is stopped meanwhile, so
/// the server has the same number of streams open as when the bridge is measured.
final class FloorRelay: Sendable {
    static let channel = "bench_relay"
    static let slot = "bench_relay"
    static let publication = "bench_relay"
    static let fields = ["externalId", "table_no", "action", "notes"]

    private let url: String
    private let mongo: MongoClientPool
    private let capture: NocoBridgeCLI.Capture
    private let direction: Direction
    private let table = BenchBase.floorProbeTable
    private let capturing = WorkerState()
    private let streaming = WorkerState()
    /// When the relay had each stamped change in hand and when its write was acknowledged.
    let hops = HopLog()

    init(url: String, mongoURL: String, capture: NocoBridgeCLI.Capture, direction: Direction) throws {
        self.url = url
        mongo = try MongoClientPool(url: mongoURL, database: BenchBase.database, instance: "bench-relay")
        self.capture = capture
        self.direction = direction
    }

    /// The relay's capture on the floor table: a row trigger that NOTIFYs the row id (the
    /// least a trigger capture can do), or a publication and a `pgoutput` slot.
    static func install(_ capture: NocoBridgeCLI.Capture, on pg: PostgresConnection) throws {
        let table = BenchBase.quoted(BenchBase.floorProbeTable)
        switch capture {
        case .triggers:
            try pg.execute(script: """
                CREATE OR REPLACE FUNCTION bench.relay_notify() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_notify('\(channel)', NEW."id"::text); RETURN NULL; END $$;
                CREATE TRIGGER bench_relay AFTER INSERT OR UPDATE ON \(table) FOR EACH ROW EXECUTE FUNCTION bench.relay_notify();
                """)
        case .logical:
            try pg.query("CREATE PUBLICATION \(publication) FOR TABLE \(table)")
            try pg.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot])
        }
    }

    static func remove(on pg: PostgresConnection) throws {
        try pg.query("DROP TRIGGER IF EXISTS bench_relay ON \(BenchBase.quoted(BenchBase.floorProbeTable))")
        try pg.query("DROP PUBLICATION IF EXISTS \(publication)")
        // The walsender outlives the relay's connection by a moment; a slot still active
        // cannot be dropped.
        try Clock.wait(timeout: 30, "the relay's replication slot to be released") {
            try pg.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active", [slot]).rows.isEmpty
        }
        try pg.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", [slot])
    }

    /// Moves the relay's (idle) slot to the end of the WAL.
    static func skipBacklog(on pg: PostgresConnection) throws {
        try pg.query("SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())", [slot])
    }

    /// Returns once both sides' capture is open.
    func start() throws {
        Thread { [self] in
            defer { capturing.finish() }
            do {
                switch capture {
                case .triggers: try relayNotifications()
                case .logical: try relayReplication()
                }
            } catch {
                capturing.fail("\(error)")
            }
        }.start()
        Thread { [self] in
            defer { streaming.finish() }
            do {
                try relayChangeStream()
            } catch {
                streaming.fail("\(error)")
            }
        }.start()
        try capturing.waitReady("floor relay (NocoDB capture)")
        try streaming.waitReady("floor relay (change stream)")
    }

    func check() throws {
        try capturing.check("floor relay (NocoDB capture)")
        try streaming.check("floor relay (change stream)")
    }

    func stop() {
        capturing.stop()
        streaming.stop()
    }

    // MARK: NocoDB → MongoDB

    private func relayNotifications() throws {
        let pg = try PostgresConnection(url: url, applicationName: "bench-relay")
        try pg.listen(Self.channel)
        capturing.markReady()
        let select = "SELECT " + Self.fields.map(PostgresConnection.quoteIdentifier).joined(separator: ", ")
            + " FROM \(BenchBase.quoted(table)) WHERE \"id\" = ANY($1::int[])"
        while !capturing.isStopped {
            let notes = try pg.waitForNotifications(timeoutMilliseconds: 100)
            let received = Clock.micros()
            guard direction == .toMongo, !notes.isEmpty else { continue }
            let rows = try pg.query(cached: select, [PostgresConnection.arrayLiteral(notes.map(\.payload))])
            try upsert(rows.rows, received: received)
        }
    }

    private func relayReplication() throws {
        let replication = try ReplicationConnection(url: url, applicationName: "bench-relay")
        try replication.startReplication(slot: Self.slot, publication: Self.publication, from: 0)
        capturing.markReady()
        var relations: [UInt32: [String]] = [:]
        var pending: [[String?]] = []
        var received = 0.0
        var lastFeedback = Clock.micros()
        var confirmed: PgOutput.LSN = 0
        while !capturing.isStopped {
            guard let bytes = try replication.read(timeoutMilliseconds: 100) else { continue }
            switch try PgOutput.decodeEnvelope(bytes) {
            case .keepalive(let walEnd, let replyRequested):
                if replyRequested {
                    try replication.send(PgOutput.standbyStatus(flushed: max(confirmed, walEnd), now: Int64(Clock.micros())))
                }
            case .xLogData(_, _, let message):
                switch message {
                case .relation(let id, _, _, _, let columns):
                    relations[id] = columns.map(\.name)
                case .insert(let relation, let new), .update(let relation, _, let new):
                    guard direction == .toMongo, let names = relations[relation] else { continue }
                    if pending.isEmpty { received = Clock.micros() }
                    let byName = Dictionary(zip(names, new), uniquingKeysWith: { a, _ in a })
                    pending.append(Self.fields.map { field -> String? in
                        if case .text(let t)? = byName[field] { return t }
                        return nil
                    })
                case .commit(_, let endLSN, _):
                    // One bulk write per transaction, as a logical consumer applies them.
                    if !pending.isEmpty { try upsert(pending, received: received) }
                    pending = []
                    confirmed = endLSN
                    if Clock.micros() - lastFeedback > 1e6 {
                        lastFeedback = Clock.micros()
                        try replication.send(PgOutput.standbyStatus(flushed: confirmed, now: Int64(Clock.micros())))
                    }
                default:
                    break
                }
            }
        }
    }

    /// Upserts by `externalId`, unordered, into the floor collection.
    private func upsert(_ rows: [[String?]], received: Double) throws {
        let writes: [BulkWrite] = rows.compactMap { row in
            guard let key = row[0] else { return nil }
            var set = Document()
            for (field, text) in zip(Self.fields, row) {
                if field == "table_no" {
                    set[field] = text.flatMap { Int64($0) }.map(Value.int64) ?? .null
                } else {
                    set[field] = text.map(Value.string) ?? .null
                }
            }
            return .updateOne(filter: [RowMapper.keyField: .string(key)], update: ["$set": .document(set)], upsert: true)
        }
        let result = try mongo.withClient { (c: MongoClient) throws(MongoError) in try c.bulkWrite(writes, collection: table) }
        if let error = result.writeErrors.first { throw BenchError("floor relay write refused: \(error.message)") }
        let written = Clock.micros()
        for row in rows { if let stamp = row[3] { hops.record(stamp, received: received, written: written) } }
    }

    // MARK: MongoDB → NocoDB

    /// The bridge's change stream (on the collection, its stages, `updateLookup`), relaying
    /// each event to NocoDB with one upsert as it arrives.
    private func relayChangeStream() throws {
        var options = ChangeStreamOptions()
        options.pipeline = ChangeStreamPipeline.stages(collections: [table])
        let stream = try mongo.watch(collection: table, options: options)
        let pg = try PostgresConnection(url: url, applicationName: "bench-relay")
        streaming.markReady()
        let columns = Self.fields.map(PostgresConnection.quoteIdentifier)
        let upsert = "INSERT INTO \(BenchBase.quoted(table)) (\(columns.joined(separator: ", "))) VALUES ($1, $2::bigint, $3, $4) "
            + "ON CONFLICT (\"externalId\") DO UPDATE SET "
            + columns.dropFirst().map { "\($0) = EXCLUDED.\($0)" }.joined(separator: ", ")
        while !streaming.isStopped {
            guard let event = try stream.next() else { continue }
            let received = Clock.micros()
            guard direction == .toNocodb, case .document(let doc)? = event["fullDocument"] else { continue }
            let values = Self.fields.map { field -> String? in
                switch doc[field] {
                case .string(let s)?: s
                case .int64(let i)?: String(i)
                case .int32(let i)?: String(i)
                default: nil
                }
            }
            guard values[0] != nil else { continue }
            try pg.query(cached: upsert, values)
            if let stamp = values[3] { hops.record(stamp, received: received, written: Clock.micros()) }
        }
    }
}

/// Per stamped change, when the relay had it in hand and when its write was acknowledged:
/// splits the floor into its hops (source write and capture, the relay's write, the
/// observer's notification), to show where the floor's time goes.
final class HopLog: Sendable {
    private let times = Mutex<[String: (received: Double, written: Double)]>([:])

    func record(_ stamp: String, received: Double, written: Double) {
        times.withLock { $0[stamp] = (received, written) }
    }

    /// Medians of the three hops over `sent` (ms), for the changes that arrived.
    func medians(_ sent: ArraySlice<PacedLoad.Sent>, arrivals: Arrivals) -> FloorHops {
        var capture = Samples(), write = Samples(), observe = Samples()
        let known = times.withLock { $0 }
        for s in sent {
            guard let t = known[s.stamp], let arrived = arrivals.arrival(of: s.stamp) else { continue }
            capture.add(t.received - s.micros)
            write.add(t.written - t.received)
            observe.add(arrived - t.written)
        }
        return FloorHops(captureP50Ms: capture.percentile(50).map { $0 / 1000 }, relayWriteP50Ms: write.percentile(50).map { $0 / 1000 },
                         observeP50Ms: observe.percentile(50).map { $0 / 1000 })
    }
}
