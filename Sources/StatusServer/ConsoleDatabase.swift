import Bridge
import Foundation
import Postgres
import Synchronization

/// The console's one PostgreSQL connection, owned by one dedicated thread: requests hand it
/// work and await the result, so blocking libpq calls never run on Swift's cooperative pool
/// and a busy console opens no connection per request. Jobs run one at a time, in order.
final class ConsoleDatabase: Sendable {
    /// Called on the worker thread with the connection (nil when none could be made, with the
    /// error) and whether this is the last attempt; returns false to ask for one more attempt
    /// on a fresh connection.
    typealias Job = @Sendable (PostgresConnection?, (any Error)?, _ lastAttempt: Bool) -> Bool

    private let url: String
    private let jobs = Mutex<(queue: [Job], stopped: Bool)>(([], false))
    private let wake = DispatchSemaphore(value: 0)

    struct Stopped: Error, CustomStringConvertible {
        var description: String { "the console's database worker has stopped" }
    }

    init(url: String) {
        self.url = url
        let thread = Thread { [self] in loop() }
        thread.name = "nocobridge-console-db"
        thread.start()
    }

    /// Runs `body` on the worker's connection. A body that failed because the connection
    /// broke (a PostgreSQL restart) runs once more on a new one, so it must be safe to repeat:
    /// reads are, and so are the console's actions (a retry re-decides, a drop is by id).
    func run<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let job: Job = { connection, connectError, lastAttempt in
                guard let connection else {
                    continuation.resume(throwing: connectError ?? Stopped())
                    return true
                }
                do {
                    continuation.resume(returning: try body(connection))
                } catch {
                    if !connection.isConnected && !lastAttempt { return false }
                    continuation.resume(throwing: error)
                }
                return true
            }
            let accepted = jobs.withLock { state -> Bool in
                guard !state.stopped else { return false }
                state.queue.append(job)
                return true
            }
            if accepted { wake.signal() } else { continuation.resume(throwing: Stopped()) }
        }
    }

    /// Lets the job in progress finish, fails the queued ones, and ends the thread.
    func stop() {
        jobs.withLock { $0.stopped = true }
        wake.signal()
    }

    private func loop() {
        var connection: PostgresConnection?
        while true {
            wake.wait()
            let next = jobs.withLock { state -> (job: Job?, stopped: Bool) in
                if state.stopped { return (nil, true) }
                return (state.queue.isEmpty ? nil : state.queue.removeFirst(), false)
            }
            if next.stopped {
                let pending = jobs.withLock { state -> [Job] in
                    defer { state.queue = [] }
                    return state.queue
                }
                for job in pending { _ = job(nil, Stopped(), true) }
                return
            }
            guard let job = next.job else { continue }
            for attempt in 1...2 {
                if connection?.isConnected != true {
                    do {
                        connection = try PostgresConnection(url: url, applicationName: "nocobridge-console")
                    } catch {
                        connection = nil
                        _ = job(nil, error, true)
                        break
                    }
                }
                let done = job(connection, nil, attempt == 2)
                if connection?.isConnected != true { connection = nil }
                if done { break }
            }
        }
    }
}
