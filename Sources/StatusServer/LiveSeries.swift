import Bridge
import Foundation
import Synchronization

/// The last hour of lag, throughput and backlog per direction and table, sampled from the
/// pipelines' counters every `interval` and kept in memory (a ring of `capacity` points), for
/// the console's charts. Nothing is stored: a restarted bridge starts a new hour.
///
/// Points also leave by age (`window`): samples come later than the interval when an
/// inspection waits on PostgreSQL or the process was paused, and a ring sized for the
/// interval would then span more than the hour the charts promise.
final class LiveSeries: Sendable {
    struct Sample: Sendable, Equatable {
        /// Changes applied per second over the interval.
        var throughput: Double
        /// Seconds: the lag of the interval's last batch, or the age of the oldest change still
        /// waiting when that is larger (a stuck pipeline applies no batch at all); 0 when idle.
        var lag: Double
        /// Changelog rows waiting (NocoDB → MongoDB only), when PostgreSQL answered.
        var backlog: Int?
    }

    struct Point: Sendable, Equatable {
        /// Seconds since the epoch.
        var time: Double
        /// Keyed by `direction table`.
        var samples: [String: Sample]
    }

    let capacity: Int
    /// The hour the charts show, in seconds: an older point is dropped.
    let window: TimeInterval = 3600
    private let state: Mutex<(points: [Point], last: [String: (changes: Int, batchAt: Date?)], lastTime: Date?)>

    init(capacity: Int = 360) {
        self.capacity = capacity
        state = Mutex(([], [:], nil))
    }

    var points: [Point] { state.withLock { $0.points } }

    static func key(direction: String, table: String) -> String { direction + " " + table }

    /// Takes one sample. `inspection` (nil when PostgreSQL did not answer) adds the backlog
    /// and its age.
    func sample(tables: [String], statistics: [PipelineStatistics], inspection: Inspection?, now: Date = Date()) {
        let snapshots = statistics.map { ($0.direction, $0.snapshot) }
        state.withLock { s in
            var samples: [String: Sample] = [:]
            let elapsed = s.lastTime.map { now.timeIntervalSince($0) } ?? 0
            for (direction, snapshot) in snapshots {
                for table in tables {
                    let key = Self.key(direction: direction, table: table)
                    let counters = snapshot.tables[table]
                    let changes = counters?.changes ?? 0
                    let previous = s.last[key]
                    s.last[key] = (changes, counters?.lastAppliedAt)
                    guard let previous, elapsed > 0 else { continue }
                    let applied = max(changes - previous.changes, 0)
                    var lag = 0.0
                    if applied > 0, let ms = counters?.lastLagMilliseconds { lag = Double(ms) / 1000 }
                    var waiting: Int?
                    if direction == "to-mongo" {
                        waiting = inspection?.backlog[table]
                        if let age = inspection?.oldestChangeSeconds[table], (waiting ?? 0) > 0 { lag = max(lag, age) }
                    }
                    samples[key] = Sample(throughput: Double(applied) / elapsed, lag: lag, backlog: waiting)
                }
            }
            s.lastTime = now
            let oldest = now.timeIntervalSince1970 - window
            if let kept = s.points.firstIndex(where: { $0.time > oldest }) {
                s.points.removeFirst(kept)
            } else {
                s.points.removeAll()
            }
            guard !samples.isEmpty else { return }
            s.points.append(Point(time: now.timeIntervalSince1970, samples: samples))
            if s.points.count > capacity { s.points.removeFirst(s.points.count - capacity) }
        }
    }
}
