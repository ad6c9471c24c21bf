import Foundation
import Mongo
import Synchronization
import SyncCore

/// Hands change stream events from the reader thread (blocked in `next()`) to the processor
/// thread, which takes whatever has accumulated as one batch: no added latency when idle,
/// natural batching under load. Bounded, so a slow destination cannot grow memory.
public final class ChangeEventQueue: Sendable {
    public enum Item: Sendable {
        /// An event, with the resume token just after it.
        case change(MongoChange)
        /// The stream is idle at this position (post-batch resume token).
        case idle(token: [UInt8])
        case failed(MongoError)
    }

    private let items = Mutex<[Item]>([])
    private let wakeRead: Int32
    private let wakeWrite: Int32
    public let capacity: Int

    public init(capacity: Int = 10_000) {
        var fds: [Int32] = [0, 0]
        pipe(&fds)
        _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
        _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
        wakeRead = fds[0]
        wakeWrite = fds[1]
        self.capacity = capacity
    }

    deinit {
        close(wakeRead)
        close(wakeWrite)
    }

    public var count: Int { items.withLock { $0.count } }

    /// Appends an item; waits (politely) while the queue is full unless `stop` is set.
    public func push(_ item: Item, stop: StopSignal) {
        while count >= capacity && !stop.isStopped { stop.sleep(milliseconds: 1) }
        items.withLock { $0.append(item) }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    /// Takes up to `limit` items, waiting up to `timeoutMilliseconds` for the first one (or
    /// until `stop` fires).
    public func take(limit: Int, timeoutMilliseconds: Int32, stop: StopSignal) -> [Item] {
        var taken = takeNow(limit)
        if !taken.isEmpty { return taken }
        var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: stop.fileDescriptor, events: Int16(POLLIN), revents: 0)]
        _ = poll(&fds, 2, timeoutMilliseconds)
        var sink = [UInt8](repeating: 0, count: 256)
        while read(wakeRead, &sink, 256) > 0 {}
        taken = takeNow(limit)
        return taken
    }

    private func takeNow(_ limit: Int) -> [Item] {
        items.withLock { queue in
            let n = min(limit, queue.count)
            let out = Array(queue.prefix(n))
            queue.removeFirst(n)
            return out
        }
    }
}
