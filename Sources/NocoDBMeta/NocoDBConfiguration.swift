import Foundation

/// Where NocoDB's meta API is and how to talk to it (`NOCODB_URL`, `NOCODB_TOKEN`,
/// `NOCODB_BASE`). The bridge reads and changes metadata only through it, never rows.
public struct NocoDBConfiguration: Sendable {
    /// NocoDB's address, e.g. `https://nocodb.example.com` (no path).
    public var url: URL
    /// An API token (Team & Settings → API Tokens), sent as `xc-token`.
    public var token: String
    /// The base: its id (`p…`, in the base's URL) or its title.
    public var base: String
    /// Per request; a request that takes longer counts as a failed attempt.
    public var timeout: Duration = .seconds(10)
    /// Attempts for a request answered with 5xx or not at all, with capped exponential backoff.
    public var attempts = 4
    public var backoffBase: Duration = .milliseconds(200)
    public var backoffMax: Duration = .seconds(3)

    public init(url: URL, token: String, base: String) {
        self.url = url
        self.token = token
        self.base = base
    }

    /// The address without user info, for messages.
    public var displayURL: String {
        guard var parts = URLComponents(url: url, resolvingAgainstBaseURL: false) else { return "NocoDB" }
        parts.user = nil
        parts.password = nil
        return parts.string ?? "NocoDB"
    }
}
