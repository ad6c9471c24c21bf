import Foundation
import Yams

/// The operator's access plan (`nocobridge provision --access FILE`): staff groups with a
/// NocoDB base role and the views they see, people by e-mail, and views shared as links.
/// NocoDB's community edition hides views per *base role*, not per person or group
/// (services/model-visibilities.service.ts), so groups that share a role see the union of
/// their views; `AccessPlanner` says so when it happens.
public struct AccessPlan: Sendable, Equatable {
    public struct Group: Sendable, Equatable {
        public let name: String
        /// One of `AccessPlan.roles`.
        public let role: String
        /// View titles this group sees; nil: every view.
        public let views: [String]?
    }

    public struct Person: Sendable, Equatable {
        /// Lower-cased, as NocoDB stores it (base-users.service.ts:81-84).
        public let email: String
        public let group: String
    }

    public struct Share: Sendable, Equatable {
        public let view: String
        /// The environment variable holding the link's password; nil: no password. The
        /// password itself never appears in the file, in output or in logs.
        public let passwordEnv: String?
    }

    public let groups: [Group]
    public let people: [Person]
    public let shares: [Share]

    /// The roles NocoDB 0.258.3 accepts for a base user (base-users.service.ts:68-79).
    public static let roles = ["owner", "creator", "editor", "commenter", "viewer", "no-access"]

    public func group(named name: String) -> Group? { groups.first { $0.name == name } }

    /// Every view title the plan names.
    public var viewTitles: [String] {
        var titles: [String] = []
        for g in groups { titles += g.views ?? [] }
        titles += shares.map(\.view)
        var seen = Set<String>()
        return titles.filter { seen.insert($0).inserted }
    }

