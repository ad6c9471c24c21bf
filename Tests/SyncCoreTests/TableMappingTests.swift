import Testing
@testable import SyncCore

@Suite struct TableMappingTests {
    @Test func parsesDefaultsAndOverrides() throws {
        let list = try TableMapping.parseList("waiter_ops, chef_orders=orders ,other.cashier_txns", defaultSchema: "p1")
        #expect(list == [
            TableMapping(schema: "p1", table: "waiter_ops", collection: "waiter_ops"),
            TableMapping(schema: "p1", table: "chef_orders", collection: "orders"),
            TableMapping(schema: "other", table: "cashier_txns", collection: "cashier_txns"),
        ])
    }

    @Test(arguments: ["", " , ", "a=", "=b", "a=b=c", "a,b=a", ".t", "a=x$y", "a=system.users"])
    func rejects(text: String) {
        #expect(throws: TableMapping.ParseError.self) { try TableMapping.parseList(text, defaultSchema: "public") }
    }
}
