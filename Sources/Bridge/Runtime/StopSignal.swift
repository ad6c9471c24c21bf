import Synchronization

/// Tells a flow's thread to finish. A thread blocked waiting for a notification or a queue
/// includes `fileDescriptor` in its `poll()` and wakes at once instead of at its next timeout.
public final class StopSignal: Sendable {
    private let stopped = Mutex(false)
    private let children = Mutex<[StopSignal]>([])
    private let pipe = WakePipe()

    public init() {}

    /// Readable once `stop()` was called.
    public var fileDescriptor: Int32 { pipe.fileDescriptor }

    public var isStopped: Bool { stopped.withLock { $0 } }

    public func stop() {
        let first = stopped.withLock { value in
            defer { value = true }
            return !value
        }
        if first {
            pipe.ring()
            for child in children.withLock({ $0 }) { child.stop() }
        }
    }

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
        WakePipe.wait(for: [fileDescriptor], milliseconds: Int32(clamping: milliseconds))
    }
}
