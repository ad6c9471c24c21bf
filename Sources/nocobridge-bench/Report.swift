import Foundation

/// The human-readable table printed after a run; every figure in it is also in the JSON.
struct Report {
    let results: BenchResults

    init(_ results: BenchResults) { self.results = results }

    func table() -> String {
        var lines: [String] = [""]
        steady(&lines)
        raw(&lines)
        throughput(&lines)
        headOfLine(&lines)
        other(&lines)
        return lines.joined(separator: "\n") + "\n"
    }

    private func steady(_ lines: inout [String]) {
        guard !results.steady.isEmpty else { return }
        lines.append("STEADY LATENCY at \(Int(results.rateOfSingleChangesPerS)) single-row changes/s (floor = raw relay on the same servers in the same state, in rounds alternating with the bridge's)")
        lines.append("  " + pad("mode / direction", 22) + pad("floor p50 / p99", 20) + pad("bridge p50 / p95 / p99 / max", 34) + "p50 ratio (goal ≤ 1.5; p99 ≤ 10 ms)")
        for mode in ["triggers", "logical"] {
            guard let m = results.steady[mode] else { continue }
            for (name, d) in [("to_mongo", m.toMongo), ("to_nocodb", m.toNocodb)] {
                let floor = "\(ms(d.floor.p50Ms)) / \(ms(d.floor.p99Ms))"
                let bridge = "\(ms(d.bridge.p50Ms)) / \(ms(d.bridge.p95Ms)) / \(ms(d.bridge.p99Ms)) / \(ms(d.bridge.maxMs))"
                let lost = d.bridge.lost + d.floor.lost > 0 ? "  lost: floor \(d.floor.lost), bridge \(d.bridge.lost)" : ""
                let spread = d.ratioP50Min.flatMap { lo in d.ratioP50Max.map { hi in String(format: " (rounds %.2f–%.2f×)", lo, hi) } } ?? ""
                lines.append("  " + pad("\(mode) \(name)", 22) + pad(floor, 20) + pad(bridge, 34) + times(d.ratioP50) + spread + lost)
                let h = d.floorHops
                lines.append("  " + pad("", 22) + "floor hops p50: capture \(ms(h.captureP50Ms)), relay write \(ms(h.relayWriteP50Ms)), observer \(ms(h.observeP50Ms))")
            }
        }
        let insert = results.nocodbInsert
        if insert.withCaptureTriggers != nil || insert.logicalCapture != nil {
            func both(_ s: LatencySummary?) -> String { s.map { "p50 \(ms($0.p50Ms)) p99 \(ms($0.p99Ms))" } ?? "-" }
            lines.append("  NocoDB's own single-row INSERT: with capture triggers \(both(insert.withCaptureTriggers)); logical capture (key trigger only) \(both(insert.logicalCapture))")
        }
        lines.append("")
    }

    private func raw(_ lines: inout [String]) {
        guard let r = results.rawBulk else { return }
        lines.append("RAW BULK RATES (same run, bridge stopped, copies with the bridge's indexes, \(r.records) records, 1,000 a batch)")
        lines.append("  MongoDB bulk insert, bridge-like stream open       \(rate(r.mongoInsertPerS))   (all read by the stream: \(rate(r.streamInsertDeliveryPerS)))")
        lines.append("  MongoDB bulk upsert by externalId, stream open     \(rate(r.mongoUpsertPerS))   (no stream: \(rate(r.mongoUpsertNoStreamPerS)); \(r.upsertsTimed) timed)")
        lines.append("  change stream delivery of one updateMany           \(rate(r.streamDeliveryPerS)) live (updateMany itself \(String(format: "%.1f", r.updateManySeconds)) s), \(rate(r.streamCatchUpPerS)) read back later")
        lines.append("  PostgreSQL multi-row INSERT / upsert               \(rate(r.pgInsertRowsPerS)) / \(rate(r.pgUpsertRowsPerS))")
        lines.append("")
    }

    private func throughput(_ lines: inout [String]) {
        guard let t = results.throughput, let c = results.catchUp else { return }
        lines.append("THROUGHPUT (bridge, against the raw rate of the same operation; goal ≥ 80 %)")
        for (name, d) in [("to_mongo inserts (seed)", t.toMongoInsert), ("to_nocodb inserts", t.toNocodbInsert),
                          ("to_mongo bulk UPDATE", t.toMongoBulkUpdate),
                          ("to_nocodb updateMany", t.toNocodbBulkUpdate), ("catch-up to_mongo (restart)", c.toMongo),
                          ("catch-up to_nocodb (restart)", c.toNocodb)] {
            lines.append("  " + pad("\(name), \(d.changes)", 38) + pad(String(format: "%.1f s", d.seconds), 9) + pad(rate(d.perS), 10)
                         + "= \(percent(d.ratio)) of \(d.rawIs) \(rate(d.rawPerS))" + (d.verified ? "" : "  NOT VERIFIED"))
        }
        lines.append(String(format: "  settled (sentinels through every table both ways) %.1f s after the UPDATE, %.1f s after the updateMany",
                            t.settleAfterToMongoBulkS, t.settleAfterToNocodbBulkS))
        lines.append("")
    }

