import Bridge
import CoreMetrics
import Prometheus

/// The Prometheus registry behind `/metrics`. The pipelines report into it through
/// swift-metrics (`factory`); the gauges that only make sense when asked (server reachable,
/// changelog backlog) are set from a fresh health check at each scrape.
public struct MetricsExport: Sendable {
    public let registry: PrometheusCollectorRegistry
    public let factory: any MetricsFactory

    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Batches apply in about a millisecond here; the default buckets start at 5 ms.
        factory.durationHistogramBuckets[MetricName.applyDuration] = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(5),
        ]
        factory.valueHistogramBuckets[MetricName.batchSize] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000]
        self.factory = factory
    }

    /// Prometheus text exposition (format 0.0.4).
    public func text(after health: BridgeHealth) -> String {
        registry.makeGauge(descriptor: Help.up, labels: [("server", "postgres")]).set(to: health.postgres ? 1.0 : 0.0)
        registry.makeGauge(descriptor: Help.up, labels: [("server", "mongo")]).set(to: health.mongo ? 1.0 : 0.0)
        for direction in health.directions.values {
            for (table, t) in direction.tables {
                guard let backlog = t.backlog else { continue }
                registry.makeGauge(descriptor: Help.backlog, labels: [("table", table)]).set(to: Double(backlog))
            }
        }
        if let slot = health.logicalSlot {
            registry.makeGauge(descriptor: Help.slot, labels: [("wal_status", slot.walStatus)]).set(to: Double(slot.retainedWalBytes))
        }
        return registry.emitToString()
    }

    /// Names are complete already (`MetricName`), so no unit suffix is added. Computed:
    /// the descriptor type is not `Sendable`.
    private enum Help {
        static var up: MetricNameDescriptor {
            MetricNameDescriptor(metricName: MetricName.up, unitName: "", helpText: "1 when the server answered a ping at the last scrape.")
        }
        static var backlog: MetricNameDescriptor {
            MetricNameDescriptor(metricName: MetricName.backlog, unitName: "", helpText: "Changelog rows waiting to cross to MongoDB.")
        }
        static var slot: MetricNameDescriptor {
            MetricNameDescriptor(metricName: MetricName.slotRetainedBytes, unitName: "", helpText: "WAL the logical replication slot keeps (bytes).")
        }
    }
}
