import Foundation
import Logging

/// What NocoDB has now, reduced to what an access plan compares.
public struct AccessSnapshot: Sendable, Equatable {
    /// Printed, logged or dumped, the share password shows only as set or not.
    public struct View: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
        public var title: String
        /// nil for a view this run is about to create.
        public var id: String?
        public var type: Int
        public var tableID: String?
        /// Base role → hidden from it.
        public var hidden: [String: Bool]
        /// The share's uuid and password when the view is shared.
        public var shareUUID: String?
        public var sharePassword: String?
        public init(title: String, id: String?, type: Int, tableID: String?, hidden: [String: Bool] = [:],
                    shareUUID: String? = nil, sharePassword: String? = nil) {
            self.title = title
            self.id = id
            self.type = type
            self.tableID = tableID
            self.hidden = hidden
            self.shareUUID = shareUUID
            self.sharePassword = sharePassword
        }

        public var description: String {
            "View(title: \(title), id: \(id ?? "nil"), type: \(type), tableID: \(tableID ?? "nil"), hidden: \(hidden), "
                + "shareUUID: \(shareUUID ?? "nil"), sharePassword: \(redactedPassword(sharePassword)))"
        }

        public var debugDescription: String { description }

        public var customMirror: Mirror {
            Mirror(self, children: ["title": title, "id": id as Any, "type": type, "tableID": tableID as Any, "hidden": hidden,
                                    "shareUUID": shareUUID as Any, "sharePassword": redactedPassword(sharePassword)])
        }
    }

    /// Lower-cased e-mail → user of the instance (with no roles when not in the base).
    public var users: [String: MetaBaseUser]
    public var views: [View]
    /// The lower-cased e-mail of the API token's user; nil when unknown (no role checks).
    public var me: String?
    public init(users: [String: MetaBaseUser] = [:], views: [View] = [], me: String? = nil) {
        self.users = users
        self.views = views
        self.me = me
    }
}

/// A view an access step acts on: by id, since NocoDB lets views share a title (its view
/// create services check none: services/grids.service.ts:16-60, forms.service.ts,
/// kanbans.service.ts:24-73). The title is for people.
public struct ViewRef: Sendable, Equatable, CustomStringConvertible {
    public let title: String
    /// nil for a view this run's provisioning is about to create; the plan is made again,
    /// with ids, once it exists.
    public let id: String?

    public init(title: String, id: String?) {
        self.title = title
        self.id = id
    }

    public var description: String { "\(title) (\(id ?? "created by this run"))" }

    /// The id's place in a call's path.
    var pathSegment: String { id ?? "{\(title)}" }
}

/// One access change. Descriptions never carry a password.
public enum AccessStep: Sendable, Equatable, CustomStringConvertible {
    case invite(email: String, role: String)
    case changeRole(email: String, from: String, to: String)
    case setHidden(view: ViewRef, role: String, hidden: Bool)
    case share(view: ViewRef)
    case setPassword(view: ViewRef, fromEnv: String?)

    public var description: String {
        switch self {
        case .invite(let email, let role): "invite \(email) as \(role)"
        case .changeRole(let email, let from, let to): "\(email): \(from) → \(to)"
        case .setHidden(let view, let role, let hidden): "view \(view) \(hidden ? "hidden from" : "shown to") \(role)"
        case .share(let view): "share view \(view) as a link"
        case .setPassword(let view, let env): "view \(view): " + (env.map { "password from $\($0)" } ?? "no password")
        }
    }
}

/// One HTTP call an access run makes: a step, or all visibility changes in the one call
/// NocoDB takes them in (services/model-visibilities.service.ts:14-70 sets a list).
public enum AccessCall: Sendable, Equatable, CustomStringConvertible {
    case step(AccessStep)
    case visibility([(view: ViewRef, role: String, hidden: Bool)])

    public static func == (a: AccessCall, b: AccessCall) -> Bool {
        switch (a, b) {
        case (.step(let x), .step(let y)): x == y
        case (.visibility(let x), .visibility(let y)):
            x.count == y.count && zip(x, y).allSatisfy { $0.view == $1.view && $0.role == $1.role && $0.hidden == $1.hidden }
        default: false
        }
    }

