import Foundation
import Mongo
import Postgres
import Synchronization
import SyncCore

/// Which way a measured change travels. Its stamps and bulk markers start with a prefix of
/// their own, so each side's observer picks out what arrived from the other side and never
/// mistakes the benchmark's own source writes (or the bridge's echoes) for arrivals.
enum Direction: String, Sendable, CaseIterable {
    case toMongo = "to_mongo"
    case toNocodb = "to_nocodb"

    /// A single stamped change: `m:label` is written in NocoDB and watched for in MongoDB.
    var stampPrefix: String { self == .toMongo ? "m:" : "n:" }
    /// A bulk edit's marker value (`mb1`, `nb2`, …), counted per record as it arrives.
    var markerPrefix: String { self == .toMongo ? "mb" : "nb" }

    func stamp(_ label: String) -> String { stampPrefix + label }
    func marker(_ n: Int) -> String { markerPrefix + String(n) }
}

/// What the observers saw arrive, and when: the first arrival of each stamp, and per bulk
/// marker how many records carried it and when the last new one came. Written by the
/// observer threads, read by the load generator.
final class Arrivals: Sendable {
    struct Marker: Sendable {
        var count = 0
        var lastMicros = 0.0
        /// MongoDB events name their document, so a record written twice counts once there.
        var documents: Set<String> = []
    }

    private struct State {
        var stamps: [String: Double] = [:]
        var markers: [String: Marker] = [:]
    }

    private let state = Mutex(State())

    func stamp(_ stamp: String, at micros: Double) {
        state.withLock { s in
            if s.stamps[stamp] == nil { s.stamps[stamp] = micros }
        }
    }

    /// One document seen carrying `marker` (MongoDB side: distinct documents).
    func marker(_ marker: String, document: String, at micros: Double) {
        state.withLock { s in
            var m = s.markers[marker] ?? Marker()
            if m.documents.insert(document).inserted {
                m.count += 1
                m.lastMicros = micros
            }
            s.markers[marker] = m
        }
    }

    /// `count` more rows seen carrying `marker` (PostgreSQL side: one notification per statement).
    func marker(_ marker: String, count: Int, at micros: Double) {
        state.withLock { s in
            var m = s.markers[marker] ?? Marker()
            m.count += count
            m.lastMicros = micros
            s.markers[marker] = m
        }
    }

    func arrival(of stamp: String) -> Double? { state.withLock { $0.stamps[stamp] } }

    func progress(of marker: String) -> (count: Int, lastMicros: Double) {
        state.withLock { s in
            let m = s.markers[marker] ?? Marker()
            return (m.count, m.lastMicros)
        }
    }
}

/// A thread that runs until stopped, and whose failure is reported to whoever waits on it
/// rather than lost: a dead observer would otherwise look like a bridge that delivers nothing.
final class WorkerState: Sendable {
    private let stopped = Mutex(false)
    private let failure = Mutex<String?>(nil)
    private let ready = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)

    var isStopped: Bool { stopped.withLock { $0 } }

    func markReady() { ready.signal() }
    func fail(_ message: String) {
        failure.withLock { $0 = $0 ?? message }
        ready.signal()
    }
    func finish() { done.signal() }

    /// Waits until the worker is ready (or failed); throws its failure.
    func waitReady(_ name: String) throws {
        ready.wait()
        try check(name)
    }

    func check(_ name: String) throws {
        if let message = failure.withLock({ $0 }) { throw BenchError("\(name) failed: \(message)") }
    }

    func stop() {
        stopped.withLock { $0 = true }
        done.wait()
    }
}

/// Watches the benchmark database in MongoDB for stamps and markers of changes made in
/// NocoDB. No `updateLookup` and a projection down to the two marker fields: the observer
/// should cost the server as little as possible, and costs the same in every measurement
/// (it runs for the whole benchmark, beside the floor relay and beside the bridge alike).
final class MongoObserver: Sendable {
    static let markedFields = ["notes", "method"]

    private let pool: MongoClientPool
    private let collections: [String]
    private let arrivals: Arrivals
    private let worker = WorkerState()

    init(pool: MongoClientPool, collections: [String], arrivals: Arrivals) {
        self.pool = pool
        self.collections = collections
        self.arrivals = arrivals
    }

    /// Returns once the stream is open: a change stream sees only writes made after that.
    func start() throws {
        Thread { [self] in
            defer { worker.finish() }
            do {
                try watch()
            } catch {
                worker.fail("\(error)")
            }
        }.start()
        try worker.waitReady("MongoDB observer")
    }

    func check() throws { try worker.check("MongoDB observer") }
    func stop() { worker.stop() }

