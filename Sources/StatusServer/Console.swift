import Bridge
import BuildInfo
import Foundation
import Hummingbird
import Logging
import Postgres
import ServiceLifecycle
import SyncCore

/// The operator console at `/` and its JSON API under `/api/`: overview with an hour of lag
/// and throughput, conflicts side by side, dead letters with retry and drop, record history,
/// resync progress. The page is static (HTML, JS and CSS embedded in the binary: nothing is
/// built or fetched from anywhere), and every value it shows comes from this API as JSON.
struct Console: Sendable {
    let bridge: BridgeService
    let database: ConsoleDatabase
    let series: LiveSeries
    let resync: ConsoleResync
    let access: ConsoleAccess
    let health: @Sendable () async -> BridgeHealth
    let sampleInterval: Duration
    let logger: Logger

    var configuration: BridgeConfiguration { bridge.configuration }

    static let maxLimit = 500

    // MARK: Routes

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/") { _, _ in Self.asset(ConsoleAssets.indexHTML, "text/html; charset=utf-8") }
        router.get("/assets/console.js") { _, _ in Self.asset(ConsoleAssets.consoleJS, "text/javascript; charset=utf-8") }
        router.get("/assets/console.css") { _, _ in Self.asset(ConsoleAssets.consoleCSS, "text/css; charset=utf-8") }
        router.get("/assets/favicon.svg") { _, _ in Self.asset(ConsoleAssets.faviconSVG, "image/svg+xml") }
        router.get("/favicon.ico") { _, _ in Response(status: .noContent) }

        router.get("/api/mode") { _, _ in
            let mode = access.mode
            return Self.json(.ok, ["tokenRequired": .bool(mode.tokenRequired), "readable": .bool(mode.readable),
                                   "actions": .bool(mode.actions), "version": .string(BuildInfo.description)])
        }
        read("/api/overview") { request in try await overview() }
        read("/api/conflicts") { request in try await conflicts(request) }
        read("/api/dead-letters") { request in try await deadLetters(request) }
        read("/api/history") { request in try await history(request) }
        read("/api/resync") { _ in try await resyncState() }
        act("/api/dead-letters/retry") { body in try await retry(body) }
        act("/api/dead-letters/drop") { body in try await drop(body) }
        act("/api/resync") { _ in try await startResync() }

