import CoreMetrics
import Foundation
import Synchronization
import SyncCore

/// Counters a pipeline updates and the status endpoint reads; shared across threads.
///
/// The same events also go to swift-metrics through the factory given at creation, never
/// the global `MetricsSystem`: `run` passes the Prometheus registry behind `/metrics`, and
/// several bridges in one process (the tests) keep separate figures.
public final class PipelineStatistics: Sendable {
    public struct TableCounters: Sendable, Equatable {
        public var changes = 0
        public var writes = 0
        public var deadLetters = 0
        public var conflicts = 0
        public var lastLagMilliseconds: Int64?
        public var lastAppliedAt: Date?
        /// The table's flow is connected and running.
        public var connected = false
        public var lastError: String?
    }

    public struct Snapshot: Sendable {
        /// Every table flow of the direction that has started is connected.
        public var connected: Bool { !tables.isEmpty && tables.values.contains { $0.connected } && tables.values.allSatisfy(\.connected) }
        public var tables: [String: TableCounters] = [:]
        public var lastError: String?
        public var batches = 0
        public var reconnects = 0
        /// Records decided without reading MongoDB (an event's document, or a presumption,
        /// stood for the read).
        public var documentsNotRead = 0
    }

    /// One applied batch of one table, as reported to status and metrics.
    struct Batch {
        var table: String
        var changes: Int
        var writes: Int
        var rejected: Int
        var conflictsByRule: [Resolution.DecidingRule: Int] = [:]
        var lagMilliseconds: Int64?
        var applyNanoseconds: Int64?
        var documentsNotRead = 0
    }

    /// `to-mongo` or `to-nocodb`: the `direction` dimension of every metric.
    public let direction: String
    private let metrics: any MetricsFactory
    private let state = Mutex(Snapshot())

    public init(direction: String, metrics: any MetricsFactory = NOOPMetricsHandler.instance) {
        self.direction = direction
        self.metrics = metrics
    }

    public var snapshot: Snapshot { state.withLock { $0 } }

    /// A table's flow connected or stopped; the direction counts as connected while all its
    /// tables' flows are.
    func setConnected(_ value: Bool, table: String) {
        let all = state.withLock { s -> Bool in
            s.tables[table, default: TableCounters()].connected = value
            return s.connected
        }
        Gauge(label: MetricName.connected, dimensions: [("direction", direction)], factory: metrics).record(all ? 1 : 0)
    }

    func recordError(_ message: String, table: String? = nil) {
        state.withLock { s in
            s.lastError = message
            if let table { s.tables[table, default: TableCounters()].lastError = message }
        }
    }

    func recordReconnect() {
        state.withLock { $0.reconnects += 1 }
        Counter(label: MetricName.reconnects, dimensions: [("direction", direction)], factory: metrics).increment()
    }

    func record(_ batch: Batch) {
        let conflicts = batch.conflictsByRule.values.reduce(0, +)
        state.withLock { s in
            s.batches += 1
            s.documentsNotRead += batch.documentsNotRead
            var t = s.tables[batch.table] ?? TableCounters()
            t.changes += batch.changes
            t.writes += batch.writes
            t.deadLetters += batch.rejected
            t.conflicts += conflicts
            t.lastLagMilliseconds = batch.lagMilliseconds
            t.lastAppliedAt = Date()
            s.tables[batch.table] = t
        }
        let dims = [("direction", direction), ("table", batch.table)]
        Counter(label: MetricName.applied, dimensions: dims, factory: metrics).increment(by: batch.changes)
        Counter(label: MetricName.writes, dimensions: dims, factory: metrics).increment(by: batch.writes)
        Counter(label: MetricName.deadLetters, dimensions: dims, factory: metrics).increment(by: batch.rejected)
        for (rule, n) in batch.conflictsByRule.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            Counter(label: MetricName.conflicts, dimensions: dims + [("rule", rule.rawValue)], factory: metrics).increment(by: n)
        }
        Recorder(label: MetricName.batchSize, dimensions: [("direction", direction)], factory: metrics)
            .record(batch.changes)
        if let lag = batch.lagMilliseconds {
            Gauge(label: MetricName.lag, dimensions: dims, factory: metrics).record(Double(lag) / 1000)
        }
        if let nanoseconds = batch.applyNanoseconds {
            Timer(label: MetricName.applyDuration, dimensions: [("direction", direction)], factory: metrics)
                .recordNanoseconds(nanoseconds)
        }
    }
}

/// The metric names the bridge reports; the README's "Operating" section lists them.
public enum MetricName {
    public static let applied = "nocobridge_changes_applied_total"
    public static let writes = "nocobridge_writes_total"
    public static let deadLetters = "nocobridge_dead_letters_total"
    public static let conflicts = "nocobridge_conflicts_total"
    public static let reconnects = "nocobridge_reconnects_total"
    public static let batchSize = "nocobridge_batch_size"
    public static let applyDuration = "nocobridge_apply_duration_seconds"
    public static let lag = "nocobridge_lag_seconds"
    public static let connected = "nocobridge_pipeline_connected"
    public static let backlog = "nocobridge_changelog_backlog"
    public static let up = "nocobridge_up"
    public static let slotRetainedBytes = "nocobridge_slot_retained_wal_bytes"
}

func wallClockMilliseconds() -> Int64 {
    Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
}

func monotonicNanoseconds() -> Int64 {
    Int64(truncatingIfNeeded: DispatchTime.now().uptimeNanoseconds)
}
