import Foundation
import Logging
import Synchronization

/// The last lines an in-process bridge logged (info and above), kept in memory whatever
/// `TEST_LOG_LEVEL` says, so a test that times out under load can say what the bridge was
/// doing rather than only that it did not converge.
final class LogTail: Sendable {
    private let lines = Mutex<[String]>([])
    let capacity: Int

    init(capacity: Int = 400) { self.capacity = capacity }

    func append(_ line: String) {
        lines.withLock { lines in
            lines.append(line)
            if lines.count > capacity { lines.removeFirst(lines.count - capacity) }
        }
    }

    func text(last n: Int = 80) -> String { lines.withLock { $0.suffix(n).joined(separator: "\n") } }

    /// A logger writing to this tail and to the usual test handler.
    func logger(_ label: String = "test") -> Logger {
        let printed = ProcessInfo.processInfo.environment["TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .critical
        var logger = Logger(label: label) { label in
            Handler(tail: self, printed: printed, standardError: StreamLogHandler.standardError(label: label))
        }
        logger.logLevel = min(.info, printed)
        return logger
    }

    private struct Handler: LogHandler {
        let tail: LogTail
        let printed: Logger.Level
        var standardError: StreamLogHandler
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { _, new in new }
            let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            if event.level >= .info { tail.append("\(Date()) \(event.level) \(fields) \(event.message)") }
            if event.level >= printed {
                var handler = standardError
                handler.metadata = metadata
                handler.logLevel = printed
                handler.log(event: event)
            }
        }
    }
}

/// Runs `body`; when it throws (a wait that timed out), the failure carries what `bridge`
/// logged last.
func explained(by bridge: RunningBridge, _ body: () throws -> Void) throws {
    do {
        try body()
    } catch {
        throw SetupError("\(error)\n--- the bridge's last log lines ---\n\(bridge.log.text())")
    }
}
