import Testing
@testable import SyncCore

@Suite struct ChangeGroupsTests {
    func change(_ id: Int64, _ op: CapturedChange.Operation, _ key: String?, oldKey: String? = nil, at: Int64 = 0) -> CapturedChange {
        CapturedChange(id: id, operation: op, key: key, oldKey: oldKey ?? (op == .update ? key : nil), changedAt: at)
    }

    @Test func groupsByKeyInFirstAppearanceOrder() {
        let g = ChangeGroups([change(1, .insert, "b", at: 10), change(2, .update, "a", at: 20), change(3, .delete, "b", at: 30)])
        #expect(g.keys == ["b", "a"])
        #expect(g.changesByKey["b"]?.map(\.id) == [1, 3])
        #expect(g.latestChange("b") == 30)
        #expect(g.changeIDs == [1, 2, 3])
        #expect(g.rejections.isEmpty)
    }

    @Test func unkeyedAndRekeyedChangesAreRejectedOthersKept() {
        let g = ChangeGroups([change(1, .insert, nil), change(2, .insert, ""), change(3, .update, "c", oldKey: "old"),
                              change(4, .insert, "d")])
        #expect(g.keys == ["d"])
        #expect(g.rejections.map(\.changeID) == [1, 2, 3])
        #expect(g.rejections.allSatisfy { $0.field == "externalId" })
        #expect(g.rejections[2].reason.contains("changed from old to c"))
        #expect(g.changeIDs == [1, 2, 3, 4])
    }

    @Test func rejectingAKeyCoversAllItsChanges() {
        let g = ChangeGroups([change(1, .insert, "a"), change(2, .update, "a")])
        let r = g.reject("a", field: "amount", reason: "bad")
        #expect(r.map(\.changeID) == [1, 2] && r.allSatisfy { $0.field == "amount" })
    }
}
