import Foundation
import Synchronization

/// Where the bridge's blocking work runs: libpq waits, change stream reads, MongoDB and
/// PostgreSQL calls. Each job gets a dedicated, named thread, never Swift's cooperative pool
/// (two threads on this kind of machine), and async code awaits its result. The only place
/// the bridge creates threads.
public enum BlockingExecutor {
    /// Runs `body` on its own thread; cancelling the awaiting task stops `stop`, which the
    /// body watches.
    public static func run<T: Sendable>(name: String, stop: StopSignal? = nil,
                                        _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
                start(name: name) { continuation.resume(with: Result { try body() }) }
            }
        } onCancel: {
            stop?.stop()
        }
    }

    /// Runs `body` on its own thread without awaiting it (a reader feeding a queue, say);
    /// the caller owns stopping it.
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread(block: body)
        thread.name = name
        thread.start()
    }
}

/// Blocking jobs started together and joined together: the first to fail for good stops the
/// others (through `stop`) and its error is what `join` throws.
final class ThreadGroup: Sendable {
    private let stop: StopSignal
    private let state = Mutex<(running: Int, firstError: (any Error)?)>((0, nil))
    private let finished = WakePipe()

    init(stop: StopSignal) {
        self.stop = stop
    }

    func start(_ name: String, _ body: @escaping @Sendable () throws -> Void) {
        state.withLock { $0.running += 1 }
        BlockingExecutor.start(name: name) { [self] in
            do {
                try body()
            } catch {
                state.withLock { if $0.firstError == nil { $0.firstError = error } }
                stop.stop()
            }
            state.withLock { $0.running -= 1 }
            finished.ring()
        }
    }

    /// Whether every job has ended, and the first failure, without waiting.
    var outcome: (finished: Bool, error: (any Error)?) {
        state.withLock { ($0.running == 0, $0.firstError) }
    }

    /// Waits until every job has ended; throws the first failure.
    func join() throws {
        while state.withLock({ $0.running }) > 0 {
            WakePipe.wait(for: [finished.fileDescriptor], milliseconds: 1000)
            finished.drain()
        }
        if let error = state.withLock({ $0.firstError }) { throw error }
    }
}
