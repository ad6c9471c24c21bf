import Logging
import Postgres
import Synchronization

/// Makes a second `nocobridge run` on the same databases a hot standby: the active instance
/// holds a session-level PostgreSQL advisory lock; the others poll for it. PostgreSQL drops
/// the lock the moment the holder's session ends (process killed, host gone), so a standby
/// takes over within `pollMilliseconds`. The holder checks its session as often and stops
/// working the moment it is lost, so two instances never work at once.
public final class LeaderLock: Sendable {
    private let url: String
    private let key: String
    private let logger: Logger
    private let pollMilliseconds: Int
    /// The lock session's application name, `nocobridge-leader/<instance>`: consoles tell
    /// which instance holds the lock from `pg_stat_activity` (`Inspection`).
    private let applicationName: String
    /// The lock's session: used by one thread at a time (waiting, then holding).
    private let session = Mutex<PostgresConnection?>(nil)

    public init(postgresURL: String, mongoDatabase: String, logger: Logger, pollMilliseconds: Int = 1000, instanceID: String = "") {
        url = postgresURL
        key = Inspection.leaderLockKey(mongoDatabase: mongoDatabase)
        applicationName = Inspection.leaderApplicationName(instanceID: instanceID)
        self.logger = logger
        self.pollMilliseconds = pollMilliseconds
    }

    /// Gives the lock back and closes its session.
    public func release() {
        session.withLock { connection in
            if let c = connection, c.isConnected { _ = try? c.query("SELECT pg_advisory_unlock(hashtext($1))", [key]) }
            connection = nil
        }
    }

    /// Waits until this instance holds the lock (true) or `stop` fires (false).
    func waitForLock(stop: StopSignal) -> Bool {
        var announced = false
        while !stop.isStopped {
            let held = session.withLock { connection -> Bool in
                do {
                    let c = try connection ?? PostgresConnection(url: url, applicationName: applicationName)
                    connection = c
                    return try c.query("SELECT pg_try_advisory_lock(hashtext($1)) AS held", [key]).named.first?["held"] == "t"
                } catch {
                    connection = nil
                    logger.warning("standby: cannot reach PostgreSQL", metadata: ["error": "\(error)"])
                    return false
                }
            }
            if held {
                logger.info("leader lock acquired; this instance is active")
                return true
            }
            if !announced {
                logger.info("standby: another nocobridge instance is active; waiting to take over")
                announced = true
            }
            stop.sleep(milliseconds: pollMilliseconds)
        }
        return false
    }

    /// Holds the lock until `stop` fires. If the lock's session is lost meanwhile, stops
    /// `stop` at once and returns true.
    func watchSession(stop: StopSignal) -> Bool {
        while !stop.isStopped {
            stop.sleep(milliseconds: pollMilliseconds)
            if stop.isStopped { break }
            let alive = session.withLock { connection -> Bool in
                guard let c = connection else { return false }
                return (try? c.query("SELECT 1")) != nil
            }
            if !alive {
                logger.error("leader lock session lost; stopping")
                stop.stop()
                return true
            }
        }
        return false
    }
}
