import Bridge
import BuildInfo
import CoreMetrics
import Prometheus
import Synchronization

/// The Prometheus registry behind `/metrics`. The pipelines report into it through
/// swift-metrics (`factory`); the gauges that only make sense when asked (server reachable,
/// changelog backlog, dead letters waiting, leadership) are set from a fresh health check and
/// database read at each scrape.
public struct MetricsExport: Sendable {
    public let registry: PrometheusCollectorRegistry
    public let factory: any MetricsFactory
    /// The slot gauge's current `wal_status` series, replaced (not added to) when the status
    /// changes, so a sum over the gauge never counts a stale status twice.
    private let slotGauge = SlotGauge()

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
        registry.makeGauge(descriptor: Help.build, labels: [("version", BuildInfo.version), ("commit", BuildInfo.commit)]).set(to: 1)
    }

    /// Prometheus text exposition (format 0.0.4).
    /// - Parameters:
    ///   - inspection: the database figures of this scrape (nil when PostgreSQL did not answer:
    ///     those gauges keep their last values, and `nocobridge_up{server="postgres"}` says why).
    ///   - leader: this instance holds at least one lease (its pipelines for those tables run).
    ///   - leasesHeld: how many leases this instance holds.
    public func text(after health: BridgeHealth, inspection: Inspection? = nil, leader: Bool? = nil, leasesHeld: Int? = nil) -> String {
        registry.makeGauge(descriptor: Help.up, labels: [("server", "postgres")]).set(to: health.postgres ? 1.0 : 0.0)
        registry.makeGauge(descriptor: Help.up, labels: [("server", "mongo")]).set(to: health.mongo ? 1.0 : 0.0)
        for direction in health.directions.values {
            for (table, t) in direction.tables {
                guard let backlog = t.backlog else { continue }
                registry.makeGauge(descriptor: Help.backlog, labels: [("table", table)]).set(to: Double(backlog))
            }
        }
        if let slot = health.logicalSlot {
            slotGauge.set(Double(slot.retainedWalBytes), status: slot.walStatus, registry: registry)
        }
        if let leader {
            registry.makeGauge(descriptor: Help.leader).set(to: leader ? 1 : 0)
        }
        if let leasesHeld {
            registry.makeGauge(descriptor: Help.leasesHeld).set(to: Double(leasesHeld))
        }
        if let inspection {
            for (table, n) in inspection.deadLetters {
                registry.makeGauge(descriptor: Help.deadLettersWaiting, labels: [("table", table)]).set(to: Double(n))
            }
            for (table, age) in inspection.oldestChangeSeconds {
                registry.makeGauge(descriptor: Help.oldestChange, labels: [("table", table)]).set(to: age)
            }
            registry.makeGauge(descriptor: Help.resyncRunning).set(to: inspection.resyncRunning ? 1 : 0)
            registry.makeGauge(descriptor: Help.leaseUnits).set(to: Double(inspection.leases.count))
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
        static var build: MetricNameDescriptor {
            MetricNameDescriptor(metricName: ConsoleMetricName.buildInfo, unitName: "", helpText: "Always 1; the labels name the running version and git commit.")
        }
        static var leader: MetricNameDescriptor {
            MetricNameDescriptor(metricName: ConsoleMetricName.leader, unitName: "",
                                 helpText: "1 while this instance holds at least one table's lease and syncs it; 0 for a standby.")
        }
        static var leasesHeld: MetricNameDescriptor {
            MetricNameDescriptor(metricName: ConsoleMetricName.leasesHeld, unitName: "",
                                 helpText: "Leases (tables, or the logical slot) this instance holds and syncs.")
        }
        static var leaseUnits: MetricNameDescriptor {
            MetricNameDescriptor(metricName: ConsoleMetricName.leaseUnits, unitName: "",
                                 helpText: "Leases there are to hold in nocobridge.leases (at scrape).")
        }
        static var deadLettersWaiting: MetricNameDescriptor {
            MetricNameDescriptor(metricName: ConsoleMetricName.deadLettersWaiting, unitName: "",
                                 helpText: "Dead letters waiting in nocobridge.dead_letters (at scrape).")
        }
        static var oldestChange: MetricNameDescriptor {
            MetricNameDescriptor(metricName: ConsoleMetricName.oldestChange, unitName: "",
                                 helpText: "Age of the oldest change waiting in the changelog, 0 when none waits (at scrape).")
        }
        static var resyncRunning: MetricNameDescriptor {
            MetricNameDescriptor(metricName: ConsoleMetricName.resyncRunning, unitName: "", helpText: "1 while a resync runs on this database.")
        }
        static func slotDescriptor() -> MetricNameDescriptor { slot }
    }

    /// Keeps one slot series: the gauge of the status seen last.
    private final class SlotGauge: Sendable {
        private let current = Mutex<(status: String, gauge: Prometheus.Gauge)?>(nil)

        func set(_ value: Double, status: String, registry: PrometheusCollectorRegistry) {
            current.withLock { c in
                if let c0 = c, c0.status != status {
                    registry.unregisterGauge(c0.gauge)
                    c = nil
                }
                let gauge = c?.gauge ?? registry.makeGauge(descriptor: Help.slotDescriptor(), labels: [("wal_status", status)])
                gauge.set(to: value)
                c = (status, gauge)
            }
        }
    }
}

/// Metric names added for the console and alerting (`deploy/alerts.yml`), next to `MetricName`.
public enum ConsoleMetricName {
    public static let buildInfo = "nocobridge_build_info"
    public static let leader = "nocobridge_leader"
    public static let leasesHeld = "nocobridge_leases_held"
    public static let leaseUnits = "nocobridge_lease_units"
    public static let deadLettersWaiting = "nocobridge_dead_letters_waiting"
    public static let oldestChange = "nocobridge_changelog_oldest_change_seconds"
    public static let resyncRunning = "nocobridge_resync_running"
}
