@testable import Bridge
import Foundation
@testable import SyncCore
import Synchronization
import Testing

/// The slot reader confirms what `LogicalBacklog` says every table has applied. A table's work
/// moves between waiting and being applied (taken, given back after a failure); were the
/// move seen half done, the reader would find the work nowhere and confirm the slot past
/// changes never applied: a crash or a lost lease then loses them for good.
@Suite struct LogicalBacklogTests {
    @Test func workMovingBetweenWaitingAndTakenIsNeverSeenMissing() throws {
        let backlog = LogicalBacklog(tables: ["t"])
        var batch = LogicalChangeCollector.Batch()
        batch.changes = [CapturedChange(id: 1, operation: .delete, key: "k", oldKey: "k", changedAt: 0)]
        backlog.add(["t": batch], previousEnd: 100)
        let done = Atomic<Bool>(false)
        let mover = Thread {
            for _ in 0..<200_000 {
                guard backlog.take("t") != nil else { continue }
                backlog.giveBack("t")
            }
            done.store(true, ordering: .releasing)
        }
        mover.start()
        var checks = 0, seenMissing = 0
        while !done.load(ordering: .acquiring) {
            checks += 1
            if backlog.confirmable(decoded: 200) != 100 || backlog.isEmpty { seenMissing += 1 }
        }
        #expect(checks > 0)
        #expect(seenMissing == 0, "the reader would have confirmed past unapplied work \(seenMissing) times in \(checks) looks")
        let work = try #require(backlog.take("t"))
        #expect(work.changes.count == 1 && work.since == 100)
    }
}
