/// A failed meta API call, described without the token (which travels only in a header).
public enum NocoDBError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 401/403: the token is missing, wrong or expired.
    case unauthorized(server: String)
    /// 404, or a base/table/field that is not there.
    case notFound(String)
    /// 400/422: NocoDB refused the request; its message says why.
    case rejected(operation: String, status: Int, message: String)
    /// No answer, or 5xx, after every attempt.
    case unavailable(operation: String, attempts: Int, last: String)
    /// An answer that is not what the spec describes.
    case invalidResponse(operation: String, detail: String)

    public var description: String {
        switch self {
        case .unauthorized(let server):
            "NocoDB at \(server) refused the API token (401): set NOCODB_TOKEN to a token from Team & Settings → API Tokens"
        case .notFound(let what):
            "NocoDB: \(what) not found"
        case .rejected(let operation, let status, let message):
            "NocoDB refused \(operation) (\(status)): \(message)"
        case .unavailable(let operation, let attempts, let last):
            "NocoDB did not answer \(operation) after \(attempts) attempts (last: \(last))"
        case .invalidResponse(let operation, let detail):
            "NocoDB's answer to \(operation) is not what its API describes: \(detail)"
        }
    }
}
