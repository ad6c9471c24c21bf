import Foundation
import Testing

/// `deploy/compose.yaml` checked as `docker compose` would check it (the Compose
/// specification's JSON schema) plus what a schema cannot say (documented variables, pinned
/// images); this machine has no Docker engine to run it.
@Suite struct DeployTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func check(compose: String? = nil, envExample: String? = nil) throws -> (status: Int32, output: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("compose-\(randomSuffix())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var arguments = [Self.venvPython, Self.root.appendingPathComponent("deploy/check_compose.py").path,
                         "--schema", Self.root.deletingLastPathComponent().appendingPathComponent("shared/compose/compose-spec.json").path]
        if let compose {
            try compose.write(to: dir.appendingPathComponent("compose.yaml"), atomically: true, encoding: .utf8)
            arguments += ["--compose", dir.appendingPathComponent("compose.yaml").path]
        }
        if let envExample {
            try envExample.write(to: dir.appendingPathComponent("env.example"), atomically: true, encoding: .utf8)
            arguments += ["--env-example", dir.appendingPathComponent("env.example").path]
        }
        let log = dir.appendingPathComponent("out").path
        let status = waitProcess(try spawnProcess(arguments, log: log))
        return (status, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    static var venvPython: String {
        (ProcessInfo.processInfo.environment["NB_VENV"] ?? (NSHomeDirectory() + "/.cache/nocobridge/venv")) + "/bin/python"
    }

    static func original(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    @Test func theComposeFilePassesTheSpecificationAndThePins() throws {
        let result = try check()
        #expect(result.status == 0 && result.output.contains("compose file OK"), "\(result.output)")
    }

    /// Each check can fail: a key the specification does not have, an unpinned or untested
    /// image, an undocumented variable.
    @Test func eachCheckRefusesWhatItShould() throws {
        let compose = try Self.original("deploy/compose.yaml")
        let env = try Self.original("deploy/nocobridge.env.example")
        let cases: [(String, String, String)] = [
            (compose.replacingOccurrences(of: "    restart: unless-stopped", with: "    restart: unless-stopped\n    restrat: always"),
             env, "schema: services/nocobridge: 'restrat' does not match any of the regexes"),
            (compose.replacingOccurrences(of: "nocodb/nocodb:0.258.3", with: "nocodb/nocodb:latest"), env,
             "service nocodb: image nocodb/nocodb:latest is not pinned to a version"),
            (compose.replacingOccurrences(of: "nocodb/nocodb:0.258.3", with: "nocodb/nocodb:0.263.8"), env,
             "service nocodb: nocodb/nocodb:0.263.8 is not a NocoDB release the tests model (0.258.3)"),
            (compose.replacingOccurrences(of: "image: mongo:8.2 ", with: "image: mongo:6.0 "), env,
             "service mongo1: mongo:6.0 is not MongoDB 8.2, the version the tests talk to"),
            (compose.replacingOccurrences(of: "image: postgres:15", with: "image: postgres"), env,
             "service postgres: image postgres is not pinned to a version"),
            (compose, env.replacingOccurrences(of: "# STATUS_TOKEN=", with: "# STATUS_TOKN="),
             "variable ${STATUS_TOKEN} is not documented"),
            (compose.replacingOccurrences(of: "      LOG_FORMAT: json", with: "      LOG_FORMAT: json\n      LOG_LEVEL: $NOCOBRIDGE_LOG_LEVEL"), env,
             "variable ${NOCOBRIDGE_LOG_LEVEL} is not documented"),
            (compose.replacingOccurrences(of: "image: mongo:8.2 ", with: "image: docker.io/library/mongo:6.0 "), env,
             "service mongo1: docker.io/library/mongo:6.0 is not MongoDB 8.2"),
        ]
        #expect(cases.allSatisfy { $0.0 != compose || $0.1 != env }, "every case changes something")
        for (file, envExample, expected) in cases {
            let result = try check(compose: file, envExample: envExample)
            #expect(result.status != 0 && result.output.contains(expected), "expected \(expected): \(result.output)")
        }
        // What Compose does not interpolate is not a variable: `$$` and comments.
        let escaped = compose.replacingOccurrences(of: "      LOG_FORMAT: json", with: "      LOG_FORMAT: json\n      NOTE: \"$$NOT_A_VARIABLE\"  # $ALSO_NOT")
        let result = try check(compose: escaped, envExample: env)
        #expect(result.status == 0 && result.output.contains("compose file OK"), "\(result.output)")
    }

    /// A file the check needs and cannot read is one line, exit 2, not a traceback.
    @Test func aMissingSchemaIsOneLine() throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("compose-\(randomSuffix()).out").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        // waitProcess gives waitpid's status: the exit code is its second byte.
        let status = waitProcess(try spawnProcess([Self.venvPython, Self.root.appendingPathComponent("deploy/check_compose.py").path,
                                                   "--schema", "/nonexistent/compose-spec.json"], log: log))
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(status == 2 << 8 && output == "check_compose: cannot read Compose specification schema /nonexistent/compose-spec.json: No such file or directory\n",
                "\(output)")
    }
}
