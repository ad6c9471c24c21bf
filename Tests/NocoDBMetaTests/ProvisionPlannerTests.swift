import Testing
@testable import NocoDBMeta

@Suite struct ProvisionPlannerTests {
    /// The snapshot of a NocoDB base that has everything the seed wants.
    static func provisioned() -> MetaSnapshot {
        var snapshot = MetaSnapshot()
        for table in SeedModel.tables {
            var state = MetaSnapshot.Table(fields: Set(table.fields.map(\.title)).union(["Id", "CreatedAt"]))
            for view in table.views {
                state.views[view.title] = .init(filters: view.filter == nil ? 0 : 1, shown: Set(view.shownFields ?? []))
            }
            snapshot.tables[table.title] = state
        }
        return snapshot
    }

    @Test func anEmptyBaseGetsEveryTableViewFilterAndFieldSelection() {
        let plan = ProvisionPlanner.plan(SeedModel.tables, current: MetaSnapshot())
        #expect(plan == [
            .createTable(SeedModel.tables[0]),
            .createView(table: "waiter_ops", SeedModel.tables[0].views[0]),
            .addFilter(table: "waiter_ops", view: "Waiter Ops", FilterSpec(field: "action", comparison: "notblank")),
            .createView(table: "waiter_ops", SeedModel.tables[0].views[1]),
            .showOnly(table: "waiter_ops", view: "Waiter Ops Form", fields: ["action", "notes"]),
            .createTable(SeedModel.tables[1]),
            .createView(table: "chef_orders", SeedModel.tables[1].views[0]),
            .showOnly(table: "chef_orders", view: "Chef Orders Board", fields: ["externalId", "status", "items"]),
            .createTable(SeedModel.tables[2]),
            .createView(table: "cashier_txns", SeedModel.tables[2].views[0]),
            .showOnly(table: "cashier_txns", view: "Cashier Txns", fields: ["amount", "currency", "method"]),
        ])
    }

    @Test func aProvisionedBasePlansNothing() {
        #expect(ProvisionPlanner.plan(SeedModel.tables, current: Self.provisioned()).isEmpty)
    }

    @Test func onlyWhatIsMissingIsPlanned() {
        var snapshot = Self.provisioned()
        snapshot.tables["chef_orders"]?.fields.remove("version")
        snapshot.tables["waiter_ops"]?.views["Waiter Ops"]?.filters = 0
        snapshot.tables["cashier_txns"]?.views["Cashier Txns"]?.shown = ["amount"]
        snapshot.tables["waiter_ops"]?.views["Waiter Ops Form"] = nil
        #expect(ProvisionPlanner.plan(SeedModel.tables, current: snapshot) == [
            .addFilter(table: "waiter_ops", view: "Waiter Ops", FilterSpec(field: "action", comparison: "notblank")),
            .createView(table: "waiter_ops", SeedModel.tables[0].views[1]),
            .showOnly(table: "waiter_ops", view: "Waiter Ops Form", fields: ["action", "notes"]),
            .createField(table: "chef_orders", FieldSpec("version", "Number")),
            .showOnly(table: "cashier_txns", view: "Cashier Txns", fields: ["amount", "currency", "method"]),
        ])
    }

    /// NocoDB's "hide all" leaves a grid's display value visible: a grid showing it beside
    /// the wanted fields is done, and a form is not exempt.
    @Test func aGridsDisplayValueIsExpectedToStayVisible() {
        var snapshot = Self.provisioned()
        snapshot.tables["cashier_txns"]?.displayValue = "externalId"
        snapshot.tables["cashier_txns"]?.views["Cashier Txns"]?.shown = ["externalId", "amount", "currency", "method"]
        #expect(ProvisionPlanner.plan(SeedModel.tables, current: snapshot).isEmpty)
        snapshot.tables["waiter_ops"]?.displayValue = "externalId"
        snapshot.tables["waiter_ops"]?.views["Waiter Ops Form"]?.shown = ["externalId", "action", "notes"]
        #expect(ProvisionPlanner.plan(SeedModel.tables, current: snapshot)
                == [.showOnly(table: "waiter_ops", view: "Waiter Ops Form", fields: ["action", "notes"])])
        // Without a known display value the grid must show exactly the wanted fields.
        snapshot = Self.provisioned()
        snapshot.tables["cashier_txns"]?.views["Cashier Txns"]?.shown = ["externalId", "amount", "currency", "method"]
        #expect(ProvisionPlanner.plan(SeedModel.tables, current: snapshot).count == 1)
    }

    @Test func columnNamesFollowNocoDBsSanitizer() {
        #expect(NocoDBNames.columnName(forTitle: "Table No") == "Table_No")
        #expect(NocoDBNames.columnName(forTitle: "Tip (€)") == "Tip____")
        #expect(NocoDBNames.columnName(forTitle: "Größe") == "Gr__e")
        #expect(NocoDBNames.columnName(forTitle: "%%") == "field")
        #expect(NocoDBNames.columnName(forTitle: String(repeating: "a", count: 80)).count == 54)
        #expect(NocoDBNames.columnName(forTitle: "Tip 💶") == "Tip___", "beyond the BMP: two UTF-16 code units, two underscores")
    }

    @Test func theSeedModelMatchesTheArchitectureNote() {
        for table in SeedModel.tables {
            let fields = table.fields.map(\.title)
            #expect(Array(fields.prefix(4)) == ["externalId", "updatedAt", "source", "version"])
        }
        let chef = SeedModel.tables[1]
        #expect(chef.fields.first { $0.title == "items" }?.uidt == "JSON")
        #expect(chef.views[0].kind == MetaView.kanban && chef.views[0].groupBy == "status")
        #expect(FieldSpec("source", "SingleSelect", options: ["mongo", "nocodb"]).request["colOptions"] != nil)
    }
}
