@testable import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

/// The MongoDB → NocoDB flow stores the change stream's resume token in the transaction that
/// writes the NocoDB rows the token covers. Committed apart, a failure between the two either
/// keeps rows whose token was never stored (the events are applied again after a restart) or
/// stores a token past rows that were never written (the change is lost for good: the stream
/// never delivers it again).
@Suite struct ResumeTokenTests {
    /// PostgreSQL refuses the token's save, standing for anything that ends the transaction
    /// between the two (a full disk, a lost connection, a killed process): the flow has
    /// written the event's NocoDB row in the same transaction by then, which the refusing
    /// trigger checks. The row must go with the token, and once the refusals stop the event is
    /// applied from the stored position, once.
    @Test func aRefusedTokenSaveTakesTheEventsNocoDBWritesWithIt() throws {
        let f = try BridgeFixture()
        let t = f.table("waiter_ops")
        let stream = ChangeStreamFlow.streamName(database: f.mongoDatabase, collection: "waiter_ops")
        func insert(_ key: String, _ action: String) throws {
            try f.mongoWrite { (c: MongoClient) throws(MongoError) in
                _ = try c.bulkWrite([.insertOne(["externalId": .string(key), "action": .string(action)])], collection: "waiter_ops")
            }
        }
        func rows(_ key: String) throws -> [[String?]] {
            try f.sql("SELECT action FROM \(t) WHERE \"externalId\" = $1", [key]).rows
        }
        func position() throws -> [UInt8]? { try PositionStore.load(stream, on: f.pg) }

        let bridge = f.startBridge()
        var running = true
        defer { if running { bridge.shutdown() } }
        try explained(by: bridge) {
            try insert("k-first", "seat")
            try eventually("the flow is running") { try rows("k-first").count == 1 }
            try eventually("its position stored") { try position() != nil }
        }

        // Every save of the flow's position is refused; a refusal that finds the row of the
        // event under test written (in its own transaction: nobody else writes the row) is
        // counted by a sequence, which a rollback does not undo.
        try f.pg.execute(script: """
            CREATE SEQUENCE public.nbtest_refused_after_write;
            CREATE FUNCTION public.nbtest_refuse_position() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
            BEGIN
                IF EXISTS (SELECT 1 FROM \(t) WHERE "externalId" = 'k-token') THEN
                    PERFORM nextval('public.nbtest_refused_after_write');
                END IF;
                RAISE EXCEPTION 'the test refuses the position';
            END $$;
            CREATE TRIGGER nbtest_refuse_position BEFORE INSERT OR UPDATE ON nocobridge.positions FOR EACH ROW
                WHEN (NEW.stream = '\(stream)') EXECUTE FUNCTION public.nbtest_refuse_position();
            """)
        // Read once no save can change it (creating the trigger waited for any save under way).
        let before = try position()
        func refusedAfterWrite() throws -> Int {
            let row = try f.sql("SELECT last_value, is_called FROM public.nbtest_refused_after_write").rows[0]
            return row[1] == "t" ? Int(row[0] ?? "0") ?? 0 : 0
        }
        try insert("k-token", "order")
        try explained(by: bridge) {
            // Twice: the flow retried from its stored position, and failed the same way.
            try eventually("the token's save refused after the event's row was written, twice") { try refusedAfterWrite() >= 2 }
        }
        #expect(try rows("k-token").isEmpty, "the event's row was committed without its token")
        #expect(try position() == before)

        try f.sql("DROP TRIGGER nbtest_refuse_position ON nocobridge.positions")
        try explained(by: bridge) {
            try eventually("the event applied") { try rows("k-token").count == 1 }
            try eventually("the position stored past it") { try position() != before }
        }
        bridge.shutdown()
        running = false
        #expect(try rows("k-token").map { $0[0] } == ["order"])
        let applied = try f.sql("""
            SELECT count(*) FROM nocobridge.history WHERE external_id = 'k-token' AND decision = 'write-nocodb'
            """).rows[0][0]
        #expect(applied == "1", "the event was applied more than once")

        // The stored position is past the event: resuming from it delivers what came later,
        // and not the event again.
        let stored = try #require(try position())
        try insert("k-after", "pay")
        var options = ChangeStreamOptions()
        options.resumeToken = stored
        options.maxAwaitMilliseconds = 50
        let resumed = try f.mongo.watch(collection: "waiter_ops", options: options)
        var keys: [String] = []
        try eventually("the later insert delivered") {
            while let event = try resumed.next() {
                if let key = MongoChange(event: event, token: nil).key { keys.append(key) }
            }
            return keys.contains("k-after")
        }
        #expect(keys == ["k-after"], "the stored position is not past the event")
    }
}
