import Foundation
import Logging
import NocoDBMeta

/// `Tests/Support/nocodb_meta_server.py` on a free port: NocoDB's meta API in memory, with
/// tables created in the fixture's database the way NocoDB creates them, every request and
/// response validated against NocoDB's OpenAPI spec (`../shared/nocodb/swagger-v2.json`).
final class NocoDBTestServer: @unchecked Sendable {
    static let token = "nb-test-token-s3cret"
    let url: String
    let baseID: String
    let baseTitle = "Restaurant"
    let logPath: String
    private let pid: pid_t

    /// - Parameters:
    ///   - fail: `METHOD REGEX STATUS COUNT`: the first COUNT matching requests get STATUS.
    init(postgresURL: String, baseID: String, fail: [String] = [], delayMilliseconds: Int = 0) throws {
        self.baseID = baseID
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        let spec = root.deletingLastPathComponent().appendingPathComponent("shared/nocodb/swagger-v2.json").path
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nocodb-\(randomSuffix())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        logPath = dir + "/calls.jsonl"
        let portFile = dir + "/port"
        let venv = ProcessInfo.processInfo.environment["NB_VENV"] ?? (NSHomeDirectory() + "/.cache/nocobridge/venv")
        var arguments = [venv + "/bin/python", root.appendingPathComponent("Tests/Support/nocodb_meta_server.py").path,
                         "--spec", spec, "--pg-url", postgresURL, "--token", Self.token, "--base-id", baseID,
                         "--base-title", baseTitle, "--port-file", portFile, "--log", logPath,
                         "--delay-ms", String(delayMilliseconds)]
        for f in fail { arguments += ["--fail", f] }
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

    func client(token: String = NocoDBTestServer.token) -> NocoDBMetaClient {
        var config = NocoDBConfiguration(url: URL(string: url)!, token: token, base: baseID)
        config.backoffBase = .milliseconds(20)
        return NocoDBMetaClient(configuration: config, logger: testLogger())
    }
}
