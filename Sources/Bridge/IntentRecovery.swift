import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

/// Settles what dead writers left in `write_intents` (see `WriteJournal`) before their
/// records are decided again. A writer is dead when nobody holds its owner lock. Its last
/// bulk write may still be running in the MongoDB server (a killed client does not stop a
/// command the server already has), so first this waits until MongoDB lists no operation of
/// the dead process. Then, per record: if MongoDB holds exactly the intended state, the
/// write happened and that state becomes the agreed one; either way the record is
/// reconciled once, as a resync would, since the change that touched it may already have
/// been consumed.
///
/// A lease taken over from another instance that is still listed (frozen past its lease, or
/// cut off) is settled the same way for that instance's intents on the unit's collections,
/// once, before anything is decided: its process may be alive, but its writes are over once
/// MongoDB lists none running, and its fence keeps it from committing anything afterwards.
struct IntentRecovery {
    let mongo: MongoClientPool
    let logger: Logger
    /// This process: its own dead owners' calls returned before the owner was replaced, so
    /// MongoDB has nothing of theirs still running.
    let instanceID: String
    let batchSize: Int
    let interval: Duration
    var fenceTimeout: Duration = .seconds(30)
    private var lastRun: ContinuousClock.Instant?
    /// The lease the settling transactions commit under.
    let fence: Fence?
    /// The instance the lease was taken from, until its intents are settled.
    private var previousHolder: String?

    /// The journal of the flows this recovery serves: an owner of it whose session is gone but
    /// whose MongoDB write is still on its way is not dead yet.
    let journal: WriteJournal?

    init(configuration: BridgeConfiguration, mongo: MongoClientPool, logger: Logger, fence: Fence? = nil,
         journal: WriteJournal? = nil) {
        self.fence = fence
        self.journal = journal
        previousHolder = fence?.previousHolder.flatMap { $0 == configuration.instanceID ? nil : $0 }
        self.mongo = mongo
        self.logger = logger
        instanceID = configuration.instanceID
        batchSize = configuration.batchSize
        interval = configuration.intentRecoveryInterval
    }

    /// `run`, unless it ran less than `interval` ago.
    mutating func runIfDue(synchronizers: [RecordSynchronizer], connection: PostgresConnection) throws {
        if let lastRun, ContinuousClock.now - lastRun < interval { return }
        lastRun = .now
        if let previous = previousHolder {
            try run(synchronizers: synchronizers, connection: connection, takingOverFrom: previous)
            previousHolder = nil
        } else {
            try run(synchronizers: synchronizers, connection: connection)
        }
    }

    /// Returns how many records were settled.
    @discardableResult
    func run(synchronizers: [RecordSynchronizer], connection: PostgresConnection, takingOverFrom previous: String? = nil) throws -> Int {
        let dead = try IntentStore.deadOwners(on: connection).filter { !(journal?.isWriting(owner: $0) ?? false) }
        // The previous holder's writers still alive (frozen past its lease, cut off): what
        // they wrote is settled now, what they have not may still land, so it stays.
        let lingering = try previous.map { previous in
            try IntentStore.owners(ofInstance: previous, on: connection).filter { !dead.contains($0) }
        } ?? []
        let owners = dead + lingering
        guard !owners.isEmpty else { return 0 }
        for instance in Set(owners.map(WriteJournal.instance(ofOwner:))) where instance != instanceID {
            waitForOperations(ofInstance: String(instance))
        }
        var settled = 0
        for (collection, keys) in try IntentStore.keys(ofOwners: owners, on: connection) {
            guard let sync = synchronizers.first(where: { $0.collection == collection }) else { continue }
            for start in stride(from: 0, to: keys.count, by: max(batchSize, 1)) {
                let chunk = Array(keys[start..<min(start + batchSize, keys.count)])
                settled += try settle(chunk, sync: sync, dead: dead, lingering: lingering, connection: connection)
            }
        }
        if settled > 0 {
            logger.warning("settled the MongoDB writes of a stopped writer", metadata: [
                "records": "\(settled)", "writers": "\(owners.count)",
            ])
        }
        return settled
    }

