import Foundation
import Mongo
import Postgres
import SyncCore

/// Steady single-row latency in one capture mode: for each direction the floor relay and
/// the bridge, at the same rate, in alternating rounds (floor, bridge, bridge, floor, …) whose
/// samples are pooled. The servers drift over a run (this one's change-stream reads slow as
/// its oplog grows, checkpoints come and go): measured once each, one after the other, the
/// floors moved by up to 0.9 ms between runs and whichever went second paid for the drift.
/// Alternating makes a drift weigh on both alike. Otherwise like with like: same servers,
/// same indexes, one change stream like the bridge's open, the observer's stream open in both.
struct SteadyLatency {
    let harness: Harness
    var settings: Settings { harness.settings }

    struct Outcome {
        let mode: SteadyMode
        let nocodbInsert: LatencySummary
        let bridgeMiB: Double?
    }

    /// One side's measurements of one direction, pooled over the rounds.
    private struct Pooled {
        var samples = Samples()
        var maxLagMs = 0.0
        var hops: [FloorHops] = []
        var p50ByRound: [Double?] = []

        mutating func add(_ measured: Measured, hops roundHops: FloorHops? = nil) {
            samples.merge(measured.samples)
            maxLagMs = max(maxLagMs, measured.outcome.maxLagMs)
            if let roundHops { hops.append(roundHops) }
            p50ByRound.append(measured.samples.percentile(50))
        }
    }

    func run(_ capture: NocoBridgeCLI.Capture) throws -> Outcome {
        let admin = try harness.base.connect("bench-admin")
        try FloorRelay.install(capture, on: admin)
        var floors: [Direction: Pooled] = [:], bridges: [Direction: Pooled] = [:]
        var bridgeMiB: Double?
        for round in 0..<settings.steadyRounds {
            let floorFirst = round % 2 == 0
            for floorTurn in floorFirst ? [true, false] : [false, true] {
                if floorTurn {
                    try measureFloor(capture, round: round, into: &floors)
                } else {
                    bridgeMiB = try measureBridge(capture, round: round, into: &bridges)
                }
            }
        }
        try FloorRelay.remove(on: admin)

        // NocoDB's own INSERT with this capture in place (the bridge stopped).
        let insert = try nocodbInsertLatency(label: "ins-\(capture.rawValue)")

        var directions: [Direction: SteadyDirection] = [:]
        for direction in Direction.allCases {
            let floor = floors[direction]!, bridge = bridges[direction]!
            let roundRatios = zip(bridge.p50ByRound, floor.p50ByRound).compactMap { ratio($0, $1) }
            directions[direction] = SteadyDirection(
                floor: floor.samples.summary, floorHops: FloorHops(medianOf: floor.hops), bridge: bridge.samples.summary,
                ratioP50: ratio(bridge.samples.percentile(50), floor.samples.percentile(50)),
                ratioP99: ratio(bridge.samples.percentile(99), floor.samples.percentile(99)),
                floorSendLagMaxMs: floor.maxLagMs, bridgeSendLagMaxMs: bridge.maxLagMs,
                rounds: settings.steadyRounds, ratioP50Min: roundRatios.min(), ratioP50Max: roundRatios.max())
            Progress.note("\(capture.rawValue) \(direction.rawValue): floor p50 \(ms(floor.samples.percentile(50))) ms, "
                          + "bridge p50 \(ms(bridge.samples.percentile(50))) ms p99 \(ms(bridge.samples.percentile(99))) ms, "
                          + "round ratios \(roundRatios.map { String(format: "%.2f", $0) }.joined(separator: " "))")
        }
        let mode = SteadyMode(toMongo: directions[.toMongo]!, toNocodb: directions[.toNocodb]!)
        return Outcome(mode: mode, nocodbInsert: insert, bridgeMiB: bridgeMiB)
    }

    /// Both directions through the raw relay, the bridge stopped.
    private func measureFloor(_ capture: NocoBridgeCLI.Capture, round: Int, into floors: inout [Direction: Pooled]) throws {
        // The relay's slot, idle while a bridge round ran, would first decode all of that
        // round's WAL: the floor would start behind (the bridge's rounds start with a barrier).
        if capture == .logical { try FloorRelay.skipBacklog(on: harness.base.connect("bench-admin")) }
        for direction in Direction.allCases {
            let relay = try FloorRelay(url: harness.base.url, mongoURL: harness.base.mongoURL, capture: capture, direction: direction)
            try relay.start()
            defer { relay.stop() }
            let measured = try measure(direction, label: "\(capture.rawValue)-floor-r\(round)", check: relay.check) { stamp, i, key in
                switch direction {
                case .toMongo: try harness.insertProbeRow(stamp: stamp, number: i, table: BenchBase.floorProbeTable, key: key)
                case .toNocodb: try harness.insertProbeDocument(stamp: stamp, number: i, key: key, collection: BenchBase.floorProbeTable)
                }
            }
            let hops = relay.hops.medians(measured.outcome.sent.dropFirst(settings.warmup), arrivals: harness.arrivals)
            floors[direction, default: Pooled()].add(measured, hops: hops)
            Progress.note("\(capture.rawValue) floor \(direction.rawValue) round \(round + 1): p50 \(ms(measured.samples.percentile(50))) ms "
                          + "(capture \(ms(hops.captureP50Ms.map { $0 * 1000 })), relay write \(ms(hops.relayWriteP50Ms.map { $0 * 1000 })), "
                          + "observer \(ms(hops.observeP50Ms.map { $0 * 1000 })))")
        }
    }

    /// Both directions through the bridge, started for the round and stopped after it.
    private func measureBridge(_ capture: NocoBridgeCLI.Capture, round: Int, into bridges: inout [Direction: Pooled]) throws -> Double? {
        let bridge = try harness.startBridge(capture)
        defer { harness.stop(bridge) }
        try bridge.waitReady()
        try harness.barrier(check: bridge.checkRunning)
        for direction in Direction.allCases {
            let measured = try measure(direction, label: "\(capture.rawValue)-bridge-r\(round)", check: bridge.checkRunning) { stamp, i, key in
                try harness.sendProbe(direction, stamp: stamp, number: i, key: key)
            }
            bridges[direction, default: Pooled()].add(measured)
            Progress.note("\(capture.rawValue) bridge \(direction.rawValue) round \(round + 1): p50 \(ms(measured.samples.percentile(50))) ms "
                          + "p99 \(ms(measured.samples.percentile(99))) ms")
        }
        return bridge.currentMiB
    }

    struct Measured {
        let samples: Samples
        let outcome: PacedLoad.Outcome
    }

    /// Warm-up plus the measured changes, open loop; the warm-up is sent but not counted.
    private func measure(_ direction: Direction, label: String, check: @escaping () throws -> Void,
                         send: (String, Int, String) throws -> Void) throws -> Measured {
        let load = PacedLoad(direction: direction, label: "\(label)-\(direction.rawValue)",
                             count: settings.warmup + settings.latencyCount / settings.steadyRounds, rate: settings.rate)
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
