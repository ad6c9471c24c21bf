import Foundation
import Testing
@testable import NocoDBMeta

@Suite struct AccessPlanTests {
    static let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("deploy/access.example.yaml").path

    /// The views the seed provisioning makes, plus each table's default grid.
    static func seedViews() -> [AccessSnapshot.View] {
        var views: [AccessSnapshot.View] = []
        for (i, table) in SeedModel.tables.enumerated() {
            views.append(.init(title: table.title, id: "vd\(i)", type: MetaView.grid, tableID: "m\(i)"))
            for (j, view) in table.views.enumerated() {
                views.append(.init(title: view.title, id: "v\(i)\(j)", type: view.kind, tableID: "m\(i)"))
            }
        }
        return views
    }

    func error(_ yaml: String) -> String {
        do { _ = try AccessPlan.parse(yaml: yaml, source: "plan.yaml"); return "" } catch { return error.message }
    }

    @Test func theShippedExampleParses() throws {
        let plan = try AccessPlan.load(path: Self.example)
        #expect(plan.group(named: "manager")?.role == "editor" && plan.group(named: "manager")?.views == nil)
        #expect(plan.group(named: "waiter")?.views == ["Waiter Ops"])
        #expect(Set(plan.groups.filter { $0.name != "manager" }.map(\.role)).isSubset(of: ["viewer", "commenter"]))
        #expect(plan.people.count == 4)
        #expect(plan.shares == [.init(view: "Waiter Ops Form", passwordEnv: "NOCOBRIDGE_WAITER_FORM_PASSWORD"),
                                .init(view: "Chef Orders Board", passwordEnv: nil)])
    }

    @Test func mistakesAreOneLineNamingTheEntry() {
        #expect(error("groups:\n  waiter:\n    role: waiter\n")
                == "plan.yaml: group waiter: role \"waiter\" is not a NocoDB base role (owner, creator, editor, commenter, viewer, no-access)")
        #expect(error("groups:\n  w: {role: viewer}\npeople:\n  - {email: w@localhost, group: w}\n").contains("NocoDB refuses the e-mail \"w@localhost\""))
        #expect(error("groups:\n  w: {role: viewer}\npeople:\n  - {email: a@b.com, group: x}\n").contains("group \"x\" is not one of w"))
        #expect(error("groups:\n  w: {role: viewer, view: [A]}\n") == "plan.yaml: group w: unknown key \"view\" (expected role, views)")
        #expect(error("groups:\n  w: {role: viewer}\nshares:\n  - {view: A, password: hunter2}\n").contains("unknown key \"password\""))
        #expect(error("groups: [\n").hasPrefix("plan.yaml: is not valid YAML: line "))
        #expect(!error("groups: [\n").contains("\n"))
        // The parser's quote of the offending line is left out: it may hold a value.
        let quoted = error("groups:\n  w: {role: viewer}\npeople:\n  - {email: \"hunter2@x.co, group: w}\n")
        #expect(quoted.hasPrefix("plan.yaml: is not valid YAML") && !quoted.contains("hunter2"), "\(quoted)")
        // Shapes that would otherwise read as nothing.
        #expect(error("groups:\n  w: {role: viewer}\npeople: {email: a@b.co, group: w}\n")
                == "plan.yaml: people: expected a list of {email, group} entries, each starting with \"- \"")
        #expect(error("groups:\n  w: {role: viewer}\nshares: Waiter Ops\n").contains("shares: expected a list of {view, password_env} entries"))
        #expect(error("groups:\n  w: {role: viewer}\npeople:\n  - {email: 12, group: w}\n")
                == "plan.yaml: people[0]: email must be a string (an e-mail address)")
        #expect(error("groups:\n  w: {role: viewer}\npeople:\n  - {group: w}\n") == "plan.yaml: people[0]: email is missing")
        #expect(error("groups:\n  w: {role: viewer}\nshares:\n  - {view: A}\n  - {view: A, password_env: P}\n")
                == "plan.yaml: shares[1]: view A is listed twice; list each shared view once")
        for role in ["owner", "creator", "no-access"] {
            #expect(error("groups:\n  w: {role: \(role), views: [A]}\n").hasPrefix("plan.yaml: group w: views cannot be restricted for role \(role)"))
        }
        #expect(error("groups:\n  w: &g {role: viewer}\n  v: *g\n") == "plan.yaml: line 2: anchors and aliases (& and *) are not accepted; write each entry out")
    }

    @Test func emailsAreCheckedAsNocoDBChecksThem() {
        for ok in ["a@b.co", "first.last+tag@sub.example.com", "x_y@ex-ample.org", "josé@exemple.fr"] { #expect(AccessPlan.isEmail(ok), "\(ok)") }
        for bad in ["a@b", "a@localhost", "@b.com", "a..b@c.com", "a@-b.com", "a b@c.com", "a@b.c", "a@b.c0m", "a\u{1F600}@b.co",
                    String(repeating: "é", count: 33) + "@b.co"] {
            #expect(!AccessPlan.isEmail(bad), "\(bad)")
        }
    }

    static func ref(_ title: String) -> ViewRef {
        let view = seedViews().first { $0.title == title }!
        return ViewRef(title: title, id: view.id)
    }

    @Test func theExamplePlannedOnAFreshBaseThenNothing() throws {
        let plan = try AccessPlan.load(path: Self.example)
        let passwords = ["NOCOBRIDGE_WAITER_FORM_PASSWORD": "pw-1"]
        var snapshot = AccessSnapshot(views: Self.seedViews())
        let first = try AccessPlanner.plan(plan, current: snapshot, passwords: passwords)
        #expect(first.steps.filter { if case .invite = $0 { true } else { false } }.count == 4)
        // viewer (waiter + chef) sees Waiter Ops and Chef Orders Board only; commenter Cashier Txns only.
        let hidden = first.steps.compactMap { step -> String? in
            if case .setHidden(let view, let role, true) = step { "\(role):\(view.title)" } else { nil }
        }
        let all = Set(Self.seedViews().map(\.title))
        #expect(Set(hidden) == Set(all.subtracting(["Waiter Ops", "Chef Orders Board"]).map { "viewer:\($0)" })
                .union(all.subtracting(["Cashier Txns"]).map { "commenter:\($0)" }))
        #expect(first.steps.contains(.share(view: Self.ref("Waiter Ops Form"))) && first.steps.contains(.share(view: Self.ref("Chef Orders Board"))))
        #expect(first.steps.contains(.setPassword(view: Self.ref("Waiter Ops Form"), fromEnv: "NOCOBRIDGE_WAITER_FORM_PASSWORD")))
        // One visibility call for every rule, as the run makes it; the dry run prints these.
        #expect(first.calls.filter { if case .visibility = $0 { true } else { false } }.count == 1)
        #expect(first.calls.count == 4 + 1 + 2 + 1)
        #expect(first.notes.count == 1 && first.notes[0].contains("chef, waiter share the NocoDB role viewer"))
        #expect(!first.steps.map(\.description).joined().contains("pw-1"))

        // The state NocoDB is in after those steps plans nothing.
        for person in plan.people {
            snapshot.users[person.email] = MetaBaseUser(id: "u-" + person.email, email: person.email,
                                                        roles: plan.group(named: person.group)!.role)
        }
        for (i, view) in snapshot.views.enumerated() {
            for step in first.steps {
                if case .setHidden(let ref, let role, let hide) = step, ref.id == view.id { snapshot.views[i].hidden[role] = hide }
            }
            if view.title == "Waiter Ops Form" { snapshot.views[i].shareUUID = "u1"; snapshot.views[i].sharePassword = "pw-1" }
            if view.title == "Chef Orders Board" { snapshot.views[i].shareUUID = "u2" }
        }
        #expect(try AccessPlanner.plan(plan, current: snapshot, passwords: passwords).steps.isEmpty)
        // A changed password or role is one step each.
        let again = try AccessPlanner.plan(plan, current: snapshot, passwords: ["NOCOBRIDGE_WAITER_FORM_PASSWORD": "pw-2"])
        #expect(again.steps == [.setPassword(view: Self.ref("Waiter Ops Form"), fromEnv: "NOCOBRIDGE_WAITER_FORM_PASSWORD")])
        snapshot.users["chef1@restaurant.example"] = MetaBaseUser(id: "u9", email: "chef1@restaurant.example", roles: "editor")
        #expect(try AccessPlanner.plan(plan, current: snapshot, passwords: passwords).steps
                == [.changeRole(email: "chef1@restaurant.example", from: "editor", to: "viewer")])
    }

    /// NocoDB lets views share a title: each gets its rule by id, and the plan converges.
    @Test func sameTitledViewsOutsideThePlanAreEachHidden() throws {
        let plan = try AccessPlan.load(path: Self.example)
        let passwords = ["NOCOBRIDGE_WAITER_FORM_PASSWORD": "pw-1"]
        var snapshot = AccessSnapshot(views: Self.seedViews() + [
            .init(title: "Grid view", id: "vg1", type: MetaView.grid, tableID: "m0"),
            .init(title: "Grid view", id: "vg2", type: MetaView.grid, tableID: "m1"),
        ])
        let first = try AccessPlanner.plan(plan, current: snapshot, passwords: passwords)
        let grids = first.steps.compactMap { step -> String? in
            if case .setHidden(let view, let role, true) = step, view.title == "Grid view" { "\(role):\(view.id ?? "")" } else { nil }
        }
        #expect(Set(grids) == ["viewer:vg1", "viewer:vg2", "commenter:vg1", "commenter:vg2"])
        let visibility = first.calls.compactMap { call -> String? in if case .visibility = call { "\(call)" } else { nil } }
        #expect(visibility.count == 1 && visibility[0].contains("Grid view (vg1): hidden from commenter, hidden from viewer")
                && visibility[0].contains("Grid view (vg2): hidden from commenter, hidden from viewer"), "\(visibility)")
        for (i, view) in snapshot.views.enumerated() {
            for case .setHidden(let ref, let role, let hide) in first.steps where ref.id == view.id { snapshot.views[i].hidden[role] = hide }
        }
        #expect(!(try AccessPlanner.plan(plan, current: snapshot, passwords: passwords).steps.contains {
            if case .setHidden = $0 { true } else { false }
        }), "converged")
    }

    /// NocoDB lists every user of the instance; one without a role in this base is invited
    /// (that is what adds the mapping), never PATCHed (which would update no row).
    @Test func aListedUserWithoutARoleIsInvited() throws {
        let plan = try AccessPlan.parse(yaml: "groups:\n  w: {role: viewer}\npeople:\n  - {email: a@b.co, group: w}\n  - {email: c@d.co, group: w}\n")
        var snapshot = AccessSnapshot(views: Self.seedViews())
        snapshot.users["a@b.co"] = MetaBaseUser(id: "u1", email: "a@b.co", roles: nil)
        snapshot.users["c@d.co"] = MetaBaseUser(id: "u2", email: "c@d.co", roles: "")
        #expect(try AccessPlanner.plan(plan, current: snapshot, passwords: [:]).steps
                == [.invite(email: "a@b.co", role: "viewer"), .invite(email: "c@d.co", role: "viewer")])
    }

    /// What NocoDB refuses only once earlier calls were made is refused before any: the
    /// token's own role, the last owner, roles above the token's user.
    @Test func roleChangesNocoDBWouldRefuseLateAreRefusedFirst() throws {
        func refusal(_ people: String, users: [(String, String?)], me: String = "boss@x.co") -> String {
            let yaml = "groups:\n  m: {role: editor}\n  o: {role: owner}\npeople:\n" + people
            var snapshot = AccessSnapshot(views: Self.seedViews(), me: me)
            for (email, roles) in users { snapshot.users[email] = MetaBaseUser(id: "u-" + email, email: email, roles: roles) }
            do { _ = try AccessPlanner.plan(try AccessPlan.parse(yaml: yaml), current: snapshot, passwords: [:]); return "" } catch {
                return error.message
            }
        }
        let boss = ("boss@x.co", Optional("owner"))
        #expect(refusal("  - {email: boss@x.co, group: m}\n", users: [boss, ("o2@x.co", "owner")])
                .contains("boss@x.co is the API token's own user; changing its role (owner → editor)"))
        #expect(refusal("  - {email: o2@x.co, group: m}\n", users: [boss, ("o2@x.co", "owner")]) == "", "two owners: one may go")
        #expect(refusal("  - {email: o2@x.co, group: m}\n", users: [("boss@x.co", "creator"), ("o2@x.co", "owner")])
                .contains("o2@x.co is the base's only owner"))
        #expect(refusal("  - {email: new@x.co, group: o}\n", users: [("boss@x.co", "creator")])
                .contains("new@x.co as owner: NocoDB lets the API token's user (boss@x.co, creator in this base) invite only with a role up to its own"))
        #expect(refusal("  - {email: c@x.co, group: m}\n", users: [("boss@x.co", "editor"), ("c@x.co", "creator"), ("o@x.co", "owner")])
                .contains("c@x.co is creator; NocoDB lets the API token's user (boss@x.co, editor in this base) change only"))
        #expect(refusal("  - {email: new@x.co, group: m}\n", users: [("boss@x.co", nil)]).contains("boss@x.co, not in this base"))
    }

    @Test func unknownViewsAndMissingPasswordsAreRefused() throws {
        let plan = try AccessPlan.parse(yaml: "groups:\n  w: {role: viewer, views: [Waiter Opps]}\n")
        #expect(throws: AccessPlanError.self) { try AccessPlanner.plan(plan, current: AccessSnapshot(views: Self.seedViews()), passwords: [:]) }
        let example = try AccessPlan.load(path: Self.example)
        do {
            _ = try AccessPlanner.plan(example, current: AccessSnapshot(views: Self.seedViews()), passwords: [:])
            Issue.record("a missing password variable was accepted")
        } catch {
            #expect(error.message.contains("$NOCOBRIDGE_WAITER_FORM_PASSWORD, which is not set"))
        }
    }

    /// The current release lists a set share password only as set (a sentinel, or a hash):
    /// it is sent when the share is new, when NocoDB has none, to remove it, or when a reset
    /// is asked for, never merely because it cannot be compared.
    @Test func aPasswordNocoDBKeepsAsAHashIsSetOnlyWhenItMustBe() throws {
        let plan = try AccessPlan.load(path: Self.example)
        let passwords = ["NOCOBRIDGE_WAITER_FORM_PASSWORD": "pw-1"]
        let form = Self.ref("Waiter Ops Form")
        func steps(listed: String?, shared: Bool = true, passwords: [String: String] = passwords, reset: Bool = false) throws -> AccessPlanner.Result {
            var snapshot = AccessSnapshot(views: Self.seedViews())
            for (i, view) in snapshot.views.enumerated() {
                if view.title == "Waiter Ops Form" { snapshot.views[i].shareUUID = shared ? "u1" : nil; snapshot.views[i].sharePassword = listed }
                if view.title == "Chef Orders Board" { snapshot.views[i].shareUUID = "u2" }
            }
            let result = try AccessPlanner.plan(plan, current: snapshot, passwords: passwords, resetSharePasswords: reset)
            return AccessPlanner.Result(steps: result.steps.filter { if case .setPassword = $0 { true } else if case .share = $0 { true } else { false } },
                                        notes: result.notes)
        }
        let set = AccessStep.setPassword(view: form, fromEnv: "NOCOBRIDGE_WAITER_FORM_PASSWORD")
        for hidden in ["__NC_PASSWORD_MASKED__", "$2b$10$abcdefghijklmnopqrstuv"] {
            let kept = try steps(listed: hidden)
            #expect(kept.steps.isEmpty, "\(hidden)")
            #expect(kept.notes.contains { $0.contains("Waiter Ops Form has a password, which NocoDB keeps only as a hash") && $0.contains("--reset-share-passwords") })
            #expect(try steps(listed: hidden, reset: true).steps == [set])
        }
        #expect(try steps(listed: nil).steps == [set], "NocoDB has none")
        #expect(try steps(listed: nil, shared: false).steps == [.share(view: form), set], "a new share")
        #expect(try steps(listed: "pw-1").steps.isEmpty && (try steps(listed: "pw-1", reset: true).steps == [set]))
        // A plan without the password removes a hidden one too.
        let example = try String(contentsOfFile: Self.example, encoding: .utf8)
        let open = try AccessPlan.parse(yaml: example.replacingOccurrences(of: "\n    password_env: NOCOBRIDGE_WAITER_FORM_PASSWORD", with: ""))
        #expect(open.shares.allSatisfy { $0.passwordEnv == nil })
        var snapshot = AccessSnapshot(views: Self.seedViews())
        let i = try #require(snapshot.views.firstIndex { $0.title == "Waiter Ops Form" })
        snapshot.views[i].shareUUID = "u1"
        snapshot.views[i].sharePassword = "__NC_PASSWORD_MASKED__"
        #expect(try AccessPlanner.plan(open, current: snapshot, passwords: [:]).steps.filter { if case .setPassword = $0 { true } else { false } }
                == [.setPassword(view: form, fromEnv: nil)])
    }

    /// A share password never reaches a log through the values that carry it.
    @Test func sharePasswordsAreRedactedInDescriptions() {
        let view = AccessSnapshot.View(title: "Waiter Ops Form", id: "v1", type: MetaView.form, tableID: "m1",
                                       shareUUID: "u1", sharePassword: "pw-s3cret")
        var dumped = ""
        dump(view, to: &dumped)
        for text in ["\(view)", String(reflecting: view), dumped, "\(AccessSnapshot(views: [view]))"] {
            #expect(!text.contains("pw-s3cret") && text.contains("<redacted>"), "\(text)")
        }
    }

    @Test func linksAreTheOnesNocoDBsUIShows() {
        #expect(AccessPlanner.link(base: "https://noco.example.com/", type: MetaView.form, uuid: "u-1")
                == "https://noco.example.com/dashboard/#/nc/form/u-1")
        #expect(AccessPlanner.link(base: "https://noco.example.com", type: MetaView.kanban, uuid: "u-2")
                == "https://noco.example.com/dashboard/#/nc/kanban/u-2")
        #expect(AccessPlanner.link(base: "http://h:8080", type: MetaView.grid, uuid: "u-3") == "http://h:8080/dashboard/#/nc/view/u-3")
    }
}
