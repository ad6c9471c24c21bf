import Foundation
import Mongo
import Synchronization
import SyncCore

/// A change stream opened as the bridge opens its own (on the collection, the bridge's stages,
/// `fullDocument: updateLookup`, the driver's default batch and wait), read as fast as the
/// server delivers. Open during the raw bulk writes, it puts the server in the state the
/// bridge's writes meet; counting the events of one bulk edit, it is the raw rate at which
/// the bridge could at best read that edit.
final class BridgeLikeStream: Sendable {
    private struct Count {
        var marker: String?
        var expected = 0
        var seen = 0
        var reachedMicros: Double?
    }

    private let pool: MongoClientPool
    private let collection: String
    private let resumeToken: [UInt8]?
    private let counting = Mutex(Count())
    private let worker = WorkerState()

    init(pool: MongoClientPool, collection: String, resumeAfter token: [UInt8]? = nil) {
        self.pool = pool
        self.collection = collection
        resumeToken = token
    }

    /// Where the collection's change stream is now, to resume from later (as a stopped bridge does).
    static func currentToken(pool: MongoClientPool, collection: String) throws -> [UInt8] {
        var options = ChangeStreamOptions()
        options.maxAwaitMilliseconds = 50
        let stream = try pool.watch(collection: collection, options: options)
        if let token = stream.resumeToken { return token }
        _ = try stream.next()
        guard let token = stream.resumeToken else { throw BenchError("the change stream gave no resume token") }
        return token
    }

    /// Counts events whose document carries `method == marker` from now on.
    func count(marker: String, expecting expected: Int) {
        counting.withLock { $0 = Count(marker: marker, expected: expected) }
    }

    func start() throws {
        Thread { [self] in
            defer { worker.finish() }
            do {
                try read()
            } catch {
                worker.fail("\(error)")
            }
        }.start()
        try worker.waitReady("raw change stream")
    }

    /// The time (µs) the expected count was reached.
    func waitForCount(timeout: Double) throws -> Double {
        var reached: Double?
        try Clock.wait(timeout: timeout, every: 0.005, "the raw change stream's events") {
            try worker.check("raw change stream")
            reached = counting.withLock { $0.reachedMicros }
            return reached != nil
        }
        return reached ?? .nan
    }

    func stop() { worker.stop() }

    private func read() throws {
        var options = ChangeStreamOptions()
        options.pipeline = ChangeStreamPipeline.stages(collections: [collection])
        options.resumeToken = resumeToken
        let stream = try pool.watch(collection: collection, options: options)
        worker.markReady()
        while !worker.isStopped {
            guard let event = try stream.next() else { continue }
            guard case .document(let doc)? = event["fullDocument"], case .string(let method)? = doc["method"] else { continue }
            let now = Clock.micros()
            counting.withLock { c in
                guard method == c.marker else { return }
                c.seen += 1
                if c.seen == c.expected { c.reachedMicros = now }
            }
        }
    }
}