    /// The call's method and path, then what it changes.
    public var description: String {
        switch self {
        case .step(let step):
            return switch step {
            case .invite: "POST /api/v2/meta/bases/{base}/users — \(step)"
            case .changeRole: "PATCH /api/v2/meta/bases/{base}/users/{user} — \(step)"
            case .setHidden: "POST /api/v2/meta/bases/{base}/visibility-rules — \(step)"
            case .share(let view): "POST /api/v2/meta/views/\(view.pathSegment)/share — \(step)"
            case .setPassword(let view, _): "PATCH /api/v2/meta/views/\(view.pathSegment)/share — \(step)"
            }
        case .visibility(let rules):
            var byView: [(ViewRef, [String])] = []
            for rule in rules {
                let entry = "\(rule.hidden ? "hidden from" : "shown to") \(rule.role)"
                if let i = byView.firstIndex(where: { $0.0 == rule.view }) { byView[i].1.append(entry) } else { byView.append((rule.view, [entry])) }
            }
            return "POST /api/v2/meta/bases/{base}/visibility-rules — " + byView.map { "\($0.0): \($0.1.joined(separator: ", "))" }.joined(separator: "; ")
        }
    }

    /// The calls `steps` take, in the order `AccessProvisioner.apply` makes them: every
    /// visibility change in one call, where the first of them stood.
    public static func calls(_ steps: [AccessStep]) -> [AccessCall] {
        var calls: [AccessCall] = []
        var rules: [(view: ViewRef, role: String, hidden: Bool)] = []
        var at: Int?
        for step in steps {
            if case .setHidden(let view, let role, let hidden) = step {
                if at == nil { at = calls.count }
                rules.append((view, role, hidden))
            } else {
                calls.append(.step(step))
            }
        }
        if let at { calls.insert(.visibility(rules), at: at) }
        return calls
    }
}

/// Decides the calls that bring NocoDB to an access plan; pure, so idempotency and every
/// refusal are tested without a server.
public enum AccessPlanner {
    public struct Result: Sendable, Equatable {
        public var steps: [AccessStep]
        /// What the plan cannot have in NocoDB's community edition, said once.
        public var notes: [String]
        /// The calls the steps take (what `--dry-run` prints).
        public var calls: [AccessCall] { AccessCall.calls(steps) }
    }

    /// - Parameters:
    ///   - passwords: environment variable → value, for the plan's `password_env`.
    ///   - resetSharePasswords: set every planned share password again, also where NocoDB
    ///     cannot tell whether it is the one planned (`provision --reset-share-passwords`).
    public static func plan(_ plan: AccessPlan, current: AccessSnapshot, passwords: [String: String],
                            resetSharePasswords: Bool = false) throws(AccessPlanError) -> Result {
        let byTitle = Dictionary(grouping: current.views, by: \.title)
        for title in plan.viewTitles {
            guard let found = byTitle[title] else {
                throw AccessPlanError("access plan", "view \"\(title)\" is not in the base (views: \(Set(current.views.map(\.title)).sorted().joined(separator: ", ")))")
            }
            guard found.count == 1 else {
                throw AccessPlanError("access plan", "\(found.count) views are titled \"\(title)\"; give each view the plan names a title of its own")
            }
        }
        for share in plan.shares {
            if let env = share.passwordEnv, (passwords[env] ?? "").isEmpty {
                throw AccessPlanError("access plan", "shares: view \(share.view) wants a password from $\(env), which is not set")
            }
        }
        var steps: [AccessStep] = []
        var notes: [String] = []

        for person in plan.people {
            let role = plan.group(named: person.group)!.role
            // NocoDB lists every user of the instance, with no roles for those not in this
            // base (models/BaseUser.ts:191-262). Only an invite brings them in
            // (base-users.service.ts:101-139): a PATCH of their role updates no row and
            // still answers 200 (models/BaseUser.ts:296-315).
            if let user = current.users[person.email], let current = user.roles, !current.isEmpty {
                let roles = current.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                if roles != [role] { steps.append(.changeRole(email: person.email, from: current, to: role)) }
            } else {
                steps.append(.invite(email: person.email, role: role))
            }
        }

        try checkRoleChanges(steps, current: current)

        // Per base role, the views its groups see. Roles above editor see every view anyway
        // in NocoDB's UI; no-access sees nothing, so neither gets rules.
        let managedRoles = ["editor", "commenter", "viewer"]
        for role in managedRoles {
            let groups = plan.groups.filter { $0.role == role }
            guard !groups.isEmpty else { continue }
            let visible: Set<String>? = groups.contains { $0.views == nil } ? nil : Set(groups.flatMap { $0.views ?? [] })
            if groups.count > 1, visible != nil {
                notes.append("Groups \(groups.map(\.name).joined(separator: ", ")) share the NocoDB role \(role): each sees the views of all of them (NocoDB hides views per role, not per person).")
            }
            // Every view by its id: views outside the plan may share a title.
            for view in current.views.sorted(by: { ($0.title, $0.id ?? "") < ($1.title, $1.id ?? "") }) {
                let hide = visible.map { !$0.contains(view.title) } ?? false
                if (view.hidden[role] ?? false) != hide {
                    steps.append(.setHidden(view: ViewRef(title: view.title, id: view.id), role: role, hidden: hide))
                }
            }
        }

        for share in plan.shares {
            let view = byTitle[share.view]![0]
            let ref = ViewRef(title: view.title, id: view.id)
            if view.shareUUID == nil { steps.append(.share(view: ref)) }
            let wanted = share.passwordEnv.flatMap { passwords[$0] }
            let set: Bool
            switch SharePassword(listed: view.sharePassword) {
            case .unset: set = wanted != nil
            case .known(let have): set = wanted != have || (resetSharePasswords && wanted != nil)
            case .hidden:
                // Which password it is cannot be known; setting it on every run would change
                // NocoDB on every run, so only a removal or an asked-for reset is sent.
                set = wanted == nil || resetSharePasswords
                if !set, let env = share.passwordEnv {
                    notes.append("Shared view \(share.view) has a password, which NocoDB keeps only as a hash: it was not compared with $\(env); --reset-share-passwords sets it again.")
                }
            }
            if set { steps.append(.setPassword(view: ref, fromEnv: share.passwordEnv)) }
        }
        return Result(steps: steps, notes: notes)
    }

