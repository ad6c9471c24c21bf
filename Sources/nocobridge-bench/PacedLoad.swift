import Foundation

/// Single-row changes sent open loop: change i is due at start + i / rate whatever happened
/// to change i − 1, so a slow bridge cannot slow the load down and hide its own latency.
/// Each change carries a stamp; its send time is taken just before the write is issued.
struct PacedLoad {
    let direction: Direction
    /// Unique within the run: stamps are looked up by text.
    let label: String
    let count: Int
    let rate: Double

    struct Sent {
        let stamp: String
        let micros: Double
    }

    struct Outcome {
        let sent: [Sent]
        /// How far the sender fell behind its schedule at worst (a blocked source write).
        let maxLagMs: Double
    }

    /// `send(stamp, i)` writes change i on the source side.
    func run(_ send: (String, Int) throws -> Void) throws -> Outcome {
        let interval = 1e6 / rate
        let start = Clock.micros()
        var sent: [Sent] = []
        sent.reserveCapacity(count)
        var maxLag = 0.0
        for i in 0..<count {
            let due = start + Double(i) * interval
            let wait = due - Clock.micros()
            if wait > 0 { usleep(UInt32(wait)) }
            let stamp = direction.stamp("\(label)-\(i)")
            let now = Clock.micros()
            maxLag = max(maxLag, now - due)
            try send(stamp, i)
            sent.append(Sent(stamp: stamp, micros: now))
        }
        return Outcome(sent: sent, maxLagMs: maxLag / 1000)
    }
}

/// Turns sent stamps into latencies once they arrived, or once `window` seconds passed after
/// the last send; a change not seen within `window` of its own send is lost.
struct LatencyCollector {
    let arrivals: Arrivals
    let window: Double
    /// Throws when an observer died, instead of waiting out the window for nothing.
    let check: () throws -> Void

    func collect(_ outcome: PacedLoad.Outcome, droppingFirst warmup: Int = 0) throws -> Samples {
        let deadline = (outcome.sent.last?.micros ?? Clock.micros()) + window * 1e6
        while Clock.micros() < deadline {
            try check()
            if outcome.sent.allSatisfy({ arrivals.arrival(of: $0.stamp) != nil }) { break }
            Clock.sleep(seconds: 0.01)
        }
        return samples(outcome, droppingFirst: warmup)
    }

    /// What arrived so far, without waiting.
    func samples(_ outcome: PacedLoad.Outcome, droppingFirst warmup: Int = 0) -> Samples {
        var samples = Samples()
        for sent in outcome.sent.dropFirst(warmup) {
            if let at = arrivals.arrival(of: sent.stamp), at - sent.micros <= window * 1e6 {
                samples.add(at - sent.micros)
            } else {
                samples.addLost()
            }
        }
        return samples
    }
}
