import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import NocoDBMeta

/// `Tests/Support/nocodb/server.py` on a free port: NocoDB's meta API modelled on NocoDB's
/// source, with tables created in the fixture's database the way NocoDB creates them, bodies
/// validated as NocoDB validates them (`../shared/nocodb/swagger.json`) and every call
/// checked to be in its v2 API (`swagger-v2.json`).
final class NocoDBTestServer: @unchecked Sendable {
    /// The NocoDB releases the double models where they differ.
    enum Version: String, CaseIterable, Sendable, CustomStringConvertible {
        case v0_258_3 = "0.258.3"
        case v2026 = "2026"
        var description: String { rawValue }
    }

    static let token = "nb-test-token-s3cret"
    /// What the current release answers for a share password that is set (meta.py's
    /// PASSWORD_SENTINEL_2026).
    static let maskedPassword = "__NC_PASSWORD_MASKED__"
    /// The e-mail of the token's user, the base's owner (server.py's default).
    static let ownerEmail = "admin@example.com"
    let url: String
    let baseID: String
    let baseTitle = "Restaurant"
    let logPath: String
    private let pid: pid_t

    /// - Parameters:
    ///   - fail: `METHOD REGEX STATUS COUNT`: the first COUNT matching requests get STATUS.
    ///   - extraBases, limitMax: more bases than NocoDB's list page (DB_QUERY_LIMIT_MAX) holds.
    ///   - orgUsers: users of the NocoDB instance who are not in the base.
    ///   - failEcho: injected failures quote the request body, as a database error can.
    init(postgresURL: String, baseID: String, version: Version = .v0_258_3, fail: [String] = [], delayMilliseconds: Int = 0,
         extraBases: Int = 0, limitMax: Int = 1000, orgUsers: [String] = [], failEcho: Bool = false) throws {
        self.baseID = baseID
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        let shared = root.deletingLastPathComponent().appendingPathComponent("shared/nocodb")
        guard FileManager.default.fileExists(atPath: shared.appendingPathComponent("swagger.json").path) else {
            throw SetupError("NocoDB's OpenAPI specs are missing at \(shared.path) (the test double validates against them)")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nocodb-\(randomSuffix())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        logPath = dir + "/calls.jsonl"
        let portFile = dir + "/port"
        let venv = ProcessInfo.processInfo.environment["NB_VENV"] ?? (NSHomeDirectory() + "/.cache/nocobridge/venv")
        var arguments = [venv + "/bin/python", root.appendingPathComponent("Tests/Support/nocodb/server.py").path,
                         "--spec-v2", shared.appendingPathComponent("swagger-v2.json").path,
                         "--spec-v1", shared.appendingPathComponent("swagger.json").path,
                         "--pg-url", postgresURL, "--token", Self.token, "--base-id", baseID,
                         "--base-title", baseTitle, "--port-file", portFile, "--log", logPath,
                         "--nocodb-version", version.rawValue, "--extra-bases", String(extraBases),
                         "--limit-max", String(limitMax), "--delay-ms", String(delayMilliseconds)]
        for f in fail { arguments += ["--fail", f] }
        for u in orgUsers { arguments += ["--org-user", u] }
        if failEcho { arguments.append("--fail-echo") }
        let child = try spawnProcess(arguments, log: dir + "/server.err")
        pid = child
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: portFile) {
            var status: Int32 = 0
            guard waitpid(child, &status, WNOHANG) == 0, Date() < deadline else {
                kill(child, SIGKILL)
                waitProcess(child)
                let err = (try? String(contentsOfFile: dir + "/server.err", encoding: .utf8)) ?? ""
                throw SetupError("NocoDB test server did not start: \(err.suffix(2000))")
            }
            usleep(20_000)
        }
        url = "http://127.0.0.1:" + (try String(contentsOfFile: portFile, encoding: .utf8))
    }

    deinit {
        kill(pid, SIGKILL)
        waitProcess(pid)
    }

    /// Every call the server answered, in order.
    var calls: [(method: String, path: String, status: Int, violation: String?)] {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            return (o["method"] as? String ?? "", o["path"] as? String ?? "", o["status"] as? Int ?? 0, o["violation"] as? String)
        }
    }

    var violations: [String] { calls.compactMap(\.violation) }

    func environment(_ base: [String: String], baseName: String? = nil, token: String = NocoDBTestServer.token) -> [String: String] {
        var env = base
        env["NOCODB_URL"] = url
        env["NOCODB_TOKEN"] = token
        env["NOCODB_BASE"] = baseName ?? baseID
        return env
    }

    /// One call as any client could make it, bypassing `NocoDBMetaClient`: for bodies the
    /// client never sends and for fields it does not decode.
    func request(_ method: String, _ path: String, json: Any? = nil) throws -> (status: Int, body: Any?) {
        var request = URLRequest(url: URL(string: url + path)!)
        request.httpMethod = method
        request.setValue(Self.token, forHTTPHeaderField: "xc-token")
        if let json {
            request.httpBody = try JSONSerialization.data(withJSONObject: json)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let done = DispatchSemaphore(value: 0)
        let box = Box()
        URLSession.shared.dataTask(with: request) { data, response, _ in
            box.value = ((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data())
            done.signal()
        }.resume()
        done.wait()
        let (status, data) = box.value
        return (status, data.isEmpty ? nil : try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]))
    }

    private final class Box: @unchecked Sendable {
        var value: (Int, Data) = (0, Data())
    }

    func client(token: String = NocoDBTestServer.token) -> NocoDBMetaClient {
        var config = NocoDBConfiguration(url: URL(string: url)!, token: token, base: baseID)
        config.backoffBase = .milliseconds(20)
        return NocoDBMetaClient(configuration: config, logger: testLogger())
    }
}
