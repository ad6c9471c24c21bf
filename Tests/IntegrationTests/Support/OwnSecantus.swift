import Foundation

/// A SecantusDB server of one test's own, for a test that freezes it (SIGSTOP) or otherwise
/// disturbs it in a way no other test may feel. Started like `nb_start_services` starts the
/// shared one (same binary, test commands on), on a free port, storage in a temporary
/// directory; stopped by PID, resumed first if frozen. Unlike the shared one it journals
/// every commit (`--sync-on-commit`), so a killed server keeps what it acknowledged, as mongod
/// does; its load is one test's, so the fsyncs cost little.
final class OwnSecantus: @unchecked Sendable {
    let url: String
    let port: Int
    private let pid: pid_t
    private let dir: String

    init(_ extraArguments: [String] = []) throws {
        let venv = ProcessInfo.processInfo.environment["NB_VENV"]
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/nocobridge/venv").path
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("nbownmongo-\(randomSuffix())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        port = try freeTCPPort()
        pid = try spawnProcess([venv + "/bin/secantusd-py", "--host", "127.0.0.1", "--port", String(port),
                                "--storage-path", dir + "/mongo", "--enable-test-commands", "--sync-on-commit"] + extraArguments, log: dir + ".log")
        url = "mongodb://127.0.0.1:\(port)/?replicaSet=secantus"
        let deadline = Date().addingTimeInterval(60)
        while !canConnect(port: port) {
            guard Date() < deadline else {
                stopProcess()
                throw SetupError("SecantusDB did not listen on \(port): \((try? String(contentsOfFile: dir + ".log", encoding: .utf8))?.suffix(1500) ?? "")")
            }
            usleep(100_000)
        }
    }

    deinit {
        stopProcess()
        try? FileManager.default.removeItem(atPath: dir)
        try? FileManager.default.removeItem(atPath: dir + ".log")
    }

    /// Freezes the server: its sockets stay open and connects still complete in the kernel's
    /// backlog, so clients see a server that stops answering, as with a partition.
    /// SIGSTOP, and back once every thread of the server is stopped: a thread in an
    /// uninterruptible call (an fsync, with `--sync-on-commit`) stops only when the call ends,
    /// and a request it reads meanwhile would still be answered (seen once under the full
    /// suite's load: a read against the "frozen" server succeeded).
    func freeze() {
        kill(pid, SIGSTOP)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline && !allThreadsStopped() { usleep(1_000) }
    }

    private func allThreadsStopped() -> Bool {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"), !tasks.isEmpty else { return false }
        return tasks.allSatisfy { task in
            // /proc/PID/task/TID/stat: "TID (comm) STATE …"; comm may hold spaces or parentheses.
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
            return state == "T" || state == "t"
        }
    }

    func thaw() { kill(pid, SIGCONT) }

    private func stopProcess() {
        kill(pid, SIGCONT)
        kill(pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<50 {
            if waitpid(pid, &status, WNOHANG) == pid { return }
            usleep(100_000)
        }
        kill(pid, SIGKILL)
        waitProcess(pid)
    }
}

/// A TCP port nothing listens on right now (bound to port 0, then released).
func freeTCPPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SetupError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw SetupError("bind: \(String(cString: strerror(errno)))") }
    return Int(UInt16(bigEndian: address.sin_port))
}

func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}
