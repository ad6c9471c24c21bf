import Postgres

/// The progress of the last resync per table (`nocobridge.resync_progress`), written by
/// whichever process runs it at most once a second, so a console shows a resync started from
/// a terminal, and `nocobridge status` one started from a console.
public enum ResyncProgress {
    public struct Row: Sendable, Codable, Equatable {
        public var table: String
        public var collection: String
        public var done: Int
        public var estimate: Int
        public var rate: Double
        public var dryRun: Bool
        public var startedAt: String
        public var updatedAt: String
        public var finishedAt: String?
        /// Not finished and its session still connected.
        public var running: Bool
        /// Not finished, and its session is gone (the process was killed or lost PostgreSQL).
        public var interrupted: Bool
    }

    /// Records one table's progress; `finished` closes it. Called from `Resync`; a failure
    /// here must never fail the resync, so callers use `try?`.
    public static func report(table: String, collection: String, done: Int, estimate: Int, elapsedSeconds: Double,
                              dryRun: Bool, finished: Bool, on connection: PostgresConnection) throws(PostgresError) {
        let rate = elapsedSeconds > 0 ? Double(done) / elapsedSeconds : 0
        try connection.query(cached: """
            INSERT INTO nocobridge.resync_progress AS p
                (table_name, collection, done, estimate, rate, dry_run, started_at, updated_at, finished_at, pid)
            VALUES ($1, $2, $3::bigint, $4::bigint, $5::float8, $6::boolean, now() - make_interval(secs => $7::float8), now(),
                    CASE WHEN $8::boolean THEN now() END, pg_backend_pid())
            ON CONFLICT (table_name) DO UPDATE SET
                collection = EXCLUDED.collection, done = EXCLUDED.done, estimate = EXCLUDED.estimate, rate = EXCLUDED.rate,
                dry_run = EXCLUDED.dry_run, started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at,
                finished_at = EXCLUDED.finished_at, pid = EXCLUDED.pid
            """, [table, collection, String(done), String(estimate), String(rate), dryRun ? "true" : "false",
                  String(elapsedSeconds), finished ? "true" : "false"])
    }

    public static func rows(on connection: PostgresConnection) throws(PostgresError) -> [Row] {
        let iso = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'"
        return try connection.query("""
            SELECT table_name, collection, done, estimate, rate, dry_run,
                   to_char(started_at AT TIME ZONE 'UTC', \(iso)), to_char(updated_at AT TIME ZONE 'UTC', \(iso)),
                   to_char(finished_at AT TIME ZONE 'UTC', \(iso)),
                   finished_at IS NULL AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = p.pid)
            FROM nocobridge.resync_progress p ORDER BY started_at DESC, table_name
            """).rows.map { r in
            let running = r[9] == "t"
            return Row(table: r[0] ?? "", collection: r[1] ?? "", done: Int(r[2] ?? "") ?? 0, estimate: Int(r[3] ?? "") ?? 0,
                       rate: Double(r[4] ?? "") ?? 0, dryRun: r[5] == "t", startedAt: r[6] ?? "", updatedAt: r[7] ?? "",
                       finishedAt: r[8], running: running, interrupted: r[8] == nil && !running)
        }
    }
}
