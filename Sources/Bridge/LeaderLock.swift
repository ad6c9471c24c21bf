import Foundation
import Logging
import Postgres

/// Makes a second `nocobridge run` on the same databases a hot standby: the active instance
/// holds a session-level PostgreSQL advisory lock; the others poll for it. PostgreSQL drops
/// the lock the moment the holder's session ends (process killed, host gone), so a standby
/// takes over within `pollInterval`. The holder checks its session every `pollInterval` too and
/// stops working the moment it is lost, so two instances never work at once.
public final class LeaderLock: Sendable {
    private let url: String
    private let key: String
    private let logger: Logger
    private let pollMilliseconds: Int
    private let acquired = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let state = StateBox()

    /// The lock session's application name, `nocobridge-leader/<instance>`: consoles tell
    /// which instance holds the lock from `pg_stat_activity` (`Inspection`).
    private let applicationName: String

    public init(postgresURL: String, mongoDatabase: String, logger: Logger, pollMilliseconds: Int = 1000, instanceID: String = "") {
        url = postgresURL
        key = Inspection.leaderLockKey(mongoDatabase: mongoDatabase)
        applicationName = Inspection.leaderApplicationName(instanceID: instanceID)
        self.logger = logger
        self.pollMilliseconds = pollMilliseconds
    }

    /// Starts the lock thread; returns once the lock is held (true) or `stop` fired (false).
    /// After that, `stop` fires by itself if the lock is lost (see `wasLost`).
    public func acquire(stop: StopSignal) async -> Bool {
        let thread = Thread { [self] in
            hold(stop: stop)
            finished.signal()
        }
        thread.name = "nocobridge-leader"
        thread.start()
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            Thread {
                self.acquired.wait()
                continuation.resume(returning: self.state.held)
            }.start()
        }
    }

    public var wasLost: Bool { state.lost }

    /// Waits until the lock thread has released the lock and closed its session.
    public func release() { finished.wait() }

    private func hold(stop: StopSignal) {
        var connection: PostgresConnection?
        var announced = false
        // Phase 1: wait for the lock.
        while !stop.isStopped {
            do {
                let c = try connection ?? PostgresConnection(url: url, applicationName: applicationName)
                connection = c
                if try c.query("SELECT pg_try_advisory_lock(hashtext($1))", [key]).rows.first?[0] == "t" {
                    state.held = true
                    break
                }
                if !announced {
                    logger.info("standby: another nocobridge instance is active; waiting to take over")
                    announced = true
                }
            } catch {
                connection = nil
                logger.warning("standby: cannot reach PostgreSQL", metadata: ["error": "\(error)"])
            }
            stop.sleep(milliseconds: pollMilliseconds)
        }
        acquired.signal()
        guard state.held, let c = connection else { return }
        logger.info("leader lock acquired; this instance is active")
        // Phase 2: hold it; stop everything if the session is lost.
        while !stop.isStopped {
            stop.sleep(milliseconds: pollMilliseconds)
            if stop.isStopped { break }
            do {
                try c.query("SELECT 1")
            } catch {
                state.lost = true
                logger.error("leader lock session lost; stopping", metadata: ["error": "\(error)"])
                stop.stop()
                return
            }
        }
        _ = try? c.query("SELECT pg_advisory_unlock(hashtext($1))", [key])
    }

    private final class StateBox: @unchecked Sendable {
        // @unchecked: written by the lock thread before `acquired.signal()` (held) or before
        // `stop.stop()` (lost), and read after those synchronise; a lock guards the rest.
        private let lock = NSLock()
        private var _held = false
        private var _lost = false
        var held: Bool {
            get { lock.withLock { _held } }
            set { lock.withLock { _held = newValue } }
        }
        var lost: Bool {
            get { lock.withLock { _lost } }
            set { lock.withLock { _lost = newValue } }
        }
    }
}
