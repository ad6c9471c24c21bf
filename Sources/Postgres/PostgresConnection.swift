import CLibPQ
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A result copied out of libpq at once, so no `PGresult` outlives the call that made it.
public struct PostgresRows: Sendable {
    public let columns: [String]
    public let rows: [[String?]]
    /// Rows inserted/updated/deleted, from `PQcmdTuples`.
    public let affected: Int

    public subscript(row: Int, column: String) -> String? {
        guard let c = columns.firstIndex(of: column) else { return nil }
        return rows[row][c]
    }

    /// One row whose values are found by column name, so a query and its reader agree on
    /// names rather than on offsets.
    public struct Row: Sendable {
        public let values: [String?]
        let index: [String: Int]

        public subscript(_ column: String) -> String? {
            guard let i = index[column] else { return nil }
            return values[i]
        }
    }

    /// The rows with their values by column name.
    public var named: [Row] {
        let index = Dictionary(columns.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        return rows.map { Row(values: $0, index: index) }
    }
}

public struct PostgresNotification: Sendable, Equatable {
    public let channel: String
    public let payload: String
}

/// One libpq connection, owned by exactly one thread at a time (it is deliberately not
/// `Sendable`): the bridge creates each connection on the dedicated thread that uses it, so
/// blocking calls never occupy Swift's cooperative pool.
public final class PostgresConnection {
    private let handle: OpaquePointer
    /// SQL text → name of the statement prepared for it on this connection (`query(cached:)`).
    private var prepared: [String: String] = [:]

    /// Connects with a libpq URL or key/value string. Client settings the mapping relies on
    /// (ISO dates, UTC) are fixed per session.
    public init(url: String, applicationName: String = "nocobridge") throws(PostgresError) {
        let keys = ["dbname", "application_name", "options"]
        let values = [url, applicationName, "-c DateStyle=ISO -c TimeZone=UTC -c extra_float_digits=3 -c client_min_messages=warning"]
        let conn: OpaquePointer? = withCStringArray(keys) { k in
            withCStringArray(values) { v in PQconnectdbParams(k, v, 1) }
        }
        guard let conn else {
            throw PostgresError(kind: .connect, message: "out of memory")
        }
        guard PQstatus(conn) == CONNECTION_OK else {
            let message = PostgresError.connectionMessage(conn)
            PQfinish(conn)
            throw PostgresError(kind: .connect, message: Self.scrub(message))
        }
        self.handle = conn
    }

    deinit {
        PQfinish(handle)
    }

    /// Why libpq cannot parse `url`, or nil: checked before connecting, so a typo is reported
    /// as a configuration mistake rather than an unreachable server.
    public static func urlProblem(_ url: String) -> String? {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(url, &errorMessage) else {
            let message = errorMessage.map { String(cString: $0) } ?? "cannot be parsed"
            if let errorMessage { PQfreemem(errorMessage) }
            return scrub(message.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        defer { PQconninfoFree(options) }
        // libpq checks the port only when connecting; a typo there is still a typo.
        var option = options
        while let keyword = option.pointee.keyword {
            if String(cString: keyword) == "port", let value = option.pointee.val {
                let ports = String(cString: value).split(separator: ",", omittingEmptySubsequences: false)
                if ports.contains(where: { !$0.isEmpty && (UInt16($0) == nil) }) {
                    return "invalid port \"\(String(cString: value))\""
                }
            }
            option += 1
        }
        return nil
    }

    public var isConnected: Bool { PQstatus(handle) == CONNECTION_OK }

    /// Server process id, for tests and diagnostics (`pg_terminate_backend`).
    public var backendPID: Int32 { PQbackendPID(handle) }

    /// Runs one statement with text parameters ($1, $2, …); nil is NULL.
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = []) throws(PostgresError) -> PostgresRows {
        let result: OpaquePointer?
        if parameters.isEmpty {
            result = PQexecParams(handle, sql, 0, nil, nil, nil, nil, 0)
        } else {
            result = withOptionalCStrings(parameters) { pointers in
                PQexecParams(handle, sql, Int32(parameters.count), nil, pointers, nil, nil, 0)
            }
        }
        return try rows(of: result)
    }

    /// Like `query`, but `sql` is parsed and planned once per connection: for the statements
    /// the pipelines run on every batch. Only for statements whose result columns are named
    /// (a cached `SELECT *` fails when the table's columns change).
    @discardableResult
    public func query(cached sql: String, _ parameters: [String?]) throws(PostgresError) -> PostgresRows {
        let name: String
        if let known = prepared[sql] {
            name = known
        } else {
            name = "nb_cached_\(prepared.count)"
            _ = try rows(of: PQprepare(handle, name, sql, 0, nil))
            prepared[sql] = name
        }
        return try rows(of: withOptionalCStrings(parameters) { pointers in
            PQexecPrepared(handle, name, Int32(parameters.count), pointers, nil, nil, 0)
        })
    }

    /// Copies a result out and frees it; a failed one becomes the error.
    private func rows(of result: OpaquePointer?) throws(PostgresError) -> PostgresRows {
        defer { PQclear(result) }
        guard let result else { throw PostgresError.from(result: nil, connection: handle) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            throw PostgresError.from(result: result, connection: handle)
        }
        return Self.copyRows(result)
    }

    /// Runs several statements separated by `;` (no parameters), e.g. an install script.
    public func execute(script: String) throws(PostgresError) {
        let result = PQexec(handle, script)
        defer { PQclear(result) }
        guard let result else { throw PostgresError.from(result: nil, connection: handle) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            throw PostgresError.from(result: result, connection: handle)
        }
    }

    /// Runs `body` in a transaction; rolls back if it throws.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try query("BEGIN")
        do {
            let value = try body()
            try query("COMMIT")
            return value
        } catch {
            if isConnected { _ = try? query("ROLLBACK") }
            throw error
        }
    }