    /// - Parameters:
    ///   - dead: writers that can write no more: their intents go whether they landed or not.
    ///   - lingering: the previous holder's writers still alive: their intents go once landed.
    private func settle(_ keys: [String], sync: RecordSynchronizer, dead: [String], lingering: [String],
                        connection: PostgresConnection) throws -> Int {
        let owners = dead + lingering
        let touched: [String] = try connection.bridgeTransaction(fence: fence) {
            try sync.agreedStore.lock(keys, on: connection)
            let intents = try IntentStore.latest(collection: sync.collection, keys: keys, owners: owners, on: connection)
            guard !intents.isEmpty else { return [] }
            let documents = try mongo.withClient { (c: MongoClient) throws(MongoError) in
                // As the decision reads; what is found landed is then waited for at majority
                // (`RecordSynchronizer.awaitMajority`).
                try c.find([RowMapper.keyField: .document(["$in": .array(intents.keys.map(Value.string))])], collection: sync.collection)
            }
            var current: [String: RecordState] = [:]
            for doc in documents {
                guard case .string(let key)? = doc[RowMapper.keyField] else { continue }
                current[key] = (try? sync.writer.codec.state(document: doc, fallbackAt: 0)) ?? .absent(at: nil)
            }
            let now = wallClockMilliseconds()
            var landed = intents.filter { key, intent in (current[key] ?? .absent(at: nil)).sameContent(as: intent) }
                .map { key, intent in (key: key, state: intent.dated(deletedAt: now)) }
            // A writer that lost its lease may have journalled a later write it then did not
            // make (its fence stopped it): an earlier intent of the same writer may be the one
            // MongoDB holds.
            var open = Set(intents.keys).subtracting(landed.map(\.key))
            var rank = 2
            while !open.isEmpty && rank <= 5 {
                let earlier = try IntentStore.latest(collection: sync.collection, keys: Array(open), owners: owners, rank: rank, on: connection)
                if earlier.isEmpty { break }
                for (key, intent) in earlier where (current[key] ?? .absent(at: nil)).sameContent(as: intent) {
                    landed.append((key: key, state: intent.dated(deletedAt: now)))
                    open.remove(key)
                }
                rank += 1
            }
            try sync.awaitMajority(landed, mongo: mongo)
            try sync.agreedStore.save(landed, on: connection)
            // What landed is settled; what has not stays for `unlandedGraceSeconds`: a killed
            // client's last command may still sit in its socket, to be read and run by MongoDB
            // after `currentOp` was asked (likely how a 20-fault logical chaos run brought
            // back two records NocoDB had deleted). While the intent stays, that late write
            // is recognised as the bridge's own and undone.
            try IntentStore.delete(collection: sync.collection, keys: landed.map(\.key), owners: dead, on: connection)
            try IntentStore.delete(collection: sync.collection, keys: keys, owners: dead, olderThan: Self.unlandedGraceSeconds,
                                   on: connection)
            if !lingering.isEmpty {
                try IntentStore.delete(collection: sync.collection, keys: landed.map(\.key), owners: lingering, on: connection)
            }
            return Array(intents.keys)
        }
        guard !touched.isEmpty else { return 0 }
        let now = wallClockMilliseconds()
        try connection.bridgeTransaction(fence: fence) {
            let outcome = try sync.synchronize(mode: .reconcile(restored: nil), hints: touched.map { .init(key: $0, changedAt: now) },
                                               connection: connection, mongo: mongo)
            try DeadLetterStore.record(.recovery, source: sync.writer.shape.mapping.qualifiedName, outcome.rejections, on: connection)
        }
        return touched.count
    }

    /// How long a dead writer's intent that has not landed is kept (see `settle`): beyond the
    /// socket timeout, within which a live client would have given up on its command.
    static let unlandedGraceSeconds = 30

    /// Waits until MongoDB lists no running write of the process `instance` (its identity,
    /// which the URL cannot override: see `MongoIdentity`), or `fenceTimeout` passed.
    private func waitForOperations(ofInstance instance: String) {
        let identity = MongoIdentity.identity(instance: instance)
        let deadline = ContinuousClock.now + fenceTimeout
        while ContinuousClock.now < deadline {
            let running: Int
            do {
                running = try mongo.runningWrites(of: identity)
            } catch {
                logger.warning("cannot list MongoDB's running operations; waiting 5 s for a stopped writer's to end",
                               metadata: ["error": "\(error)"])
                Thread.sleep(forTimeInterval: 5)
                return
            }
            if running == 0 { return }
            usleep(20_000)
        }
        logger.warning("a stopped writer's MongoDB operations still run; settling its records anyway", metadata: ["mongo.identity": "\(identity)"])
    }
}
