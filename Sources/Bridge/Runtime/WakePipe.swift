import Foundation
import Synchronization

/// A pipe a thread can wait on with `poll()`, together with sockets (libpq, a stop signal):
/// the one waiting primitive of the bridge's threads. Ringing it wakes a waiter; nothing is
/// lost between a check and the wait, because the bytes stay in the pipe until drained.
final class WakePipe: Sendable {
    /// Read end, for `poll()`.
    let fileDescriptor: Int32
    private let writeEnd: Int32

    init() {
        var fds: [Int32] = [0, 0]
        pipe(&fds)
        _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
        _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
        fileDescriptor = fds[0]
        writeEnd = fds[1]
    }

    deinit {
        close(fileDescriptor)
        close(writeEnd)
    }

    func ring() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }

    /// Empties the pipe, so the next wait blocks until the next ring.
    func drain() {
        var sink = [UInt8](repeating: 0, count: 256)
        while read(fileDescriptor, &sink, sink.count) > 0 {}
    }

    /// Waits until any of `fds` is readable or `milliseconds` pass (-1: no limit).
    static func wait(for fds: [Int32], milliseconds: Int32) {
        var polled = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        _ = poll(&polled, nfds_t(polled.count), milliseconds)
    }
}

/// Something that happens once (a thread finished), which another thread waits for.
final class Completion: Sendable {
    private let done = Mutex(false)
    private let pipe = WakePipe()

    func signal() {
        done.withLock { $0 = true }
        pipe.ring()
    }

    func wait() {
        while !done.withLock({ $0 }) { WakePipe.wait(for: [pipe.fileDescriptor], milliseconds: -1) }
    }
}
