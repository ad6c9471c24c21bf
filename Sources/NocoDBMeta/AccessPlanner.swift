import Foundation
import Logging

/// What NocoDB has now, reduced to what an access plan compares.
public struct AccessSnapshot: Sendable, Equatable {
    public struct View: Sendable, Equatable {
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

/// One access change. Descriptions name the call and never carry a password.
public enum AccessStep: Sendable, Equatable, CustomStringConvertible {
    case invite(email: String, role: String)
    case changeRole(email: String, from: String, to: String)
    case setHidden(view: String, role: String, hidden: Bool)
    case share(view: String)
    case setPassword(view: String, fromEnv: String?)

    public var description: String {
        switch self {
        case .invite(let email, let role):
            "POST /api/v2/meta/bases/{base}/users — invite \(email) as \(role)"
        case .changeRole(let email, let from, let to):
            "PATCH /api/v2/meta/bases/{base}/users/{user} — \(email): \(from) → \(to)"
        case .setHidden(let view, let role, let hidden):
            "POST /api/v2/meta/bases/{base}/visibility-rules — view \(view) \(hidden ? "hidden from" : "shown to") \(role)"
        case .share(let view):
            "POST /api/v2/meta/views/{\(view)}/share — share view \(view) as a link"
        case .setPassword(let view, let env):
            "PATCH /api/v2/meta/views/{\(view)}/share — " + (env.map { "password from $\($0)" } ?? "no password")
        }
    }
}

/// Decides the calls that bring NocoDB to an access plan; pure, so idempotency and every
/// refusal are tested without a server.
public enum AccessPlanner {
    public struct Result: Sendable, Equatable {
        public var steps: [AccessStep]
        /// What the plan cannot have in NocoDB's community edition, said once.
        public var notes: [String]
    }

    /// - Parameter passwords: environment variable → value, for the plan's `password_env`.
    public static func plan(_ plan: AccessPlan, current: AccessSnapshot, passwords: [String: String]) throws(AccessPlanError) -> Result {
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
            for view in current.views.sorted(by: { $0.title < $1.title }) {
                let hide = visible.map { !$0.contains(view.title) } ?? false
                if (view.hidden[role] ?? false) != hide { steps.append(.setHidden(view: view.title, role: role, hidden: hide)) }
            }
        }

        for share in plan.shares {
            let view = byTitle[share.view]![0]
            if view.shareUUID == nil { steps.append(.share(view: share.view)) }
            let wanted = share.passwordEnv.flatMap { passwords[$0] }
            let have = view.sharePassword.flatMap { $0.isEmpty ? nil : $0 }
            if wanted != have { steps.append(.setPassword(view: share.view, fromEnv: share.passwordEnv)) }
        }
        return Result(steps: steps, notes: notes)
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

    /// Applies `steps` against a fresh snapshot (ids of views created meanwhile); the
    /// visibility changes go in one call.
    public func apply(_ steps: [AccessStep], base: String, passwords: [String: String]) throws {
        let now = try snapshot(base: base)
        func view(_ title: String) throws -> AccessSnapshot.View {
            guard let v = now.views.first(where: { $0.title == title }), v.id != nil else { throw NocoDBError.notFound("view \"\(title)\"") }
            return v
        }
        var rules: [String: [String: Bool]] = [:]
        var ruleOrder: [String] = []
        for step in steps {
            logger.info("access", metadata: ["nocodb.step": "\(step)"])
            switch step {
            case .invite(let email, let role):
                try client.inviteUser(base: base, email: email, role: role)
            case .changeRole(let email, _, let to):
                guard let user = now.users[email] else { throw NocoDBError.notFound("user \(email)") }
                try client.updateUserRole(base: base, user: user, role: to)
            case .setHidden(let title, let role, let hidden):
                let id = try view(title).id!
                if rules[id] == nil { ruleOrder.append(id) }
                rules[id, default: [:]][role] = hidden
            case .share(let title):
                _ = try client.shareView(view: try view(title).id!)
            case .setPassword(let title, let env):
                try client.setSharePassword(view: try view(title).id!, password: env.flatMap { passwords[$0] })
            }
        }
        if !rules.isEmpty {
            try client.setVisibility(base: base, rules: ruleOrder.map { ($0, rules[$0]!) })
        }
    }
}
