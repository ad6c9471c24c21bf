import Foundation

/// A PostgreSQL cluster of one test's own (`nb_start_postgres` of Scripts/lib.sh), for a test
/// that changes server settings no other test may feel (e.g. `max_slot_wal_keep_size`).
final class OwnPostgres: @unchecked Sendable {
    let url: String
    private let dir: String
    private let scripts: String

    init() throws {
        scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Scripts").path
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("nbownpg-\(randomSuffix())").path
        try Self.shell("source \"\(scripts)/lib.sh\" && nb_start_postgres \"\(dir)\"", log: dir + ".log")
        let env = try String(contentsOfFile: dir + "/pg.env", encoding: .utf8)
        guard let line = env.split(separator: "\n").first(where: { $0.hasPrefix("export PG_URL=") }) else {
            throw SetupError("nb_start_postgres wrote no PG_URL")
        }
        url = String(line.dropFirst("export PG_URL=".count)).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }

    deinit {
        try? Self.shell("source \"\(scripts)/lib.sh\" && nb_stop_services \"\(dir)\" && rm -rf \"\(dir)\"", log: dir + ".log")
    }

    /// Runs a bash command, its output to `log`.
    static func shell(_ command: String, log: String) throws {
        let status = waitProcess(try spawnProcess(["/bin/bash", "-c", command], log: log))
        guard status == 0 else {
            throw SetupError("`\(command)` failed: \((try? String(contentsOfFile: log, encoding: .utf8))?.suffix(1500) ?? "")")
        }
    }
}
