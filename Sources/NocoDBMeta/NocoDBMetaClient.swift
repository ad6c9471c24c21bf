import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging

/// Blocking client for NocoDB's v2 meta API (bases, tables, fields, views, filters). Blocking
/// because its callers are the CLI and the bridge's own threads; each call retries what can
/// succeed later (no answer, 5xx) with capped exponential backoff and jitter, and fails at
/// once on what cannot (401, 404, 4xx).
public final class NocoDBMetaClient: Sendable {
    public let configuration: NocoDBConfiguration
    private let session: URLSession
    private let logger: Logger

    public init(configuration: NocoDBConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        let settings = URLSessionConfiguration.ephemeral
        let seconds = Double(configuration.timeout.components.seconds) + Double(configuration.timeout.components.attoseconds) / 1e18
        settings.timeoutIntervalForRequest = seconds
        settings.timeoutIntervalForResource = seconds
        session = URLSession(configuration: settings)
    }

    // MARK: Reads

    public func bases() throws -> [MetaBase] {
        try pages("list bases", "/api/v2/meta/bases/", id: \.id)
    }

    public func tables(base: String) throws -> [MetaTable] {
        try pages("list tables of base \(base)", "/api/v2/meta/bases/\(escape(base))/tables", id: \.id)
    }

    /// One table with its fields.
    public func table(id: String) throws -> MetaTable {
        try call("read table \(id)", "GET", "/api/v2/meta/tables/\(escape(id))")
    }

    public func views(table: String) throws -> [MetaView] {
        try pages("list views of table \(table)", "/api/v2/meta/tables/\(escape(table))/views", id: \.id)
    }

    public func viewColumns(view: String) throws -> [MetaViewColumn] {
        try pages("list fields of view \(view)", "/api/v2/meta/views/\(escape(view))/columns", id: \.id)
    }

    public func filters(view: String) throws -> [MetaFilter] {
        try pages("list filters of view \(view)", "/api/v2/meta/views/\(escape(view))/filters", id: \.id)
    }

    /// Every user of the instance, with their role in this base (none for non-members). The
    /// list is whole: NocoDB gives it a count but no limit, so its pageInfo claims pages of 25
    /// (services/base-users/base-users.service.ts:35-45) that `page` would not change.
    public func baseUsers(base: String) throws -> [MetaBaseUser] {
        let answer: BaseUsers = try call("list users of base \(base)", "GET", "/api/v2/meta/bases/\(escape(base))/users")
        return answer.users.list
    }

    /// The user the API token belongs to (strategies/authtoken.strategy/authtoken.strategy.ts:
    /// 14-56). Its base role is read from `baseUsers`: on this v2 path NocoDB 0.258.3 leaves
    /// `base_roles` empty (middlewares/extract-ids/extract-ids.middleware.ts:343-353).
    public func me() throws -> MetaUser {
        try call("read the API token's user", "GET", "/api/v2/auth/user/me")
    }

    /// Every view of the base with the roles it is hidden from.
    public func visibilityRules(base: String) throws -> [MetaViewVisibility] {
        try call("read view visibility of base \(base)", "GET", "/api/v2/meta/bases/\(escape(base))/visibility-rules")
    }

    /// The table's shared views (uuid and password).
    public func sharedViews(table: String) throws -> [MetaSharedView] {
        try pages("list shared views of table \(table)", "/api/v2/meta/tables/\(escape(table))/share", id: \.id)
    }

    // MARK: Writes

    /// Creates a table with an `id` primary key first: NocoDB 0.258.3 adds only
    /// created_at/updated_at/created_by/updated_by to a table created through the API
    /// (services/tables.service.ts:499-575); its web UI sends the ID column itself
    /// (nocodb-sdk PgUi.getNewTableColumns). Later releases replace it with their own.
    public func createTable(base: String, title: String, fields: [[String: any Sendable]]) throws -> MetaTable {
        try call("create table \(title)", "POST", "/api/v2/meta/bases/\(escape(base))/tables",
                 body: ["title": title, "table_name": title, "columns": [FieldSpec.idColumn] + fields])
    }

    public func createField(table: String, field: [String: any Sendable]) throws {
        let _: Ignored = try call("create field \(field["title"] ?? "?")", "POST", "/api/v2/meta/tables/\(escape(table))/columns", body: field)
    }