    public func listen(_ channel: String) throws(PostgresError) {
        try query("LISTEN " + Self.quoteIdentifier(channel))
    }

    /// Notifications already received, without waiting.
    public func pendingNotifications() throws(PostgresError) -> [PostgresNotification] {
        guard PQconsumeInput(handle) == 1 else {
            throw PostgresError(kind: .connectionLost, message: PostgresError.connectionMessage(handle))
        }
        var out: [PostgresNotification] = []
        while let n = PQnotifies(handle) {
            let note = n.pointee
            out.append(PostgresNotification(channel: String(cString: note.relname), payload: String(cString: note.extra)))
            PQfreemem(n)
        }
        return out
    }

    /// Waits until the server sends a notification, `wakeFD` becomes readable, or the
    /// timeout passes, by polling the connection's socket (no sleeping, no table polling).
    public func waitForNotifications(timeoutMilliseconds: Int32, wakeFD: Int32? = nil) throws(PostgresError) -> [PostgresNotification] {
        let first = try pendingNotifications()
        if !first.isEmpty { return first }
        let socket = PQsocket(handle)
        guard socket >= 0 else { throw PostgresError(kind: .connectionLost, message: "no socket") }
        var fds = [pollfd(fd: socket, events: Int16(POLLIN), revents: 0)]
        if let wakeFD { fds.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)) }
        let rc = poll(&fds, nfds_t(fds.count), timeoutMilliseconds)
        if rc < 0, errno != EINTR {
            throw PostgresError(kind: .connectionLost, message: "poll failed")
        }
        if fds[0].revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
            throw PostgresError(kind: .connectionLost, message: "server closed the connection")
        }
        return try pendingNotifications()
    }

    /// The same server URL for another database (and, optionally, another user):
    /// `postgresql://user@host:port/db?params`, or a key=value string.
    public static func url(_ base: String, database: String, user: String? = nil) -> String {
        guard let schemeEnd = base.range(of: "://") else {
            return base + " dbname=\(database)" + (user.map { " user=\($0)" } ?? "")
        }
        var rest = base[schemeEnd.upperBound...]
        if let user {
            if let at = rest.firstIndex(of: "@") { rest = rest[rest.index(after: at)...] }
            rest = Substring(user + "@") + rest
        }
        let hostEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let query = rest[hostEnd...].firstIndex(of: "?").map { String(rest[$0...]) } ?? ""
        return String(base[..<schemeEnd.upperBound]) + rest[..<hostEnd] + "/" + database + query
    }

    /// Quotes an identifier the way PostgreSQL does (`"a""b"`).
    public static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingAll("\"", with: "\"\"") + "\""
    }

    /// A text array literal for a `$n::text[]` or `$n::bigint[]` parameter.
    public static func arrayLiteral(_ items: [String?]) -> String {
        var out = "{"
        for (i, item) in items.enumerated() {
            if i > 0 { out += "," }
            guard let item else { out += "NULL"; continue }
            out += "\""
            for ch in item.unicodeScalars {
                if ch == "\"" || ch == "\\" { out += "\\" }
                out.unicodeScalars.append(ch)
            }
            out += "\""
        }
        return out + "}"
    }

    /// `bytea` hex input text.
    public static func byteaLiteral(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = [UInt8(ascii: "\\"), UInt8(ascii: "x")]
        out.reserveCapacity(2 + bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes `bytea` hex output text (`\x…`).
    public static func bytes(fromBytea text: String) -> [UInt8]? {
        var u = Array(text.utf8)
        guard u.count >= 2, u[0] == UInt8(ascii: "\\"), u[1] == UInt8(ascii: "x"), u.count % 2 == 0 else { return nil }
        u.removeFirst(2)
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let h = nibble(u[i]), let l = nibble(u[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }

    /// Removes a password from a libpq message that echoes connection parameters.
    static func scrub(_ message: String) -> String {
        var out = message
        if let range = out.range(of: "password=") {
            out = String(out[..<range.upperBound]) + "***"
        }
        return out
    }

    private static func copyRows(_ result: OpaquePointer) -> PostgresRows {
        let nrows = Int(PQntuples(result))
        let ncols = Int(PQnfields(result))
        var columns: [String] = []
        columns.reserveCapacity(ncols)
        for c in 0..<ncols { columns.append(String(cString: PQfname(result, Int32(c)))) }
        var rows: [[String?]] = []
        rows.reserveCapacity(nrows)
        for r in 0..<nrows {
            var row: [String?] = []
            row.reserveCapacity(ncols)
            for c in 0..<ncols {
                if PQgetisnull(result, Int32(r), Int32(c)) == 1 {
                    row.append(nil)
                } else {
                    let len = Int(PQgetlength(result, Int32(r), Int32(c)))
                    let ptr = PQgetvalue(result, Int32(r), Int32(c))!
                    row.append(ptr.withMemoryRebound(to: UInt8.self, capacity: len) {
                        String(decoding: UnsafeBufferPointer(start: $0, count: len), as: UTF8.self)
                    })
                }
            }
            rows.append(row)
        }
        let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
        return PostgresRows(columns: columns, rows: rows, affected: affected)
    }
}

private func nibble(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
    default: nil
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        split(separator: Character(target), omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let duplicated = strings.map { strdup($0) }
    defer { duplicated.forEach { free($0) } }
    var pointers: [UnsafePointer<CChar>?] = duplicated.map { UnsafePointer($0) }
    pointers.append(nil)
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

private func withOptionalCStrings<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let duplicated: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } ?? nil }
    defer { duplicated.forEach { free($0) } }
    let pointers: [UnsafePointer<CChar>?] = duplicated.map { $0.map { UnsafePointer($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
