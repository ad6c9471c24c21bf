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

    /// Runs a bash command with posix_spawn/waitpid (output to a file, never a pipe: the
    /// server it starts keeps the descriptors open).
    static func shell(_ command: String, log: String) throws {
        let fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        defer { close(fd) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fd, 1)
        posix_spawn_file_actions_adddup2(&actions, fd, 2)
        let words: [String] = ["/bin/bash", "-c", command]
        let argv = words.map { strdup($0) } + [nil]
        let envp = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, "/bin/bash", &actions, nil, argv, envp) == 0 else { throw SetupError("cannot run bash") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else {
            throw SetupError("`\(command)` failed: \((try? String(contentsOfFile: log, encoding: .utf8))?.suffix(1500) ?? "")")
        }
    }
}
