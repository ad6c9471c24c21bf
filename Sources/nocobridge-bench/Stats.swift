import Foundation

/// Latency samples in microseconds, and how many changes never arrived within the window.
/// A lost change counts as slower than every arrived one, so a percentile is never flattered
/// by dropping the changes that did not make it: when it falls among the lost ones it is
/// unknown (nil, "> window" in the table).
struct Samples: Sendable {
    private(set) var values: [Double] = []
    private(set) var lost = 0

    mutating func add(_ microseconds: Double) { values.append(microseconds) }
    mutating func addLost() { lost += 1 }

    mutating func merge(_ other: Samples) {
        values += other.values
        lost += other.lost
    }

    var count: Int { values.count + lost }

    func percentile(_ p: Double) -> Double? {
        guard count > 0 else { return nil }
        let index = min(count - 1, max(0, Int((p / 100 * Double(count)).rounded(.up)) - 1))
        let sorted = values.sorted()
        return index < sorted.count ? sorted[index] : nil
    }

    /// How many arrived within `seconds` of being sent.
    func arrived(within seconds: Double) -> Int { values.filter { $0 <= seconds * 1e6 }.count }

    var summary: LatencySummary {
        LatencySummary(count: count, lost: lost, p50Ms: percentile(50).map(ms), p95Ms: percentile(95).map(ms),
                       p99Ms: percentile(99).map(ms), maxMs: lost > 0 ? nil : values.max().map(ms))
    }

    private func ms(_ us: Double) -> Double { us / 1000 }
}

/// Wall-clock time in microseconds. Stamps are compared across threads of this process only,
/// but the realtime clock is what PostgreSQL and MongoDB timestamps use too, which keeps a
/// stamp readable beside the servers' logs.
enum Clock {
    static func micros() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) * 1e6 + Double(ts.tv_nsec) / 1e3
    }

    static func seconds(since start: Double) -> Double { (micros() - start) / 1e6 }

    static func sleep(seconds: Double) {
        guard seconds > 0 else { return }
        usleep(UInt32(min(seconds, 4000) * 1e6))
    }

    /// Polls `condition` every `every` seconds until it holds; throws after `timeout`.
    static func wait(timeout: Double, every: Double = 0.02, _ what: String, _ condition: () throws -> Bool) throws {
        let deadline = micros() + timeout * 1e6
        while micros() < deadline {
            if try condition() { return }
            sleep(seconds: every)
        }
        throw BenchError("timed out after \(Int(timeout)) s waiting for \(what)")
    }
}

/// Resident memory of a child process, from /proc (Linux).
enum ProcessMemory {
    /// Peak resident set size (VmHWM), MiB.
    static func peakMiB(pid: Int32) -> Double? { field("VmHWM:", pid: pid) }
    /// Current resident set size (VmRSS), MiB.
    static func currentMiB(pid: Int32) -> Double? { field("VmRSS:", pid: pid) }

    private static func field(_ name: String, pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            return line.split(separator: " ").compactMap { Double($0) }.first.map { $0 / 1024 }
        }
        return nil
    }
}

/// Progress lines on stderr: the table and JSON are the results, these only show where a
/// long run is.
enum Progress {
    static func note(_ text: String) {
        FileHandle.standardError.write(Data(("[bench] " + text + "\n").utf8))
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
