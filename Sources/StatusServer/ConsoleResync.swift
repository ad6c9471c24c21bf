import Bridge
import Foundation
import Logging
import Synchronization

/// A resync started from the console, run in the bridge's process on a thread of its own
/// (it blocks in libpq and libmongoc for as long as it takes). `Resync` takes its advisory
/// lock, so one started here and one from a terminal never run together; its progress goes
/// to `nocobridge.resync_progress` like any other.
final class ConsoleResync: Sendable {
    struct State: Sendable {
        var running = false
        var startedAt: Date?
        var finishedAt: Date?
        /// One line: the report's summary, or why it failed.
        var result: String?
        var failed = false
    }

    private let state = Mutex(State())
    let configuration: BridgeConfiguration
    let logger: Logger

    init(configuration: BridgeConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    var current: State { state.withLock { $0 } }

    /// Starts one (reconciling both sides with the conflict policy, as `nocobridge resync`
    /// does by default); false when one started here is still running.
    func start() -> Bool {
        let started = state.withLock { s -> Bool in
            guard !s.running else { return false }
            s = State(running: true, startedAt: Date())
            return true
        }
        guard started else { return false }
        let thread = Thread { [self] in
            logger.notice("resync started from the console")
            let outcome: (String, Bool)
            do {
                let report = try Resync(configuration: configuration, options: ResyncOptions(), logger: logger).run()
                let t = report.tables
                outcome = ("\(t.count) tables: \(t.map(\.nocodbWrites).reduce(0, +)) written to NocoDB, \(t.map(\.mongoWrites).reduce(0, +)) to MongoDB, "
                           + "\(t.map(\.conflicts).reduce(0, +)) conflicts, \(t.map(\.rejected).reduce(0, +)) dead letters", false)
            } catch {
                logger.error("resync started from the console failed", metadata: ["error": "\(error)"])
                outcome = ("\(error)", true)
            }
            self.state.withLock { s in
                s.running = false
                s.finishedAt = Date()
                s.result = outcome.0
                s.failed = outcome.1
            }
        }
        thread.name = "nocobridge-console-resync"
        thread.start()
        return true
    }
}
