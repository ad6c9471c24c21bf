import Foundation
import Mongo
import Postgres
import SyncCore

/// Steady single-row latency in one capture mode: for each direction the floor relay, then
/// the bridge, each at the same rate with the same count, one right after the other, so the
/// ratio compares like with like (same servers, same indexes, one change stream like the
/// bridge's open, the observer's stream open in both).
struct SteadyLatency {
    let harness: Harness
    var settings: Settings { harness.settings }

    struct Outcome {
        let mode: SteadyMode
        let nocodbInsert: LatencySummary
        let bridgeMiB: Double?
    }

    func run(_ capture: NocoBridgeCLI.Capture) throws -> Outcome {
        let admin = try harness.base.connect("bench-admin")
        try FloorRelay.install(capture, on: admin)
        var floors: [Direction: (measured: Measured, hops: FloorHops)] = [:]
        for direction in Direction.allCases {
            let relay = try FloorRelay(url: harness.base.url, mongoURL: harness.base.mongoURL, capture: capture, direction: direction)
            try relay.start()
            defer { relay.stop() }
            let measured = try measure(direction, label: "\(capture.rawValue)-floor", check: relay.check) { stamp, i, key in
                switch direction {
                case .toMongo: try harness.insertProbeRow(stamp: stamp, number: i, table: BenchBase.floorProbeTable, key: key)
                case .toNocodb: try harness.insertProbeDocument(stamp: stamp, number: i, key: key, collection: BenchBase.floorProbeTable)
                }
            }
            let hops = relay.hops.medians(measured.outcome.sent.dropFirst(settings.warmup), arrivals: harness.arrivals)
            floors[direction] = (measured, hops)
            Progress.note("\(capture.rawValue) floor \(direction.rawValue): p50 \(ms(measured.samples.percentile(50))) ms "
                          + "(capture \(ms(hops.captureP50Ms.map { $0 * 1000 })), relay write \(ms(hops.relayWriteP50Ms.map { $0 * 1000 })), "
                          + "observer \(ms(hops.observeP50Ms.map { $0 * 1000 })))")
        }
        try FloorRelay.remove(on: admin)

        // NocoDB's own INSERT with this capture in place (the bridge stopped, as before).
        let insert = try nocodbInsertLatency(label: "ins-\(capture.rawValue)")

        let bridge = try harness.startBridge(capture)
        defer { harness.stop(bridge) }
        try bridge.waitReady()
        try harness.barrier(check: bridge.checkRunning)
        var directions: [Direction: SteadyDirection] = [:]
        for direction in Direction.allCases {
            let measured = try measure(direction, label: "\(capture.rawValue)-bridge", check: bridge.checkRunning) { stamp, i, key in
                try harness.sendProbe(direction, stamp: stamp, number: i, key: key)
            }
            let samples = measured.samples
            let (floor, hops) = floors[direction]!
            directions[direction] = SteadyDirection(
                floor: floor.samples.summary, floorHops: hops, bridge: samples.summary,
                ratioP50: ratio(samples.percentile(50), floor.samples.percentile(50)),
                ratioP99: ratio(samples.percentile(99), floor.samples.percentile(99)),
                floorSendLagMaxMs: floor.outcome.maxLagMs, bridgeSendLagMaxMs: measured.outcome.maxLagMs)
            Progress.note("\(capture.rawValue) bridge \(direction.rawValue): p50 \(ms(samples.percentile(50))) ms p99 \(ms(samples.percentile(99))) ms")
        }
        let mode = SteadyMode(toMongo: directions[.toMongo]!, toNocodb: directions[.toNocodb]!)
        return Outcome(mode: mode, nocodbInsert: insert, bridgeMiB: bridge.currentMiB)
    }

    struct Measured {
        let samples: Samples
        let outcome: PacedLoad.Outcome
    }

    /// Warm-up plus the measured changes, open loop; the warm-up is sent but not counted.
    private func measure(_ direction: Direction, label: String, check: @escaping () throws -> Void,
                         send: (String, Int, String) throws -> Void) throws -> Measured {
        let load = PacedLoad(direction: direction, label: "\(label)-\(direction.rawValue)",
                             count: settings.warmup + settings.latencyCount, rate: settings.rate)
        let outcome = try load.run { stamp, i in try send(stamp, i, "\(label)-\(direction.rawValue)-\(i)") }
        let samples = try harness.collector(window: settings.steadyWindow, also: check).collect(outcome, droppingFirst: settings.warmup)
        return Measured(samples: samples, outcome: outcome)
    }

    /// NocoDB's single-row INSERT, back to back, as NocoDB users feel it.
    private func nocodbInsertLatency(label: String) throws -> LatencySummary {
        var samples = Samples()
        for i in 0..<settings.latencyCount {
            let t0 = Clock.micros()
            try harness.source.query("INSERT INTO \(BenchBase.quoted(BenchBase.probeTable)) (\"externalId\", \"table_no\", \"action\") VALUES ($1, $2, 'seat')",
                                     ["\(label)-\(i)", String(i)])
            samples.add(Clock.micros() - t0)
        }
        return samples.summary
    }

    private func ratio(_ a: Double?, _ b: Double?) -> Double? {
        guard let a, let b, b > 0 else { return nil }
        return a / b
    }

    private func ms(_ us: Double?) -> String { us.map { String(format: "%.2f", $0 / 1000) } ?? ">window" }
}
