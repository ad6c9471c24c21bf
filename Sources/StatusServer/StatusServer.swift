import Bridge
import BuildInfo
import Foundation
import Hummingbird
import ServiceLifecycle
import Logging

/// Settings of the status endpoint.
public struct StatusServerConfiguration: Sendable {
    /// `STATUS_ADDR`, `host:port`; localhost by default so nothing is exposed by accident.
    public var host = "127.0.0.1"
    public var port = 8787
    /// `STATUS_TOKEN`: when set, every endpoint except `/healthz` and the console's static
    /// files requires `Authorization: Bearer …`.
    public var token: String?
    /// How often the console's lag and throughput charts are sampled (`STATUS_SAMPLE_SECONDS`);
    /// an hour of samples is kept at the default.
    public var sampleInterval: Duration = .seconds(10)

    public init() {}

    public init(address: String, token: String?) throws {
        let parts = address.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = Int(parts[1]), (0...65535).contains(port), !parts[0].isEmpty else {
            throw ConfigurationError(setting: "STATUS_ADDR", message: "\"\(address)\" is not host:port")
        }
        host = String(parts[0])
        self.port = port
        self.token = token?.isEmpty == true ? nil : token
    }
}

/// Builds the hummingbird application serving `/status` (alias `/api/sync/status`),
/// `/metrics`, `/healthz`, `/readyz` and the operator console (`/`, `/api/…`, see `Console`);
/// it runs as a service in the bridge's `ServiceGroup`.
public enum StatusServer {
    public static func application(configuration: StatusServerConfiguration, bridge: BridgeService,
                                   metrics: MetricsExport, logger: Logger) -> some ApplicationProtocol {
        let router = Router()
        let token = configuration.token
        let health: @Sendable () async -> BridgeHealth = {
            var h = await withCheckedContinuation { continuation in
                // Pings block in libpq/libmongoc: keep them off the cooperative pool.
                BlockingExecutor.start(name: "nocobridge-status") { continuation.resume(returning: bridge.health()) }
            }
            h.version = BuildInfo.description
            return h
        }
        let console = Console(
            bridge: bridge, database: ConsoleDatabase(url: bridge.configuration.postgresURL),
            series: LiveSeries(capacity: max(Int(3600 / max(configuration.sampleInterval / .seconds(1), 0.1)), 1)),
            resync: ConsoleResync(configuration: bridge.configuration, logger: logger),
            access: ConsoleAccess(token: token, loopback: ConsoleAccess.isLoopbackAddress(configuration.host)),
            health: health, sampleInterval: configuration.sampleInterval, logger: logger)
        @Sendable func authorized(_ request: Request) -> Bool {
            guard let token else { return true }
            return ConsoleAccess.bearer(request, matches: token)
        }
        @Sendable func respond(_ status: HTTPResponse.Status, _ body: String, _ type: String) -> Response {
            Response(status: status, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        router.get("/healthz") { _, _ in respond(.ok, "{\"status\":\"alive\"}\n", "application/json") }
        for path in ["/status", "/api/sync/status"] {
            router.get(RouterPath(path)) { request, _ -> Response in
                guard authorized(request) else { return respond(.unauthorized, "{\"error\":\"unauthorized\"}\n", "application/json") }
                let h = await health()
                return respond(h.status == .ok ? .ok : .serviceUnavailable, h.json() + "\n", "application/json")
            }
        }
        router.get("/readyz") { request, _ -> Response in
            guard authorized(request) else { return respond(.unauthorized, "{\"error\":\"unauthorized\"}\n", "application/json") }
            let h = await health()
            return respond(h.ready ? .ok : .serviceUnavailable, "{\"ready\":\(h.ready)}\n", "application/json")
        }
        router.get("/metrics") { request, _ -> Response in
            guard authorized(request) else { return respond(.unauthorized, "unauthorized\n", "text/plain") }
            async let h = health()
            let figures = await console.inspection()
            return respond(.ok, metrics.text(after: await h, inspection: figures, leader: console.role(figures) == "leader",
                                                leasesHeld: console.bridge.leases.units.count),
                           "text/plain; version=0.0.4")
        }
        console.addRoutes(to: router)
        return Application(responder: SecureResponder(inner: router.buildResponder()),
                           configuration: .init(address: .hostname(configuration.host, port: configuration.port)),
                           services: [ConsoleService(console: console)], logger: logger)
    }

    /// Compares without an early exit, so response time does not reveal a token's prefix.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return difference == 0
    }
}

/// Runs the status endpoint without letting it stop the bridge: if the address cannot be
/// bound (a second instance on the same host, a port in use), it logs one error and the
/// bridge keeps syncing.
public struct NonFatalService<Inner: Service>: Service {
    let inner: Inner
    let name: String
    let logger: Logger

    public init(_ inner: Inner, name: String, logger: Logger) {
        self.inner = inner
        self.name = name
        self.logger = logger
    }

    public func run() async throws {
        do {
            try await inner.run()
        } catch {
            logger.error("\(name) stopped; the bridge keeps running without it", metadata: ["error": "\(error)"])
            try? await gracefulShutdown()
        }
    }
}
