import Logging

/// Runs a flow's connected loop until `stop`, reconnecting with capped exponential backoff
/// and jitter after any failure except those `isFatal` marks (which it rethrows). Nothing is
/// acknowledged inside a failed batch, so a retry re-reads it.
func runReconnecting(_ name: String, configuration: BridgeConfiguration, stop: StopSignal, logger: Logger,
                     statistics: PipelineStatistics, table: String? = nil, isFatal: (Error) -> Bool = { _ in false },
                     _ connected: (_ onConnected: () -> Void) throws -> Void) throws {
    var backoff = Backoff(baseMilliseconds: configuration.reconnectBaseMilliseconds,
                          maxMilliseconds: configuration.reconnectMaxMilliseconds)
    while !stop.isStopped {
        do {
            try connected { backoff.reset() }
        } catch is SchemaChanged {
            logger.warning("\(name): the columns of a synced table changed; reloading them")
        } catch let lost as LeaseLost {
            // Not a failure to retry: another instance has the table now.
            throw lost
        } catch {
            statistics.recordError("\(error)", table: table)
            statistics.recordReconnect()
            if isFatal(error) {
                logger.critical("\(name) cannot continue", metadata: ["error": "\(error)"])
                throw error
            }
            let delay = backoff.next()
            logger.warning("\(name) interrupted; retrying", metadata: ["error": "\(error)", "retry.in_ms": "\(delay)"])
            stop.sleep(milliseconds: delay)
        }
    }
    logger.info("\(name) stopped")
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