    /// A share's password as NocoDB lists it. 0.258.3 lists it as given (models/View.ts:
    /// 1272-1282, :1578-1607). The current release keeps a bcrypt hash and lists a set
    /// password as a sentinel (View.maskPasswordForResponse; services/views.service.ts
    /// @f4e47b83:74-76, :778; nocodb-sdk passwordHelpers.ts NC_VIEW_PASSWORD_PROTECTED_SENTINEL),
    /// or a hash should one slip through: set, but not comparable.
    enum SharePassword: Equatable {
        case unset
        case known(String)
        case hidden

        static let maskedSentinel = "__NC_PASSWORD_MASKED__"

        init(listed: String?) {
            guard let listed, !listed.isEmpty else { self = .unset; return }
            let bcrypt = ["$2a$", "$2b$", "$2y$"].contains { listed.hasPrefix($0) }
            self = listed == Self.maskedSentinel || bcrypt ? .hidden : .known(listed)
        }
    }

    /// NocoDB's base roles from the strongest (nocodb-sdk src/lib/enums.ts:295-302).
    static let orderedRoles = ["owner", "creator", "editor", "commenter", "viewer", "no-access"]

    /// utils/roleHelper.ts:5-30 getProjectRolePower: the strongest role's rank (no-access 0
    /// … owner 5), -1 without a role.
    static func power(_ roles: String?) -> Int {
        let ranks = (roles ?? "").split(separator: ",").compactMap { role in
            orderedRoles.firstIndex(of: role.trimmingCharacters(in: .whitespaces)).map { orderedRoles.count - 1 - $0 }
        }
        return ranks.max() ?? -1
    }

    /// What NocoDB would refuse only after earlier steps had been made, refused here before
    /// any: the token's user changing its own role (every later call would run with the new
    /// one), the base's last owner changed (services/base-users/base-users.service.ts:275-285),
    /// a role changed for someone above the token's user (:287-289) and an invite with a role
    /// above it (:60-66).
    static func checkRoleChanges(_ steps: [AccessStep], current: AccessSnapshot) throws(AccessPlanError) {
        var owners = current.users.values.filter { power($0.roles) == power("owner") }.count
        let me = current.me.flatMap { current.users[$0] }
        let mine = me?.roles.flatMap { $0.isEmpty ? nil : $0 }
        let described = mine.map { "\(me!.email), \($0) in this base" } ?? "\(current.me ?? "?"), not in this base"
        for step in steps {
            switch step {
            case .invite(let email, let role):
                if current.me != nil, power(role) > power(mine) {
                    throw AccessPlanError("access plan", "people: \(email) as \(role): NocoDB lets the API token's user (\(described)) invite only with a role up to its own")
                }
                if role == "owner" { owners += 1 }
            case .changeRole(let email, let from, let to):
                if email == current.me {
                    throw AccessPlanError("access plan", "people: \(email) is the API token's own user; changing its role (\(from) → \(to)) would leave the rest of the run without its rights: put it in a group with role \(from), or leave it out")
                }
                if power(from) == power("owner") {
                    guard owners > 1 else {
                        throw AccessPlanError("access plan", "people: \(email) is the base's only owner; NocoDB refuses to change that role (At least one owner is required)")
                    }
                    if to != "owner" { owners -= 1 }
                }
                if current.me != nil, power(from) > power(mine) {
                    throw AccessPlanError("access plan", "people: \(email) is \(from); NocoDB lets the API token's user (\(described)) change only the roles of people up to its own")
                }
            default:
                break
            }
        }
    }

