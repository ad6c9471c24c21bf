import Foundation
import Mongo
import Synchronization
import SyncCore

/// Hands change stream events from the reader thread (blocked in `next()`) to the flow's
/// thread, which takes whatever has accumulated as one batch: no added latency when idle,
/// natural batching under load. Bounded, so a slow destination cannot grow memory: a full
/// queue holds the reader until the flow takes some.
public final class ChangeEventQueue: Sendable {
    public enum Item: Sendable {
        /// An event, with the resume token just after it (and `savedBefore`, see `StreamReader`).
        case change(MongoChange)
        /// The stream is idle at this position (post-batch resume token).
        case idle(token: [UInt8])
        case failed(MongoError)
    }

    private let items = Mutex<[Item]>([])
    private let filled = WakePipe()
    private let emptied = WakePipe()
    public let capacity: Int

    public init(capacity: Int = 10_000) {
        self.capacity = capacity
    }

    public var count: Int { items.withLock { $0.count } }

    /// Appends an item, waiting while the queue is full unless `stop` is set.
    public func push(_ item: Item, stop: StopSignal) {
        while !stop.isStopped {
            emptied.drain()
            let added = items.withLock { queue -> Bool in
                guard queue.count < capacity else { return false }
                queue.append(item)
                return true
            }
            if added {
                filled.ring()
                return
            }
            WakePipe.wait(for: [emptied.fileDescriptor, stop.fileDescriptor], milliseconds: -1)
        }
    }

    /// Takes up to `limit` items, waiting up to `timeoutMilliseconds` for the first one (or
    /// until `stop` fires).
    public func take(limit: Int, timeoutMilliseconds: Int32, stop: StopSignal) -> [Item] {
        var taken = takeNow(limit)
        if taken.isEmpty {
            WakePipe.wait(for: [filled.fileDescriptor, stop.fileDescriptor], milliseconds: timeoutMilliseconds)
            filled.drain()
            taken = takeNow(limit)
        }
        if !taken.isEmpty { emptied.ring() }
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