    private func watch() throws {
        var options = ChangeStreamOptions()
        options.fullDocumentUpdateLookup = false
        options.maxAwaitMilliseconds = 100
        var projection: Document = ["operationType": .int32(1), "documentKey._id": .int32(1)]
        for field in Self.markedFields {
            projection["fullDocument.\(field)"] = .int32(1)
            projection["updateDescription.updatedFields.\(field)"] = .int32(1)
        }
        options.pipeline = [
            ["$match": .document(["ns.coll": .document(["$in": .array(collections.map(Value.string))]),
                                  "operationType": .document(["$in": .array(["insert", "update", "replace"].map(Value.string))])])],
            ["$project": .document(projection)],
        ]
        let stream = try pool.watch(collection: nil, options: options)
        worker.markReady()
        while !worker.isStopped {
            guard let event = try stream.next() else { continue }
            let now = Clock.micros()
            var fields: Document?
            if case .document(let d)? = event["fullDocument"] { fields = d }
            if case .document(let u)? = event["updateDescription"], case .document(let f)? = u["updatedFields"] { fields = f }
            guard let fields else { continue }
            for name in Self.markedFields {
                guard case .string(let value)? = fields[name] else { continue }
                if value.hasPrefix(Direction.toMongo.stampPrefix) {
                    arrivals.stamp(value, at: now)
                } else if value.hasPrefix(Direction.toMongo.markerPrefix) {
                    arrivals.marker(value, document: Self.identity(event["documentKey"]), at: now)
                }
            }
        }
    }

    private static func identity(_ key: Value?) -> String {
        guard case .document(let d)? = key, let id = d["_id"] else { return "?" }
        switch id {
        case .objectId(let o): return o.description
        case .string(let s): return s
        default: return "\(id)"
        }
    }
}

/// Listens in NocoDB's database for stamps and markers of changes made in MongoDB, through
/// the triggers `ObserverSQL` installs (one NOTIFY per stamped row, one per statement for
/// bulk markers, so a 20,000-row bulk costs the writer one aggregate per statement).
final class PostgresObserver: Sendable {
    static let channel = "bench_seen"

    private let url: String
    private let arrivals: Arrivals
    private let worker = WorkerState()

    init(url: String, arrivals: Arrivals) {
        self.url = url
        self.arrivals = arrivals
    }

    func start() throws {
        Thread { [self] in
            defer { worker.finish() }
            do {
                try listen()
            } catch {
                worker.fail("\(error)")
            }
        }.start()
        try worker.waitReady("PostgreSQL observer")
    }

    func check() throws { try worker.check("PostgreSQL observer") }
    func stop() { worker.stop() }

    private func listen() throws {
        let connection = try PostgresConnection(url: url, applicationName: "bench-observer")
        try connection.listen(Self.channel)
        worker.markReady()
        while !worker.isStopped {
            let notes = try connection.waitForNotifications(timeoutMilliseconds: 100)
            let now = Clock.micros()
            for note in notes {
                let payload = note.payload
                if payload.hasPrefix(Direction.toNocodb.stampPrefix) {
                    arrivals.stamp(payload, at: now)
                } else if payload.hasPrefix("count:") {
                    // count:<marker>:<rows>:<sequence> (the sequence keeps NOTIFY from folding
                    // two equal payloads of one transaction into one).
                    let parts = payload.split(separator: ":")
                    if parts.count >= 3, let rows = Int(parts[2]) { arrivals.marker(String(parts[1]), count: rows, at: now) }
                }
            }
        }
    }
}

/// The observer's triggers in NocoDB's database. They fire for whoever writes (the bridge or
/// the floor relay), and only on values stamped for MongoDB → NocoDB, so the benchmark's own
/// NocoDB writes never notify.
enum ObserverSQL {
    static func install(schema: String, stampedTables: [String], markedTable: String) -> String {
        let s = PostgresConnection.quoteIdentifier(schema)
        var sql = """
            CREATE SCHEMA IF NOT EXISTS bench;
            CREATE SEQUENCE IF NOT EXISTS bench.seen_seq;
            CREATE OR REPLACE FUNCTION bench.seen_notes() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('\(PostgresObserver.channel)', NEW."notes"); RETURN NULL; END $$;
            CREATE OR REPLACE FUNCTION bench.seen_method() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('\(PostgresObserver.channel)', NEW."method"); RETURN NULL; END $$;
            CREATE OR REPLACE FUNCTION bench.seen_count() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE r record;
            BEGIN
              FOR r IN SELECT "method" AS m, count(*) AS n FROM bench_new WHERE "method" LIKE '\(Direction.toNocodb.markerPrefix)%' GROUP BY 1 LOOP
                PERFORM pg_notify('\(PostgresObserver.channel)', 'count:' || r.m || ':' || r.n || ':' || nextval('bench.seen_seq'));
              END LOOP;
              RETURN NULL;
            END $$;

            """
        let stamped = "LIKE '\(Direction.toNocodb.stampPrefix)%'"
        for table in stampedTables {
            sql += """
                CREATE TRIGGER bench_seen AFTER INSERT OR UPDATE ON \(s).\(PostgresConnection.quoteIdentifier(table))
                FOR EACH ROW WHEN (NEW."notes" \(stamped)) EXECUTE FUNCTION bench.seen_notes();

                """
        }
        let marked = "\(s).\(PostgresConnection.quoteIdentifier(markedTable))"
        sql += """
            CREATE TRIGGER bench_seen AFTER INSERT OR UPDATE ON \(marked)
            FOR EACH ROW WHEN (NEW."method" \(stamped)) EXECUTE FUNCTION bench.seen_method();
            CREATE TRIGGER bench_seen_ins AFTER INSERT ON \(marked) REFERENCING NEW TABLE AS bench_new
            FOR EACH STATEMENT EXECUTE FUNCTION bench.seen_count();
            CREATE TRIGGER bench_seen_upd AFTER UPDATE ON \(marked) REFERENCING NEW TABLE AS bench_new
            FOR EACH STATEMENT EXECUTE FUNCTION bench.seen_count();
            """
        return sql
    }
}
