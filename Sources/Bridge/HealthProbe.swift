import Mongo
import Postgres
import Synchronization
import SyncCore

/// The databases as `/status`, `/readyz` and `/metrics` see them, through one PostgreSQL
/// session and one MongoDB pool kept for the process's life (a scrape every few seconds must
/// not open connections). A broken session is replaced at the next reading.
public final class HealthProbe: Sendable {
    private let configuration: BridgeConfiguration
    private let connection = Mutex<PostgresConnection?>(nil)
    private let pool = Mutex<MongoClientPool?>(nil)

    public init(configuration: BridgeConfiguration) {
        self.configuration = configuration
    }

    struct Reading {
        /// Changelog backlog per table; nil when PostgreSQL did not answer.
        var backlog: [String: Int]?
        var slot: BridgeHealth.Slot?
        var mongoUp = false
        var skew: ServerCheck.Skew?
        var leases: [Inspection.Lease]?
        var instances: [Inspection.Instance]?
    }

    /// Blocking: call from a thread, not the cooperative pool.
    func read() -> Reading {
        var reading = Reading()
        var postgresOffset: ClockOffset?
        connection.withLock { c in
            do {
                let session: PostgresConnection
                if let existing = c, existing.isConnected {
                    session = existing
                } else {
                    session = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-status")
                    c = session
                }
                reading.backlog = try SyncedTablesStore.backlog(on: session)
                if configuration.capture == .logical, let retained = try LogicalSlot.retained(on: session) {
                    reading.slot = BridgeHealth.Slot(retainedWalBytes: retained.bytes, walStatus: retained.status)
                }
                postgresOffset = try ServerCheck.postgresOffset(on: session)
                let (leases, instances) = try Inspection.leases(on: session)
                reading.leases = leases
                reading.instances = instances
            } catch {
                c = nil
            }
        }
        pool.withLock { p in
            do {
                let mongo = try p ?? MongoClientPool(url: configuration.mongoURL, database: configuration.mongoDatabase,
                                                     instance: configuration.instanceID, serverSelectionTimeoutMS: 1000)
                p = mongo
                let info = try mongo.serverInfo()
                reading.mongoUp = true
                if let postgresOffset, let mongoOffset = info.clockOffset {
                    reading.skew = ServerCheck.skew(mongo: mongoOffset, postgres: postgresOffset)
                }
            } catch {
                reading.mongoUp = false
            }
        }
        return reading
    }
}