    /// A shared view's public address, as NocoDB's UI builds it
    /// (packages/nc-gui/components/smartsheet/toolbar/ShareView.vue:92-114).
    public static func link(base url: String, type: Int, uuid: String) -> String {
        let kind = switch type {
        case MetaView.form: "form"
        case MetaView.kanban: "kanban"
        case 2: "gallery"
        case 5: "map"
        default: "view"
        }
        return url.trimmingSuffix("/") + "/dashboard/#/nc/\(kind)/\(uuid)"
    }
}

/// Reads NocoDB's users, view visibility and shares, and applies an access plan.
public struct AccessProvisioner: Sendable {
    public let client: NocoDBMetaClient
    public let logger: Logger

    public init(client: NocoDBMetaClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    public func snapshot(base: String) throws -> AccessSnapshot {
        var snapshot = AccessSnapshot(me: try client.me().email.lowercased())
        for user in try client.baseUsers(base: base) { snapshot.users[user.email.lowercased()] = user }
        // Visibility first, then shares: NocoDB's shared-view list fills the table's view-list
        // cache with only the shared views when that cache is cold (models/View.ts:1578-1607),
        // and reading the visibility rules warms it with every view (model.getViews,
        // services/model-visibilities.service.ts:106). The other order could hide views from
        // later calls.
        let visibility = try client.visibilityRules(base: base)
        var shares: [String: MetaSharedView] = [:]
        for tableID in Set(visibility.map(\.fkModelId)).sorted() {
            for shared in try client.sharedViews(table: tableID) { shares[shared.id] = shared }
        }
        snapshot.views = visibility.map { v in
            AccessSnapshot.View(title: v.title, id: v.id, type: Int(v.type), tableID: v.fkModelId,
                                hidden: v.disabled.mapValues(\.wrappedValue),
                                shareUUID: shares[v.id]?.uuid, sharePassword: shares[v.id]?.password)
        }
        return snapshot
    }

    /// Makes the calls `steps` take (`AccessCall.calls`), in that order. Views are addressed
    /// by id; a step for a view not created yet is a caller's mistake (plan again once
    /// provisioning made it).
    public func apply(_ steps: [AccessStep], base: String, passwords: [String: String]) throws {
        let users = try snapshot(base: base).users
        func id(_ view: ViewRef) throws -> String {
            guard let id = view.id else { throw NocoDBError.notFound("view \"\(view.title)\" (not created yet)") }
            return id
        }
        for call in AccessCall.calls(steps) {
            logger.info("access", metadata: ["nocodb.call": "\(call)"])
            switch call {
            case .visibility(let rules):
                var byView: [(String, [String: Bool])] = []
                for rule in rules {
                    let viewID = try id(rule.view)
                    if let i = byView.firstIndex(where: { $0.0 == viewID }) { byView[i].1[rule.role] = rule.hidden } else {
                        byView.append((viewID, [rule.role: rule.hidden]))
                    }
                }
                try client.setVisibility(base: base, rules: byView.map { (view: $0.0, disabled: $0.1) })
            case .step(.invite(let email, let role)):
                try client.inviteUser(base: base, email: email, role: role)
            case .step(.changeRole(let email, _, let to)):
                guard let user = users[email] else { throw NocoDBError.notFound("user \(email)") }
                try client.updateUserRole(base: base, user: user, role: to)
            case .step(.share(let view)):
                _ = try client.shareView(view: try id(view))
            case .step(.setPassword(let view, let env)):
                try client.setSharePassword(view: try id(view), password: env.flatMap { passwords[$0] })
            case .step(.setHidden):
                break  // never a call of its own: AccessCall.calls gathers them
            }
        }
    }
}
