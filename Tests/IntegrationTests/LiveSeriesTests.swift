@testable import Bridge
import Foundation
@testable import StatusServer
import Testing

/// The console's charts promise the last hour (README, `STATUS_SAMPLE_SECONDS`) and no more
/// memory than that: `LiveSeries` fed with clock values the test chooses, no servers and no
/// sleeping. The pipelines' counters are the real `PipelineStatistics` a flow updates.
@Suite struct LiveSeriesTests {
    static let table = "p1.waiter_ops"
    static let start = Date(timeIntervalSince1970: 1_700_000_000)

    /// Applies `changes` to the table (lag `lagMilliseconds`), then takes a sample at `at`
    /// seconds after `start`.
    static func step(_ series: LiveSeries, _ statistics: PipelineStatistics, changes: Int, lagMilliseconds: Int64, at: Double) {
        if changes > 0 {
            statistics.record(.init(table: table, changes: changes, writes: changes, rejected: 0, lagMilliseconds: lagMilliseconds))
        }
        series.sample(tables: [table], statistics: [statistics], inspection: nil, now: start.addingTimeInterval(at))
    }

    /// Seventy minutes of samples every 10 s (the default interval, so the default capacity):
    /// the first ten minutes' points are gone and the newest ones are there with their figures.
    @Test func samplesOlderThanAnHourAreDroppedAndTheNewestKept() throws {
        let series = LiveSeries(capacity: 360)
        let statistics = PipelineStatistics(direction: "to-mongo")
        for i in 0...420 {
            // Sample i reports i changes over its 10 s: throughput i/10, lag i ms.
            Self.step(series, statistics, changes: i, lagMilliseconds: Int64(i), at: Double(i) * 10)
        }
        let now = Self.start.timeIntervalSince1970 + 4200
        let points = series.points
        #expect(points.count == 360)
        #expect(points.allSatisfy { now - $0.time < 3600 })
        #expect(points.first?.time == now - 3590)
        #expect(points.last?.time == now)
        #expect(points.map(\.time) == points.map(\.time).sorted())
        let newest = try #require(points.last?.samples[LiveSeries.key(direction: "to-mongo", table: Self.table)])
        #expect(newest == LiveSeries.Sample(throughput: 42, lag: 0.42, backlog: nil))
        let oldest = try #require(points.first?.samples[LiveSeries.key(direction: "to-mongo", table: Self.table)])
        #expect(oldest.throughput == 6.1)
    }

    /// Sampling slower than the interval it was sized for (slow inspections while PostgreSQL
    /// answers late, a paused process): the ring is not full, yet a point older than an hour
    /// still leaves the chart.
    @Test func anHourIsKeptWhenSamplesComeLateOrAfterAPause() throws {
        let series = LiveSeries(capacity: 360)
        let statistics = PipelineStatistics(direction: "to-mongo")
        // Half an hour every 15 s instead of 10 s.
        var at = 0.0
        for _ in 0...120 {
            Self.step(series, statistics, changes: 5, lagMilliseconds: 100, at: at)
            at += 15
        }
        let beforePause = at - 15
        #expect(series.points.count == 120)
        // Fifty minutes without a sample, then two more.
        at = beforePause + 3000
        Self.step(series, statistics, changes: 5, lagMilliseconds: 100, at: at)
        Self.step(series, statistics, changes: 5, lagMilliseconds: 100, at: at + 10)
        let now = Self.start.timeIntervalSince1970 + at + 10
        let times = series.points.map(\.time)
        #expect(times.allSatisfy { now - $0 < 3600 })
        #expect(times.last == now)
        // What is under an hour old stays: the points from 1215 s to 1800 s before the pause
        // (the one at 1200 s, exactly an hour before the first new one, is gone) and the two new.
        #expect(times.count == 40 + 2)
        #expect(times.first == Self.start.timeIntervalSince1970 + beforePause - 585)
    }

    /// Samples faster than the interval (capacity sized for 10 s, taken every second): memory
    /// stays at `capacity` points, the newest ones, even though all are within the hour.
    @Test func memoryStaysWithinCapacity() throws {
        let series = LiveSeries(capacity: 360)
        let statistics = PipelineStatistics(direction: "to-mongo")
        for i in 0...1000 {
            Self.step(series, statistics, changes: 1, lagMilliseconds: 0, at: Double(i))
        }
        let points = series.points
        #expect(points.count == 360)
        #expect(points.first?.time == Self.start.timeIntervalSince1970 + 641)
        #expect(points.last?.time == Self.start.timeIntervalSince1970 + 1000)
    }
}