    /// Renames a field and its column the way NocoDB's UI does: read the whole field, change
    /// its title and column name, send it all back. NocoDB treats the body as the whole
    /// column (services/columns.service.ts:417 `colBody = {...param.column}`): it ALTERs the
    /// column whose `id` the body carries and writes the body over its meta (:236-266), so a
    /// partial body renames nothing and fails; the UI sends `{...column}` with its id, type,
    /// options and meta (nc-gui/composables/useColumnCreateStore.ts:102-105, :353). The
    /// physical rename follows `column_name`, which NocoDB sanitizes unconditionally
    /// (:347-350); it is derived from the title as NocoDB derives it.
    public func renameField(id: String, title: String) throws {
        let path = "/api/v2/meta/columns/\(escape(id))"
        let read = try exchange("read field \(id)", "GET", path)
        guard var field = (try? JSONSerialization.jsonObject(with: read)) as? [String: Any], field["id"] as? String == id else {
            throw NocoDBError.invalidResponse(operation: "read field \(id)", detail: "not a field object with id \(id)")
        }
        field["title"] = title
        field["column_name"] = NocoDBNames.columnName(forTitle: title)
        let body = try JSONSerialization.data(withJSONObject: field, options: [.sortedKeys])
        _ = try exchange("rename field \(id)", "PATCH", path, body: body)
    }

    public func deleteField(id: String) throws {
        let _: Ignored = try call("delete field \(id)", "DELETE", "/api/v2/meta/columns/\(escape(id))")
    }

    /// `kind`: `MetaView.grid`, `.form` or `.kanban` (which needs `groupBy`, a SingleSelect field id).
    public func createView(table: String, title: String, kind: Int, groupBy: String? = nil) throws -> MetaView {
        let path = kind == MetaView.form ? "forms" : kind == MetaView.kanban ? "kanbans" : "grids"
        var body: [String: any Sendable] = ["title": title, "type": kind]
        if let groupBy { body["fk_grp_col_id"] = groupBy }
        return try call("create view \(title)", "POST", "/api/v2/meta/tables/\(escape(table))/\(path)", body: body)
    }

    public func createFilter(view: String, field: String, comparison: String, value: String? = nil) throws {
        var body: [String: any Sendable] = ["fk_column_id": field, "comparison_op": comparison, "logical_op": "and"]
        if let value { body["value"] = value }
        let _: Ignored = try call("create filter on view \(view)", "POST", "/api/v2/meta/views/\(escape(view))/filters", body: body)
    }

    public func hideAllFields(view: String) throws {
        let _: Ignored = try call("hide the fields of view \(view)", "POST", "/api/v2/meta/views/\(escape(view))/hide-all")
    }

    public func showField(view: String, viewColumn: String, show: Bool) throws {
        let _: Ignored = try call("show a field of view \(view)", "PATCH",
                                  "/api/v2/meta/views/\(escape(view))/columns/\(escape(viewColumn))", body: ["show": show])
    }

    /// Invites an e-mail to the base with a role. NocoDB answers an `invite_token` when it
    /// has no e-mail configured; it is a sign-up credential and is not returned.
    public func inviteUser(base: String, email: String, role: String) throws {
        let _: Ignored = try call("invite \(email)", "POST", "/api/v2/meta/bases/\(escape(base))/users",
                                  body: ["email": email, "roles": role])
    }

    public func updateUserRole(base: String, user: MetaBaseUser, role: String) throws {
        let _: Ignored = try call("change the role of \(user.email)", "PATCH",
                                  "/api/v2/meta/bases/\(escape(base))/users/\(escape(user.id))",
                                  body: ["email": user.email, "roles": role])
    }

    /// `rules`: view id → role → hidden. Only the roles given are changed.
    public func setVisibility(base: String, rules: [(view: String, disabled: [String: Bool])]) throws {
        let body: [[String: any Sendable]] = rules.map { ["id": $0.view, "disabled": $0.disabled] }
        let _: Ignored = try call("set view visibility of base \(base)", "POST",
                                  "/api/v2/meta/bases/\(escape(base))/visibility-rules", arrayBody: body)
    }

    /// Shares a view (idempotent in NocoDB: an existing uuid is kept); returns its uuid.
    public func shareView(view: String) throws -> MetaSharedView {
        try call("share view \(view)", "POST", "/api/v2/meta/views/\(escape(view))/share")
    }

    /// Sets or clears (nil) the shared view's password.
    public func setSharePassword(view: String, password: String?) throws {
        let _: Ignored = try call("set the password of shared view \(view)", "PATCH", "/api/v2/meta/views/\(escape(view))/share",
                                  body: ["password": password.map { $0 as any Sendable } ?? NSNull()], secrets: [password ?? ""])
    }

    // MARK: Transport

    private struct Ignored: Decodable {
        init(from decoder: any Decoder) throws {}
    }

    /// NocoDB's two error envelopes: `{msg}` (BadRequest, NotFound, Ajv errors) and
    /// `{error, message}` (NcBaseErrorv2); filters/global-exception/global-exception.filter.ts:172-209.
    private struct ErrorBody: Decodable {
        let msg: String?
        let message: String?
        let error: String?

        var text: String? {
            if let msg { return msg }
            if let message { return error.map { "\(message) (\($0))" } ?? message }
            return error
        }
    }

