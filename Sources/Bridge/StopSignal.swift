import Foundation
import Logging
import Synchronization

/// Tells a pipeline thread to finish. Besides the flag it owns a pipe whose read end the
/// thread includes in its `poll()`, so a thread blocked waiting for a notification wakes at
/// once instead of at its next timeout.
public final class StopSignal: Sendable {
    private let stopped = Mutex(false)
    /// Read end, for `poll()`; readable once `stop()` was called.
    public let fileDescriptor: Int32
    private let writeEnd: Int32

    public init() {
        var fds: [Int32] = [0, 0]
        pipe(&fds)
        _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
        fileDescriptor = fds[0]
        writeEnd = fds[1]
    }

    deinit {
        close(fileDescriptor)
        close(writeEnd)
    }

    public var isStopped: Bool { stopped.withLock { $0 } }

    public func stop() {
        let first = stopped.withLock { value in
            defer { value = true }
            return !value
        }
        if first {
            var byte: UInt8 = 1
            _ = write(writeEnd, &byte, 1)
            for child in children.withLock({ $0 }) { child.stop() }
        }
    }

    private let children = Mutex<[StopSignal]>([])

    /// A signal that stops when this one does (and can also be stopped on its own), e.g. one
    /// leadership term inside the process's lifetime.
    public func child() -> StopSignal {
        let child = StopSignal()
        children.withLock { $0.append(child) }
        if isStopped { child.stop() }
        return child
    }

    /// Sleeps up to `milliseconds`, returning early when stopped.
    public func sleep(milliseconds: Int) {
        var fd = pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)
        _ = poll(&fd, 1, Int32(milliseconds))
    }
}

/// Runs blocking work (libpq waits, change stream reads) on its own thread, never on Swift's
/// small cooperative pool, and bridges its completion back to async code.
public enum DedicatedThread {
    public static func run<T: Sendable>(name: String, stop: StopSignal, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
                let thread = Thread {
                    continuation.resume(with: Result { try body() })
                }
                thread.name = name
                thread.start()
            }
        } onCancel: {
            stop.stop()
        }
    }
}

/// Runs a pipeline's connected loop until `stop`, reconnecting with capped exponential
/// backoff and jitter after any failure except those `isFatal` marks (which it rethrows).
/// Nothing is acknowledged inside a failed batch, so a retry re-reads it.
func runReconnecting(_ name: String, configuration: BridgeConfiguration, stop: StopSignal, logger: Logger,
                     statistics: PipelineStatistics, isFatal: (Error) -> Bool = { _ in false },
                     _ connected: (_ onConnected: () -> Void) throws -> Void) throws {
    var backoff = Backoff(baseMilliseconds: configuration.reconnectBaseMilliseconds,
                          maxMilliseconds: configuration.reconnectMaxMilliseconds)
    while !stop.isStopped {
        do {
            try connected { backoff.reset() }
        } catch is SchemaChanged {
            logger.warning("\(name) pipeline: the columns of a synced table changed; reloading them")
        } catch {
            statistics.recordError("\(error)")
            statistics.recordReconnect()
            if isFatal(error) {
                logger.critical("\(name) pipeline cannot continue", metadata: ["error": "\(error)"])
                throw error
            }
            let delay = backoff.next()
            logger.warning("\(name) pipeline interrupted; retrying", metadata: ["error": "\(error)", "retry.in_ms": "\(delay)"])
            stop.sleep(milliseconds: delay)
        }
    }
    logger.info("\(name) pipeline stopped")
}

/// Capped exponential backoff with jitter, so several bridges (or a restarted database's
/// many clients) do not retry in lockstep.
public struct Backoff: Sendable {
    public let base: Int
    public let max: Int
    public private(set) var current: Int

    public init(baseMilliseconds: Int, maxMilliseconds: Int) {
        base = baseMilliseconds
        max = maxMilliseconds
        current = baseMilliseconds
    }

    /// The next delay in milliseconds: a random value in [current/2, current], then doubled.
    public mutating func next() -> Int {
        let delay = Int.random(in: (current / 2)...Swift.max(current, 1))
        current = Swift.min(current * 2, max)
        return delay
    }

    public mutating func reset() { current = base }
}
