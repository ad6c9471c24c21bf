import Foundation
import Synchronization

/// Counters a pipeline updates and the status endpoint reads; shared across threads.
public final class PipelineStatistics: Sendable {
    public struct TableCounters: Sendable, Equatable {
        public var changes = 0
        public var writes = 0
        public var deadLetters = 0
        public var conflicts = 0
        public var lastLagMilliseconds: Int64?
        public var lastAppliedAt: Date?
    }

    public struct Snapshot: Sendable {
        public var connected = false
        public var tables: [String: TableCounters] = [:]
        public var lastError: String?
        public var batches = 0
    }

    private let state = Mutex(Snapshot())

    public init() {}

    public var snapshot: Snapshot { state.withLock { $0 } }

    func setConnected(_ value: Bool) { state.withLock { $0.connected = value } }

    func recordError(_ message: String) { state.withLock { $0.lastError = message } }

    func recordBatch(table: String, changes: Int, writes: Int, rejected: Int, conflicts: Int = 0, lagMilliseconds: Int64?) {
        state.withLock { s in
            s.batches += 1
            var t = s.tables[table] ?? TableCounters()
            t.changes += changes
            t.writes += writes
            t.deadLetters += rejected
            t.conflicts += conflicts
            t.lastLagMilliseconds = lagMilliseconds
            t.lastAppliedAt = Date()
            s.tables[table] = t
        }
    }
}

func wallClockMilliseconds() -> Int64 {
    Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
}
