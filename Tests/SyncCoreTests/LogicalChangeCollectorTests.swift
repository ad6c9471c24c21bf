import Testing
@testable import SyncCore

/// Decoded pgoutput messages in, committed changes per table out: no database needed.
@Suite struct LogicalChangeCollectorTests {
    static let relation = PgOutput.Message.relation(
        id: 7, namespace: "p1", name: "waiter_ops", replicaIdentity: UInt8(ascii: "f"),
        columns: [.init(name: "id", typeOID: 23, isKey: true), .init(name: "externalId", typeOID: 25, isKey: false),
                  .init(name: "notes", typeOID: 25, isKey: false)])

    static func row(_ id: String, _ key: String?, _ notes: String = "n") -> [PgOutput.TupleValue] {
        [.text(id), key.map(PgOutput.TupleValue.text) ?? .null, .text(notes)]
    }

    /// Commit time 0 in PostgreSQL's epoch (2000-01-01) in ms since 1970.
    static let y2000 = PgOutput.postgresEpochOffsetMicroseconds / 1000

    func collector(_ messages: [PgOutput.Message]) -> (LogicalChangeCollector, [String]) {
        var c = LogicalChangeCollector()
        var warnings: [String] = []
        for m in messages { if let w = c.add(m) { warnings.append(w) } }
        return (c, warnings)
    }

    @Test func committedChangesArriveWithKeysTimesAndTheirTransaction() {
        var (c, warnings) = collector([
            Self.relation,
            .begin(finalLSN: 0x30, commitTime: 2_000, xid: 41),
            .insert(relation: 7, new: Self.row("1", "k-1")),
            .update(relation: 7, old: Self.row("2", "k-2"), new: Self.row("2", "k-2", "edited")),
            .delete(relation: 7, old: Self.row("3", "k-3")),
            .commit(commitLSN: 0x30, endLSN: 0x38, commitTime: 2_000),
        ])
        #expect(warnings.isEmpty)
        #expect(c.pendingCount == 3 && !c.isIdle)
        let (batches, end) = c.take()
        #expect(end == 0x38)
        let batch = batches["p1.waiter_ops"]
        #expect(batch?.changes.map(\.operation) == [.insert, .update, .delete])
        #expect(batch?.changes.map(\.key) == ["k-1", "k-2", "k-3"])
        #expect(batch?.changes.allSatisfy { $0.changedAt == Self.y2000 + 2 } == true)
        #expect(batch?.oldest == Self.y2000 + 2)
        #expect(batch?.transactionIDs == [41])
        #expect(batch?.insertedRows == [1: "1"])
        #expect(batch?.keylessRows.isEmpty == true)
        #expect(c.isIdle && c.pendingCount == 0)
    }

    @Test func nothingIsReleasedBeforeItsCommit() {
        var (c, _) = collector([Self.relation, .begin(finalLSN: 0x10, commitTime: 0, xid: 1), .insert(relation: 7, new: Self.row("1", "k"))])
        #expect(c.pendingCount == 0 && !c.isIdle)
        #expect(c.take().batches.isEmpty)
        _ = c.add(.commit(commitLSN: 0x10, endLSN: 0x18, commitTime: 0))
        #expect(c.pendingCount == 1)
    }

    static let own = PgOutput.Message.message(transactional: true, prefix: "nocobridge", content: Array("bridge".utf8))

    /// The bridge's own writes come back marked with its transactional message and are
    /// dropped; the position still moves past them, so an idle slot does not hold WAL for them.
    /// A message from someone else, a non-transactional one, or a replication origin (which
    /// marked the bridge's writes in older versions, and which other tools set) drops nothing.
    @Test func ownTransactionsAreSkippedButAdvanceThePosition() {
        var (c, _) = collector([
            Self.relation,
            .begin(finalLSN: 0x10, commitTime: 0, xid: 1), Self.own,
            .insert(relation: 7, new: Self.row("1", "echo")),
            .commit(commitLSN: 0x10, endLSN: 0x18, commitTime: 0),
            .begin(finalLSN: 0x20, commitTime: 0, xid: 2), .message(transactional: true, prefix: "audit", content: []),
            .insert(relation: 7, new: Self.row("2", "theirs")),
            .commit(commitLSN: 0x20, endLSN: 0x28, commitTime: 0),
            .begin(finalLSN: 0x30, commitTime: 0, xid: 3), .origin(name: "_to_nocodb"),
            .insert(relation: 7, new: Self.row("3", "replicated")),
            .commit(commitLSN: 0x30, endLSN: 0x38, commitTime: 0),
            .message(transactional: false, prefix: "nocobridge", content: []),
            .begin(finalLSN: 0x40, commitTime: 0, xid: 4),
            .insert(relation: 7, new: Self.row("4", "after")),
            .commit(commitLSN: 0x40, endLSN: 0x48, commitTime: 0),
        ])
        let (batches, end) = c.take()
        #expect(batches["p1.waiter_ops"]?.changes.map(\.key) == ["theirs", "replicated", "after"])
        #expect(end == 0x48)
        var (only, _) = collector([Self.relation, .begin(finalLSN: 0x10, commitTime: 0, xid: 1),
                                   .insert(relation: 7, new: Self.row("1", "echo")), Self.own,
                                   .commit(commitLSN: 0x10, endLSN: 0x18, commitTime: 0)])
        #expect(only.pendingCount == 0 && only.isIdle)
        #expect(only.take().end == 0x18)
    }

    @Test func keylessRowsAreListedForTheBridgeToKey() {
        var (c, _) = collector([
            Self.relation, .begin(finalLSN: 0x10, commitTime: 0, xid: 1),
            .insert(relation: 7, new: Self.row("5", nil)),
            .insert(relation: 7, new: Self.row("6", "")),
            .update(relation: 7, old: nil, new: Self.row("7", nil)),
            .commit(commitLSN: 0x10, endLSN: 0x18, commitTime: 0),
        ])
        let batch = c.take().batches["p1.waiter_ops"]
        #expect(batch?.keylessRows.values.sorted() == ["5", "6", "7"])
        #expect(batch?.insertedRows.isEmpty == true)
    }

    /// An UPDATE that does not touch a TOASTed key does not resend it; the old row has it.
    @Test func anUnchangedKeyComesFromTheOldRow() {
        var (c, _) = collector([
            Self.relation, .begin(finalLSN: 0x10, commitTime: 0, xid: 1),
            .update(relation: 7, old: Self.row("1", "k-old"), new: [.text("1"), .unchanged, .text("x")]),
            .commit(commitLSN: 0x10, endLSN: 0x18, commitTime: 0),
        ])
        let change = c.take().batches["p1.waiter_ops"]?.changes.first
        #expect(change?.key == "k-old" && change?.oldKey == "k-old")
    }

    @Test func whatCannotBeCapturedSaysWhy() {
        let (_, warnings) = collector([
            Self.relation, .begin(finalLSN: 0x10, commitTime: 0, xid: 1),
            .delete(relation: 7, old: [.text("1"), .null, .null]),
            .insert(relation: 99, new: Self.row("1", "k")),
            .truncate(relations: [7]),
            .commit(commitLSN: 0x10, endLSN: 0x18, commitTime: 0),
        ])
        #expect(warnings.count == 3)
        #expect(warnings[0].contains("REPLICA IDENTITY FULL") && warnings[0].contains("p1.waiter_ops"))
        #expect(warnings[1].contains("unknown relation 99"))
        #expect(warnings[2].contains("TRUNCATE") && warnings[2].contains("resync"))
    }
}
