import Foundation
import HTTPTypes
import Hummingbird

/// Who may read and act in the console and its API, and the headers every response carries.
///
/// No ambient credential exists: the page is a static shell, and its script sends the token
/// it was given (kept in the tab's `sessionStorage`) as `Authorization: Bearer …` on every
/// API call. Another site can make a browser send requests here, but not with that header
/// (it cannot read the token, and a cross-origin request carrying it needs a CORS preflight
/// this server never grants), so nothing is forgeable by CSRF. Actions are POSTs that also
/// refuse a foreign `Origin`/`Sec-Fetch-Site` and anything but a JSON body.
struct ConsoleAccess: Sendable {
    /// `STATUS_TOKEN`.
    let token: String?
    /// The endpoint listens on a loopback address only.
    let loopback: Bool

    enum Refusal: Error {
        case unauthorized(String)
        case forbidden(String)
        case unsupportedMediaType(String)

        var status: HTTPResponse.Status {
            switch self {
            case .unauthorized: .unauthorized
            case .forbidden: .forbidden
            case .unsupportedMediaType: .unsupportedMediaType
            }
        }

        var message: String {
            switch self {
            case .unauthorized(let m), .forbidden(let m), .unsupportedMediaType(let m): m
            }
        }
    }

    /// What the page is told before it has a token: whether to ask for one, and whether the
    /// actions are available at all.
    var mode: (tokenRequired: Bool, readable: Bool, actions: Bool) {
        (token != nil, token != nil || loopback, token != nil)
    }

    /// Reading the API: the token when one is set; without one, only over a loopback
    /// listener and with a loopback `Host` (a DNS-rebinding page on another name is refused).
    func checkRead(_ request: Request) throws(Refusal) {
        if let token {
            guard Self.bearer(request, matches: token) else { throw .unauthorized("a valid bearer token is required") }
            return
        }
        guard loopback else {
            throw .forbidden("the console needs STATUS_TOKEN when STATUS_ADDR is not a loopback address")
        }
        guard Self.isLoopbackHost(Self.host(of: request)) else {
            throw .forbidden("without STATUS_TOKEN the console answers only to a loopback host name")
        }
    }

    /// Retry, drop and resync: always the token, a same-origin request, a JSON body.
    func checkAction(_ request: Request) throws(Refusal) {
        guard let token else { throw .forbidden("actions are disabled: set STATUS_TOKEN to retry, drop or resync from the console") }
        guard Self.bearer(request, matches: token) else { throw .unauthorized("a valid bearer token is required") }
        if let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!], !["same-origin", "none"].contains(site) {
            throw .forbidden("cross-site request refused")
        }
        if let origin = request.headers[.origin] {
            let host = Self.host(of: request)
            guard origin == "http://" + host || origin == "https://" + host else { throw .forbidden("request from another origin refused") }
        }
        guard let type = request.headers[.contentType], type.lowercased().hasPrefix("application/json") else {
            throw .unsupportedMediaType("actions take a JSON body (Content-Type: application/json)")
        }
    }

    static func host(of request: Request) -> String {
        request.head.authority ?? ""
    }

    static func bearer(_ request: Request, matches token: String) -> Bool {
        let given = request.headers[.authorization] ?? ""
        return StatusServer.constantTimeEqual(Array(given.utf8), Array(("Bearer " + token).utf8))
    }

    /// `127.0.0.1:8787`, `localhost:8787`, `[::1]:8787` (port optional).
    static func isLoopbackHost(_ authority: String) -> Bool {
        var name = authority.lowercased()
        if name.hasPrefix("[") {
            guard let end = name.firstIndex(of: "]") else { return false }
            name = String(name[name.index(after: name.startIndex)..<end])
        } else if let colon = name.lastIndex(of: ":") {
            name = String(name[..<colon])
        }
        return isLoopbackAddress(name)
    }

    static func isLoopbackAddress(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// On every response, API and page alike. The policy allows this origin's script and
    /// style files and nothing else: no inline script or style, no other origin, no forms,
    /// no framing; with every value also rendered as text, injected markup has nothing to run.
    static let headers: [(HTTPField.Name, String)] = [
        (.contentSecurityPolicy, "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
        (.xContentTypeOptions, "nosniff"),
        (HTTPField.Name("Referrer-Policy")!, "no-referrer"),
        (HTTPField.Name("X-Frame-Options")!, "DENY"),
        (HTTPField.Name("Cross-Origin-Opener-Policy")!, "same-origin"),
        (.crossOriginResourcePolicy, "same-origin"),
        (.cacheControl, "no-store"),
    ]
}

/// Wraps the router so every response, including errors and 404s, carries the security headers.
struct SecureResponder<Inner: HTTPResponder>: HTTPResponder where Inner.Context == BasicRequestContext {
    let inner: Inner

    @Sendable func respond(to request: Request, context: BasicRequestContext) async throws -> Response {
        var response: Response
        do {
            response = try await inner.respond(to: request, context: context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        } catch {
            context.logger.error("status endpoint request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            response = Response(status: .internalServerError, headers: [.contentType: "application/json"],
                                body: .init(byteBuffer: ByteBuffer(string: "{\"error\":\"internal error\"}\n")))
        }
        for (name, value) in ConsoleAccess.headers where response.headers[name] == nil {
            response.headers[name] = value
        }
        return response
    }
}