    /// Reads a plan; every mistake is one line naming the file and the entry.
    public static func load(path: String) throws(AccessPlanError) -> AccessPlan {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw AccessPlanError(path, "cannot be read")
        }
        return try parse(yaml: text, source: path)
    }

    public static func parse(yaml: String, source: String = "access plan") throws(AccessPlanError) -> AccessPlan {
        let tree: Any?
        do {
            let parser = try Parser(yaml: yaml)
            let node = try parser.singleRoot()
            // The file is hand-written and needs no anchors or aliases; one alias would
            // silently give two groups or people the same entry. The parser owns the
            // anchors the nodes point to (weakly), so it stays alive while they are read.
            if let anchored = withExtendedLifetime(parser, { node.flatMap(firstAnchor) }) {
                throw AccessPlanError(source, "line \(anchored.line): anchors and aliases (& and *) are not accepted; write each entry out")
            }
            tree = node?.any
        } catch let error as AccessPlanError {
            throw error
        } catch {
            throw AccessPlanError(source, "is not valid YAML: \(yamlProblem(error))")
        }
        guard let root = tree as? [String: Any] else { throw AccessPlanError(source, "expected a mapping with groups, people and shares") }
        try onlyKeys(root, ["groups", "people", "shares"], at: "the top level", source)

        var groups: [Group] = []
        guard let rawGroups = root["groups"] as? [String: Any], !rawGroups.isEmpty else {
            throw AccessPlanError(source, "groups: expected a mapping of group name → role and views")
        }
        for name in rawGroups.keys.sorted() {
            guard let g = rawGroups[name] as? [String: Any] else { throw AccessPlanError(source, "group \(name): expected role and views") }
            try onlyKeys(g, ["role", "views"], at: "group \(name)", source)
            guard let role = g["role"] as? String else { throw AccessPlanError(source, "group \(name): role is missing") }
            guard roles.contains(role) else {
                throw AccessPlanError(source, "group \(name): role \"\(role)\" is not a NocoDB base role (\(roles.joined(separator: ", ")))")
            }
            var views: [String]?
            if let raw = g["views"] {
                guard restrictableRoles.contains(role) else {
                    throw AccessPlanError(source, "group \(name): views cannot be restricted for role \(role): NocoDB hides views only from \(restrictableRoles.joined(separator: ", ")) (its UI's view visibility settings); remove views, or give the group one of those roles")
                }
                guard let list = raw as? [Any], list.allSatisfy({ $0 is String }) else {
                    throw AccessPlanError(source, "group \(name): views must be a list of view titles")
                }
                views = list.map { $0 as! String }
            }
            groups.append(Group(name: name, role: role, views: views))
        }

        var people: [Person] = []
        var emails = Set<String>()
        for (i, raw) in try list(root, "people", of: "{email, group}", source).enumerated() {
            guard let p = raw as? [String: Any] else { throw AccessPlanError(source, "people[\(i)]: expected email and group") }
            try onlyKeys(p, ["email", "group"], at: "people[\(i)]", source)
            guard let value = p["email"] else { throw AccessPlanError(source, "people[\(i)]: email is missing") }
            guard let email = (value as? String)?.lowercased().trimmingCharacters(in: .whitespaces) else {
                throw AccessPlanError(source, "people[\(i)]: email must be a string (an e-mail address)")
            }
            guard isEmail(email) else {
                throw AccessPlanError(source, "people[\(i)]: NocoDB refuses the e-mail \"\(email)\" (it checks addresses with validator.js isEmail: name@domain.tld)")
            }
            guard let group = p["group"] as? String, groups.contains(where: { $0.name == group }) else {
                throw AccessPlanError(source, "people[\(i)] (\(email)): group \"\(p["group"].map { "\($0)" } ?? "")\" is not one of \(groups.map(\.name).joined(separator: ", "))")
            }
            guard emails.insert(email).inserted else { throw AccessPlanError(source, "people[\(i)]: \(email) is listed twice") }
            people.append(Person(email: email, group: group))
        }

        var shares: [Share] = []
        for (i, raw) in try list(root, "shares", of: "{view, password_env}", source).enumerated() {
            guard let s = raw as? [String: Any], let view = s["view"] as? String else {
                throw AccessPlanError(source, "shares[\(i)]: expected view (a view title) and optionally password_env")
            }
            try onlyKeys(s, ["view", "password_env"], at: "shares[\(i)]", source)
            var env: String?
            if let raw = s["password_env"] {
                guard let name = raw as? String, name.range(of: #"^[A-Za-z_][A-Za-z0-9_]*$"#, options: .regularExpression) != nil else {
                    throw AccessPlanError(source, "shares[\(i)]: password_env must name an environment variable (the password is never written in the plan)")
                }
                env = name
            }
            guard !shares.contains(where: { $0.view == view }) else {
                throw AccessPlanError(source, "shares[\(i)]: view \(view) is listed twice; list each shared view once")
            }
            shares.append(Share(view: view, passwordEnv: env))
        }
        return AccessPlan(groups: groups, people: people, shares: shares)
    }

    /// The roles whose views a plan may restrict: those NocoDB's UI offers view visibility
    /// for (packages/nc-gui/components/dashboard/settings/UIAcl.vue:26). Owners and creators
    /// manage the base; no-access sees no view at all.
    public static let restrictableRoles = ["editor", "commenter", "viewer"]

    /// A top-level list, absent meaning empty; any other shape is refused rather than read
    /// as nothing.
    private static func list(_ root: [String: Any], _ key: String, of item: String, _ source: String) throws(AccessPlanError) -> [Any] {
        guard let raw = root[key] else { return [] }
        guard let list = raw as? [Any] else {
            throw AccessPlanError(source, "\(key): expected a list of \(item) entries, each starting with \"- \"")
        }
        return list
    }

    private static func firstAnchor(_ node: Node) -> Mark? {
        if node.anchor != nil { return node.mark }
        switch node {
        case .alias(let alias): return alias.mark
        case .mapping(let mapping):
            for (key, value) in mapping { if let m = firstAnchor(key) ?? firstAnchor(value) { return m } }
        case .sequence(let sequence):
            for item in sequence { if let m = firstAnchor(item) { return m } }
        case .scalar: break
        }
        return nil
    }

    /// Where and what, without the parser's quote of the line (which may hold a value).
    private static func yamlProblem(_ error: any Error) -> String {
        switch error as? YamlError {
        case .scanner(_, let problem, let mark, _)?, .parser(_, let problem, let mark, _)?, .composer(_, let problem, let mark, _)?:
            "line \(mark.line), column \(mark.column): \(problem)"
        default:
            "\(error)".split(separator: "\n").first.map(String.init) ?? "unreadable"
        }
    }

    private static func onlyKeys(_ map: [String: Any], _ allowed: Set<String>, at place: String, _ source: String) throws(AccessPlanError) {
        if let unknown = map.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw AccessPlanError(source, "\(place): unknown key \"\(unknown)\" (expected \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    /// validator.js `isEmail` with its defaults (validator 13.11, packages/nocodb/package.json:
    /// 160), which NocoDB applies to every invited address (services/base-users/
    /// base-users.service.ts:86-93): a dot-atom local part of at most 64 bytes, whose atoms
    /// may hold non-ASCII letters (`allow_utf8_local_part` is on by default: emailUserUtf8Part
    /// takes U+00A1–U+D7FF, U+F900–U+FDCF, U+FDF0–U+FFEF, so no astral characters), and a
    /// domain of labels with a top-level part of two or more letters. Quoted local parts,
    /// which validator.js also takes, are refused here.
    public static func isEmail(_ value: String) -> Bool {
        guard value.utf16.count <= 254, let at = value.lastIndex(of: "@") else { return false }
        let local = value[..<at], domain = value[value.index(after: at)...]
        var atext = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")
        for (low, high) in [(0x00A1, 0xD7FF), (0xF900, 0xFDCF), (0xFDF0, 0xFFEF)] {
            atext.insert(charactersIn: Unicode.Scalar(UInt32(low))!...Unicode.Scalar(UInt32(high))!)
        }
        guard !local.isEmpty, local.utf8.count <= 64,
              local.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({
                  !$0.isEmpty && $0.unicodeScalars.allSatisfy(atext.contains)
              }) else { return false }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2, let tld = labels.last, tld.count >= 2,
              tld.unicodeScalars.allSatisfy({ CharacterSet.letters.contains($0) }) || tld.hasPrefix("xn--") else { return false }
        let labelChars = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-"))
        return labels.allSatisfy { label in
            !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.unicodeScalars.allSatisfy(labelChars.contains)
        }
    }
}

/// A mistake in the access plan, named in one line.
public struct AccessPlanError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ source: String, _ message: String) { self.message = "\(source): \(message)" }
    public var description: String { message }
}
