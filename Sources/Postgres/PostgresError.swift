import CLibPQ

/// A libpq failure. `description` carries the server's primary message and SQLSTATE, never
/// the DETAIL (which can quote row values) nor the connection string (which can hold a password).
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case connect
        case connectionLost
        case query
        case copy
        case timedOut
    }

    public let kind: Kind
    public let sqlState: String?
    public let message: String

    public init(kind: Kind, sqlState: String? = nil, message: String) {
        self.kind = kind
        self.sqlState = sqlState
        self.message = message
    }

    /// True when the server refused the values themselves (class 22 data exception, 23
    /// integrity constraint, 54 program limit such as a row too large): retrying the same
    /// statement can never succeed, so the caller isolates the record instead.
    public var isDataError: Bool {
        guard kind == .query, let state = sqlState else { return false }
        return state.hasPrefix("22") || state.hasPrefix("23") || state.hasPrefix("54")
    }

    /// True when retrying on a new connection may succeed (server restart, network cut).
    public var isConnectionProblem: Bool {
        switch kind {
        case .connect, .connectionLost, .timedOut: return true
        case .query, .copy:
            guard let state = sqlState else { return false }
            // Class 08: connection exception; 57P01-57P03: admin shutdown / crash / cannot connect now.
            return state.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(state)
        }
    }

    public var description: String {
        let what: String
        switch kind {
        case .connect: what = "cannot connect to PostgreSQL"
        case .connectionLost: what = "lost the PostgreSQL connection"
        case .query: what = "PostgreSQL error"
        case .copy: what = "PostgreSQL COPY error"
        case .timedOut: what = "PostgreSQL timed out"
        }
        if let sqlState { return "\(what) [\(sqlState)]: \(message)" }
        return "\(what): \(message)"
    }

    /// The one place a libpq result status becomes a Swift error.
    static func from(result: OpaquePointer?, connection: OpaquePointer?) -> PostgresError {
        guard let result else {
            return PostgresError(kind: .connectionLost, message: connectionMessage(connection))
        }
        let status = PQresultStatus(result)
        let state = field(result, Int32(UInt8(ascii: "C")))
        let primary = field(result, Int32(UInt8(ascii: "M"))) ?? connectionMessage(connection)
        switch status {
        case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR:
            if state == nil, let connection, PQstatus(connection) != CONNECTION_OK {
                return PostgresError(kind: .connectionLost, message: primary)
            }
            return PostgresError(kind: .query, sqlState: state, message: primary)
        case PGRES_BAD_RESPONSE:
            return PostgresError(kind: .connectionLost, sqlState: state, message: "bad response from server")
        case PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH:
            return PostgresError(kind: .copy, sqlState: state, message: "unexpected COPY state")
        default:
            return PostgresError(kind: .query, sqlState: state, message: primary)
        }
    }

    static func connectionMessage(_ connection: OpaquePointer?) -> String {
        guard let connection, let cString = PQerrorMessage(connection) else { return "no connection" }
        let text = String(cString: cString).trimmingCharacters()
        return text.isEmpty ? "unknown error" : text
    }

    private static func field(_ result: OpaquePointer, _ code: Int32) -> String? {
        guard let c = PQresultErrorField(result, code) else { return nil }
        return String(cString: c)
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let l = s.last, l.isWhitespace { s.removeLast() }
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        return String(s)
    }
}