    private func headOfLine(_ lines: inout [String]) {
        guard let h = results.headOfLine else { return }
        lines.append("HEAD-OF-LINE: \(h.duringNocodbBulkUpdate.sent) single-row inserts into another table at 10/s (goal p50 ≤ 50 ms)")
        for (name, p) in [("during NocoDB bulk UPDATE → MongoDB", h.duringNocodbBulkUpdate),
                          ("during MongoDB updateMany → NocoDB", h.duringMongoUpdateMany),
                          ("restart, NocoDB backlog → MongoDB", h.afterRestartWithNocodbBacklog),
                          ("restart, MongoDB backlog → NocoDB", h.afterRestartWithMongoBacklog)] {
            let ready = p.bridgeReadyS.map { String(format: "; probes from /readyz, %.2f s after start", $0) } ?? ""
            let late = p.probes.lost > 0 ? "  (eventually p50 \(ms(p.eventual.p50Ms)), max \(ms(p.eventual.maxMs)))" : ""
            lines.append("  " + pad(name, 38) + "p50 \(ms(p.probes.p50Ms))  p99 \(ms(p.probes.p99Ms))  max \(ms(p.probes.maxMs))  "
                         + "within \(Int(p.windowS)) s: \(p.arrivedWithinWindow)/\(p.sent)" + late)
            lines.append("  " + pad("", 38) + "\(p.sentWhileBulkInFlight) of \(p.sent) sent while the bulk was in flight" + ready)
        }
        lines.append("")
    }

    private func other(_ lines: inout [String]) {
        let m = results.bridgeMemory
        if m.peakMib != nil {
            lines.append("BRIDGE MEMORY: peak RSS \(mib(m.peakMib)) (after the steady runs \(mib(m.afterSteadyMib)), after the catch-ups \(mib(m.afterCatchUpMib)))")
        }
        if let r = results.resync {
            lines.append("RESYNC: \(r.rowsPerSide) rows per side, 10 % different: \(String(format: "%.1f", r.seconds)) s = \(rate(r.keysPerS)) keys "
                         + "= \(percent(r.ratioToSlowerScan)) of the slower raw sorted scan (PostgreSQL \(rate(r.rawScanPgRowsPerS)) rows, "
                         + "MongoDB \(rate(r.rawScanMongoDocsPerS)) docs); peak RSS \(mib(r.peakRssMib))")
        }
        if let h = results.history {
            for b in h.batches {
                lines.append("RECORD HISTORY, batches of \(b.size): PostgreSQL writes p50 \(ms(b.postgresWriteP50MsWith)) with, \(ms(b.postgresWriteP50MsWithout)) without; "
                             + "whole batch p50 \(ms(b.batchP50MsWith)) / \(ms(b.batchP50MsWithout)), p90 \(ms(b.batchP90MsWith)) / \(ms(b.batchP90MsWithout))")
            }
            lines.append("RECORD HISTORY: \(h.bytesPerEntryWithIndexes.map { String(format: "%.0f", $0) } ?? "-") bytes per entry with indexes "
                         + "(\(h.bytesPerEntryHeap.map { String(format: "%.0f", $0) } ?? "-") in the table), \(h.entries) entries")
        }
        if let r = results.instances {
            lines.append("SEVERAL INSTANCES (\(r.tables) tables, \(r.rowsPerTable) NocoDB inserts each, drained to MongoDB)")
            for run in r.runs {
                let per = run.perInstance.map { i in
                    "\(i.tables) tables (\(percent(i.share)), cpu \(i.cpuSeconds.map { String(format: "%.1f s", $0) } ?? "-"))"
                }.joined(separator: ", ")
                lines.append("  \(run.instances) instance\(run.instances == 1 ? " " : "s"): \(rate(run.changesPerS)) in \(String(format: "%.1f", run.seconds)) s; \(per)")
            }
        }
        if let s = results.seconds { lines.append("(\(results.mode) run, \(Int(s)) s)") }
    }

    private func ms(_ v: Double?) -> String { v.map { String(format: "%.2f ms", $0) } ?? "> window" }
    private func times(_ v: Double?) -> String { v.map { String(format: "%.2f×", $0) } ?? "-" }
    private func percent(_ v: Double?) -> String { v.map { String(format: "%.0f %%", $0 * 100) } ?? "-" }
    private func rate(_ v: Double?) -> String { v.map { String(format: "%.0f/s", $0) } ?? "-" }
    private func mib(_ v: Double?) -> String { v.map { String(format: "%.1f MiB", $0) } ?? "-" }
    private func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count) }
}
