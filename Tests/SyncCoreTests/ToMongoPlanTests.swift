import Testing
@testable import SyncCore

@Suite struct ToMongoPlanTests {
    let mapper = RowMapper(columns: [
        Column(name: "externalId", kind: .text, postgresType: "text"),
        Column(name: "amount", kind: .numeric, postgresType: "numeric"),
    ])

    func change(_ id: Int64, _ op: CapturedChange.Operation, _ key: String?, amount: String? = "1", oldKey: String? = nil) -> CapturedChange {
        CapturedChange(id: id, operation: op, key: key, oldKey: oldKey ?? (op == .update ? key : nil), values: [key, amount])
    }

    @Test func lastRowForAKeyWins() {
        let plan = ToMongoPlan(changes: [change(1, .insert, "a", amount: "1"), change(2, .update, "a", amount: "2"),
                                         change(3, .insert, "b")], mapper: mapper)
        #expect(plan.writes.map(\.write) == [
            .upsert(key: "a", set: ["externalId": .string("a"), "amount": .decimal(try! Decimal128Text("2"))]),
            .upsert(key: "b", set: ["externalId": .string("b"), "amount": .decimal(try! Decimal128Text("1"))]),
        ])
        #expect(plan.writes[0].changeIDs == [1, 2])
        #expect(plan.changeIDs == [1, 2, 3])
        #expect(plan.rejections.isEmpty)
    }

    @Test(arguments: [
        ([CapturedChange.Operation.insert, .delete], "delete"),
        ([.update, .delete], "delete"),
        ([.delete, .insert], "replace"),
        ([.insert, .delete, .insert], "replace"),
        ([.delete, .insert, .update], "replace"),
        ([.delete], "delete"),
        ([.update, .update], "upsert"),
    ])
    func sequencesCollapse(ops: [CapturedChange.Operation], expected: String) {
        let changes = ops.enumerated().map { change(Int64($0.offset + 1), $0.element, "k") }
        let plan = ToMongoPlan(changes: changes, mapper: mapper)
        #expect(plan.writes.count == 1)
        let kind: String = switch plan.writes[0].write {
        case .upsert: "upsert"
        case .replace: "replace"
        case .delete: "delete"
        }
        #expect(kind == expected)
        #expect(plan.writes[0].changeIDs == changes.map(\.id))
    }

    @Test func badRowsAreRejectedAndOthersKept() {
        let plan = ToMongoPlan(changes: [
            change(1, .insert, "a", amount: "NaN"),
            change(2, .insert, nil),
            change(3, .update, "c", oldKey: "old"),
            change(4, .insert, "d"),
        ], mapper: mapper)
        #expect(plan.writes.map(\.write.key) == ["d"])
        #expect(plan.rejections.map(\.changeID) == [1, 2, 3])
        #expect(plan.rejections[0].field == "amount")
        #expect(plan.rejections[1].field == "externalId")
        #expect(plan.rejections[2].reason.contains("changed from old to c"))
        #expect(plan.changeIDs == [1, 2, 3, 4])
    }

    @Test func aRejectedChangeDoesNotHideALaterGoodOne() {
        let plan = ToMongoPlan(changes: [change(1, .insert, "a", amount: "bad"), change(2, .update, "a", amount: "3")], mapper: mapper)
        #expect(plan.rejections.map(\.changeID) == [1])
        #expect(plan.writes.map(\.changeIDs) == [[2]])
    }
}