        func read(_ path: String, _ handler: @escaping @Sendable (Request) async throws -> Response) {
            router.get(RouterPath(path)) { request, _ -> Response in
                do {
                    try access.checkRead(request)
                    return try await handler(request)
                } catch let refusal as ConsoleAccess.Refusal {
                    return Self.error(refusal.status, refusal.message)
                } catch let bad as BadRequest {
                    return Self.error(.badRequest, bad.message)
                } catch {
                    logger.warning("console request failed", metadata: ["path": "\(path)", "error": "\(error)"])
                    return Self.error(.serviceUnavailable, "\(error)")
                }
            }
        }
        func act(_ path: String, _ handler: @escaping @Sendable (Value) async throws -> Response) {
            router.post(RouterPath(path)) { request, _ -> Response in
                do {
                    try access.checkAction(request)
                    var request = request
                    let bytes = try await request.collectBody(upTo: 64 * 1024)
                    let text = String(buffer: bytes)
                    let body: Value
                    do { body = text.isEmpty ? .document([:]) : try JSON.parse(text) } catch { throw BadRequest("the body is not JSON") }
                    return try await handler(body)
                } catch let refusal as ConsoleAccess.Refusal {
                    return Self.error(refusal.status, refusal.message)
                } catch let bad as BadRequest {
                    return Self.error(.badRequest, bad.message)
                } catch {
                    logger.warning("console action failed", metadata: ["path": "\(path)", "error": "\(error)"])
                    return Self.error(.serviceUnavailable, "\(error)")
                }
            }
        }
    }

    struct BadRequest: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    // MARK: Reads

    /// The database figures, or nil when PostgreSQL does not answer (the page then shows
    /// what the pipelines know).
    func inspection() async -> Inspection? {
        let configuration = configuration
        return try? await database.run { c in try Inspection.read(configuration: configuration, on: c) }
    }

    /// This instance's part: `leader` while it holds at least one lease (its pipelines for
    /// those tables run); otherwise `standby` when other instances hold them all, `starting`
    /// when nobody holds any yet.
    func role(_ inspection: Inspection?) -> String {
        if !bridge.leases.units.isEmpty { return "leader" }
        return inspection?.anyLeaseHeld == true ? "standby" : "starting"
    }

    func overview() async throws -> Response {
        async let healthResult = health()
        let figures = await inspection()
        let h = await healthResult
        let points = series.points
        var tables: [Value] = []
        let latest = points.last?.samples ?? [:]
        for (name, direction) in h.directions.sorted(by: { $0.key < $1.key }) {
            for mapping in configuration.tables {
                let t = direction.tables[mapping.qualifiedName]
                let sample = latest[LiveSeries.key(direction: name, table: mapping.qualifiedName)]
                tables.append(.document([
                    "direction": .string(name), "table": .string(mapping.qualifiedName), "collection": .string(mapping.collection),
                    "running": .bool(direction.running), "lastError": direction.lastError.map(Value.string) ?? .null,
                    "applied": .int64(Int64(t?.applied ?? 0)), "writes": .int64(Int64(t?.writes ?? 0)),
                    "conflicts": .int64(Int64(t?.conflicts ?? 0)), "deadLettersSent": .int64(Int64(t?.deadLetters ?? 0)),
                    "lagMs": t?.lagMilliseconds.map(Value.int64) ?? .null,
                    "lastAppliedAt": t?.lastAppliedAt.map(Value.string) ?? .null,
                    "backlog": t?.backlog.map { .int64(Int64($0)) } ?? .null,
                    "throughput": sample.map { .double($0.throughput) } ?? .null,
                    "deadLettersWaiting": figures?.deadLetters[mapping.qualifiedName].map { .int64(Int64($0)) } ?? .null,
                    "conflictsLastDay": figures?.conflictsLastDay[mapping.qualifiedName].map { .int64(Int64($0)) } ?? .null,
                    "heldBy": figures?.holder(of: mapping.qualifiedName).map(Value.string) ?? .null,
                ]))
            }
        }
        let keys = Array(Set(points.flatMap { $0.samples.keys })).sorted()
        func line(_ value: @escaping (LiveSeries.Sample) -> Double) -> Value {
            .document(Document(keys.map { key in (key, .array(points.map { p in p.samples[key].map { .double(value($0)) } ?? .null })) }))
        }
        let intervalSeconds = Double(sampleInterval.components.seconds) + Double(sampleInterval.components.attoseconds) / 1e18
        let body: Document = [
            "version": .string(BuildInfo.description),
            "status": .string(h.status.rawValue), "postgres": .bool(h.postgres), "mongo": .bool(h.mongo), "checkedAt": .string(h.checkedAt),
            "role": .string(role(figures)),
            "leases": .int64(Int64(bridge.leases.units.count)),
            "instances": .array((figures?.instances ?? []).map { i in
                .document(["id": .string(i.id), "host": .string(i.host), "pid": .int64(Int64(i.pid)),
                           "heartbeatAgeMs": .int64(i.heartbeatAgeMs),
                           "units": .array((figures?.unitsByInstance[i.id] ?? []).map(Value.string))])
            }),
            "instance": .string(configuration.instanceID),
            "capture": .string(configuration.capture.rawValue),
            "slot": h.logicalSlot.map { .document(["retainedWalBytes": .int64($0.retainedWalBytes), "walStatus": .string($0.walStatus)]) } ?? .null,
            "resyncRunning": .bool(figures?.resyncRunning ?? false),
            "historyDays": .int64(Int64(configuration.historyDays)),
            "tables": .array(tables),
            "series": .document([
                "intervalSeconds": .double(intervalSeconds),
                "times": .array(points.map { .double($0.time) }),
                "throughput": line(\.throughput),
                "lag": line(\.lag),
            ]),
        ]
        return Self.json(.ok, body)
    }

    /// `table` names a configured table by name, `schema.table` or collection.
    func mapping(_ request: Request) throws -> TableMapping? {
        guard let name = request.uri.queryParameters.get("table"), !name.isEmpty else { return nil }
        guard let m = configuration.tables.first(where: { $0.table == name || $0.qualifiedName == name || $0.collection == name }) else {
            throw BadRequest("no synced table is named \"\(name)\"")
        }
        return m
    }

    func limit(_ request: Request, default value: Int = 100) -> Int {
        min(max(request.uri.queryParameters.get("limit", as: Int.self) ?? value, 1), Self.maxLimit)
    }

    static func nonEmpty(_ s: String?) -> String? { s.flatMap { $0.isEmpty ? nil : $0 } }

    func table(ofCollection collection: String) -> String {
        configuration.tables.first { $0.collection == collection }?.qualifiedName ?? collection
    }

    func conflicts(_ request: Request) async throws -> Response {
        let collection = try mapping(request)?.collection
        let key = Self.nonEmpty(request.uri.queryParameters.get("key"))
        let prefix = Self.nonEmpty(request.uri.queryParameters.get("prefix"))
        let before = request.uri.queryParameters.get("before", as: Int64.self)
        let limit = limit(request)
        let rows = try await database.run { c in
            try ConflictLog.rows(collection: collection, key: key, keyPrefix: prefix, before: before, limit: limit, on: c)
        }
        return Self.json(.ok, ["conflicts": .array(rows.map(conflictJSON))])
    }

    func conflictJSON(_ r: ConflictLog.Row) -> Value { r.json(table: table(ofCollection: r.collection)) }

    func deadLetters(_ request: Request) async throws -> Response {
        let sources = try mapping(request).map { [$0.qualifiedName, configuration.mongoDatabase + "." + $0.collection] }
        let key = Self.nonEmpty(request.uri.queryParameters.get("key"))
        let limit = limit(request)
        let entries = try await database.run { c in try DeadLetters.entries(sources: sources, key: key, limit: limit, on: c) }
        return Self.json(.ok, ["deadLetters": .array(entries.map(deadLetterJSON))])
    }

    func deadLetterJSON(_ e: DeadLetters.Entry) -> Value {
        let table = configuration.tables.first { $0.qualifiedName == e.source || configuration.mongoDatabase + "." + $0.collection == e.source }
        return .document(["id": .int64(e.id), "direction": .string(e.direction), "source": .string(e.source),
                          "table": table.map { .string($0.qualifiedName) } ?? .null,
                          "key": e.key.map(Value.string) ?? .null, "field": e.field.map(Value.string) ?? .null,
                          "error": .string(e.error), "createdAt": .string(e.createdAt), "retries": .int64(Int64(e.retries)),
                          "payload": e.payload.map(Value.string) ?? .null])
    }

    func history(_ request: Request) async throws -> Response {
        let collection = try mapping(request)?.collection
        let key = Self.nonEmpty(request.uri.queryParameters.get("key"))
        let prefix = Self.nonEmpty(request.uri.queryParameters.get("prefix"))
        let before = request.uri.queryParameters.get("before", as: Int64.self)
        let limit = limit(request)
        let rows = try await database.run { c in
            try HistoryQuery.rows(collection: collection, key: key, keyPrefix: prefix, before: before, limit: limit, on: c)
        }
        return Self.json(.ok, ["historyDays": .int64(Int64(configuration.historyDays)), "history": .array(rows.map(historyJSON))])
    }

    func historyJSON(_ r: HistoryQuery.Row) -> Value { r.json(table: table(ofCollection: r.collection)) }

    func resyncState() async throws -> Response {
        let rows = try await database.run { c in try ResyncProgress.rows(on: c) }
        let here = resync.current
        let iso = ISO8601DateFormatter()
        return Self.json(.ok, [
            "running": .bool(rows.contains { $0.running } || here.running),
            "tables": .array(rows.map { r in
                .document(["table": .string(r.table), "collection": .string(r.collection), "done": .int64(Int64(r.done)),
                           "estimate": .int64(Int64(r.estimate)), "rate": .double(r.rate), "dryRun": .bool(r.dryRun),
                           "startedAt": .string(r.startedAt), "updatedAt": .string(r.updatedAt),
                           "finishedAt": r.finishedAt.map(Value.string) ?? .null, "running": .bool(r.running),
                           "interrupted": .bool(r.interrupted)])
            }),
            "console": .document([
                "running": .bool(here.running),
                "startedAt": here.startedAt.map { .string(iso.string(from: $0)) } ?? .null,
                "finishedAt": here.finishedAt.map { .string(iso.string(from: $0)) } ?? .null,
                "result": here.result.map(Value.string) ?? .null, "failed": .bool(here.failed),
            ]),
        ])
    }

    // MARK: Actions

    static func ids(_ body: Value) throws -> [Int64] {
        guard case .document(let d) = body, case .array(let items)? = d["ids"] else { throw BadRequest("expected {\"ids\": [...]}") }
        let ids = try items.map { item -> Int64 in
            switch item {
            case .int32(let i): return Int64(i)
            case .int64(let i): return i
            case .double(let d) where d == d.rounded() && abs(d) < 9e15: return Int64(d)
            default: throw BadRequest("ids must be whole numbers")
            }
        }
        guard !ids.isEmpty, ids.count <= 1000 else { throw BadRequest("give between 1 and 1000 ids") }
        return ids
    }

    func retry(_ body: Value) async throws -> Response {
        let all: Bool = if case .document(let d) = body, case .bool(true)? = d["all"] { true } else { false }
        let ids = all ? nil : try Self.ids(body)
        let letters = DeadLetters(configuration: configuration, logger: logger)
        let result = try await database.run { c in try letters.retry(ids, on: c) }
        logger.notice("dead letters retried from the console", metadata: ["resolved": "\(result.resolved)", "failing": "\(result.failing)"])
        return Self.json(.ok, ["resolved": .int64(Int64(result.resolved)), "failing": .int64(Int64(result.failing))])
    }

    func drop(_ body: Value) async throws -> Response {
        let ids = try Self.ids(body)
        let letters = DeadLetters(configuration: configuration, logger: logger)
        let dropped = try await database.run { c in try letters.drop(ids, on: c) }
        logger.notice("dead letters dropped from the console", metadata: ["dropped": "\(dropped)"])
        return Self.json(.ok, ["dropped": .int64(Int64(dropped))])
    }

    func startResync() async throws -> Response {
        if await inspection()?.resyncRunning == true || resync.current.running {
            return Self.error(.conflict, "a resync is already running")
        }
        guard resync.start() else { return Self.error(.conflict, "a resync is already running") }
        return Self.json(.accepted, ["started": .bool(true)])
    }

    // MARK: Responses

    static func json(_ status: HTTPResponse.Status, _ body: Document) -> Response {
        Response(status: status, headers: [.contentType: "application/json; charset=utf-8"],
                 body: .init(byteBuffer: ByteBuffer(string: JSON.serialize(.document(body)) + "\n")))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(status, ["error": .string(message)])
    }

    static func asset(_ text: String, _ type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// Samples the live series every interval while the endpoint runs, and stops the console's
/// database worker when the bridge shuts down.
struct ConsoleService: Service {
    let console: Console

    func run() async throws {
        let console = console
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let figures = await console.inspection()
                console.series.sample(tables: console.configuration.tables.map(\.qualifiedName),
                                      statistics: [console.bridge.toMongoStatistics, console.bridge.toNocoDBStatistics],
                                      inspection: figures)
                do { try await Task.sleep(for: console.sampleInterval) } catch { break }
            }
        }
        console.database.stop()
    }
}