    /// Every item of a list, however NocoDB pages it: a list without `pageInfo` is whole; a
    /// page that brings no new item ends it (`GET /bases/` answers every base whatever `page`
    /// asks, with `isLastPage` false when there are more than DB_QUERY_LIMIT_MAX); so do
    /// `isLastPage`, an empty page and having `totalRows` items.
    private func pages<Item: Decodable & Sendable>(_ operation: String, _ path: String, id: (Item) -> String) throws -> [Item] {
        var items: [Item] = []
        var seen = Set<String>()
        for page in 1... {
            let p: Page<Item> = try call(operation, "GET", path, query: [("page", String(page)), ("pageSize", "100")])
            let fresh = p.list.filter { seen.insert(id($0)).inserted }
            items += fresh
            guard let info = p.pageInfo, !info.isLastPage, !fresh.isEmpty else { break }
            if let total = info.totalRows, Double(items.count) >= total { break }
        }
        return items
    }

    private func escape(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? segment
    }

    /// - Parameter secrets: values the request carries that NocoDB's error texts must not
    ///   carry on (the API token is always among them).
    private func call<T: Decodable>(_ operation: String, _ method: String, _ path: String,
                                    query: [(String, String)] = [], body: [String: any Sendable]? = nil,
                                    arrayBody: [[String: any Sendable]]? = nil, secrets: [String] = []) throws -> T {
        var data: Data?
        if let json: Any = body ?? arrayBody {
            data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
        }
        let answer = try exchange(operation, method, path, query: query, body: data, secrets: secrets)
        do {
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            return try decoder.decode(T.self, from: answer.isEmpty ? Data("null".utf8) : answer)
        } catch {
            throw NocoDBError.invalidResponse(operation: operation, detail: redact("\(error)".prefix(300).description, secrets))
        }
    }

    /// `text` with every secret (and the API token) replaced: NocoDB's catch-all answers an
    /// exception's own message (filters/global-exception/global-exception.filter.ts:218-222),
    /// and a database error's message can quote the statement with its values.
    private func redact(_ text: String, _ secrets: [String]) -> String {
        (secrets + [configuration.token]).filter { !$0.isEmpty }.reduce(text) { $0.replacingOccurrences(of: $1, with: "<redacted>") }
    }

    /// One call with retries; the body of a 2xx answer, or the error NocoDB's answer means.
    private func exchange(_ operation: String, _ method: String, _ path: String,
                          query: [(String, String)] = [], body: Data? = nil, secrets: [String] = []) throws -> Data {
        var parts = URLComponents(url: configuration.url, resolvingAgainstBaseURL: false)!
        parts.path = parts.path.trimmingSuffix("/") + path
        if !query.isEmpty { parts.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) } }
        guard let url = parts.url else { throw NocoDBError.invalidResponse(operation: operation, detail: "cannot form a URL") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.setValue(configuration.token, forHTTPHeaderField: "xc-token")
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        var delay = configuration.backoffBase
        var last = ""
        for attempt in 1...max(configuration.attempts, 1) {
            let (status, data, transportError) = send(request)
            if let status, (200..<300).contains(status) { return data }
            let message = redact((try? JSONDecoder().decode(ErrorBody.self, from: data))?.text ?? String(decoding: data.prefix(300), as: UTF8.self),
                                 secrets)
            switch status {
            case 401?, 403?:
                throw NocoDBError.unauthorized(server: configuration.displayURL)
            case 404?:
                throw NocoDBError.notFound("\(operation): \(message)")
            case let s? where s < 500:
                throw NocoDBError.rejected(operation: operation, status: s, message: message)
            default:
                last = status.map { "HTTP \($0) \(message)" } ?? transportError ?? "no answer"
            }
            guard attempt < configuration.attempts else { break }
            let jittered = delay * Double.random(in: 0.5...1.0)
            logger.warning("NocoDB request failed; retrying", metadata: [
                "nocodb.operation": "\(operation)", "nocodb.attempt": "\(attempt)", "error": "\(last)",
                "retry.in_ms": "\(jittered.components.seconds * 1000 + jittered.components.attoseconds / 1_000_000_000_000_000)",
            ])
            Thread.sleep(forTimeInterval: Double(jittered.components.seconds) + Double(jittered.components.attoseconds) / 1e18)
            delay = min(delay * 2, configuration.backoffMax)
        }
        throw NocoDBError.unavailable(operation: operation, attempts: configuration.attempts, last: last)
    }

    /// One HTTP exchange: status (nil when there was no answer), body, transport error.
    private func send(_ request: URLRequest) -> (Int?, Data, String?) {
        let done = DispatchSemaphore(value: 0)
        let box = ExchangeBox()
        session.dataTask(with: request) { data, response, error in
            box.set((response as? HTTPURLResponse)?.statusCode, data ?? Data(),
                    error.map { ($0 as? URLError)?.code == .timedOut ? "timed out" : "connection failed" })
            done.signal()
        }.resume()
        done.wait()
        return box.value
    }

    private final class ExchangeBox: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: (Int?, Data, String?) = (nil, Data(), nil)
        func set(_ status: Int?, _ data: Data, _ error: String?) { lock.withLock { stored = (status, data, error) } }
        var value: (Int?, Data, String?) { lock.withLock { stored } }
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
