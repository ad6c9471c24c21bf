import Foundation
import Postgres
import Synchronization
import Testing

/// `PostgresConnection.pipeline` and `enqueue`, which carry a batch's bookkeeping and its
/// lock-then-read in fewer round trips: they must keep each statement's own meaning.
@Suite struct PipelineTests {
    @Test func queuedStatementsRunInOrderWithTheNextOne() throws {
        let f = try BridgeFixture()
        let c = try PostgresConnection(url: f.ownerConfiguration.postgresURL)
        try c.query("CREATE TEMP TABLE t (n int)")
        try c.query("BEGIN")
        try c.enqueue(cached: "INSERT INTO t VALUES ($1::int)", ["1"])
        try c.enqueue(cached: "INSERT INTO t VALUES ($1::int)", ["2"])
        // Sent with the read, before it.
        #expect(try c.query(cached: "SELECT string_agg(n::text, ',' ORDER BY n) AS s FROM t", []).rows[0][0] == "1,2")
        try c.enqueue(cached: "INSERT INTO t VALUES ($1::int)", ["3"])
        try c.query("COMMIT")
        #expect(try c.query("SELECT count(*) FROM t").rows[0][0] == "3")
        // Outside a transaction nothing waits: the statement runs at once.
        try c.enqueue(cached: "INSERT INTO t VALUES ($1::int)", ["4"])
        #expect(throws: PostgresError.self) { try c.enqueue(cached: "INSERT INTO t VALUES ($1::int)", ["x"]) }
        #expect(try c.query("SELECT count(*) FROM t").rows[0][0] == "4")
    }

    @Test func aQueuedStatementsErrorIsThrownAndWhatFollowsDoesNotRun() throws {
        let f = try BridgeFixture()
        let c = try PostgresConnection(url: f.ownerConfiguration.postgresURL)
        try c.query("CREATE TEMP TABLE t (n int PRIMARY KEY)")
        try c.query("BEGIN")
        try c.enqueue(cached: "INSERT INTO t VALUES ($1::int)", ["1"])
        // A duplicate key: not thrown here, since it is not sent yet.
        try c.enqueue(cached: "INSERT INTO t VALUES ($1::int)", ["1"])
        #expect(throws: PostgresError.self) { try c.query("INSERT INTO t VALUES (2)") }
        c.discardQueued()
        try c.query("ROLLBACK")
        // The connection is usable again, out of pipeline mode, and nothing was kept.
        #expect(try c.query("SELECT count(*) FROM t").rows[0][0] == "0")
        // A statement never prepared on this connection, prepared inside a pipeline that fails
        // before it, is prepared again next time.
        try c.query("BEGIN")
        try c.enqueue(cached: "INSERT INTO t VALUES ($1::int), ($1::int)", ["5"])
        #expect(throws: PostgresError.self) { try c.query(cached: "SELECT count(*) AS n FROM t WHERE n > $1::int", ["0"]) }
        c.discardQueued()
        try c.query("ROLLBACK")
        #expect(try c.query(cached: "SELECT count(*) AS n FROM t WHERE n > $1::int", ["0"]).rows[0][0] == "0")
    }

    /// What `AgreedStateStore.lockedStatesAndIntents` relies on: in one round trip, a read
    /// after a lock sees what the lock's previous holder committed while it was waited for.
    @Test func aReadPipelinedAfterALockSeesWhatTheHolderCommitted() throws {
        let f = try BridgeFixture()
        let holder = try PostgresConnection(url: f.ownerConfiguration.postgresURL)
        try holder.query("CREATE TABLE pipeline_probe (v text)")
        try holder.query("INSERT INTO pipeline_probe VALUES ('before')")
        try holder.query("BEGIN")
        try holder.query("SELECT pg_advisory_xact_lock(4242)")
        try holder.query("UPDATE pipeline_probe SET v = 'after'")
        let url = f.ownerConfiguration.postgresURL
        let seen = Mutex<String?>(nil)
        let reader = Thread {
            do {
                let c = try PostgresConnection(url: url)
                try c.query("BEGIN")
                let results = try c.pipeline([.init(cached: "SELECT pg_advisory_xact_lock($1::bigint)", ["4242"]),
                                              .init(cached: "SELECT v FROM pipeline_probe", [])])
                seen.withLock { $0 = results[1].rows[0][0] }
                try c.query("COMMIT")
            } catch {
                seen.withLock { $0 = "error: \(error)" }
            }
        }
        reader.start()
        Thread.sleep(forTimeInterval: 0.3)
        #expect(seen.withLock { $0 } == nil, "the read did not wait for the lock")
        try holder.query("COMMIT")
        try eventually("the pipelined read returned") { seen.withLock { $0 } != nil }
        #expect(seen.withLock { $0 } == "after")
    }
}
