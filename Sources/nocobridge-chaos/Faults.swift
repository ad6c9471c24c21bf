import Foundation
import Mongo
import SyncCore

/// The faults a run injects: the pattern below in rounds, each round shuffled by the seed.
enum Fault: String, CaseIterable, Sendable {
    case killBridge = "SIGKILL bridge"
    case restartPostgres = "restart PostgreSQL"
    case restartMongo = "restart MongoDB server"
    /// A crashed MongoDB (SIGKILL, no shutdown): it keeps what it acknowledged, as mongod
    /// keeps journalled majority writes, and loses the writes it had not answered.
    case crashMongo = "SIGKILL MongoDB server"
    case resync = "resync while running"
    /// MongoDB failing commands as a failover does: `failCommand` on a random command with a
    /// failover's error (or a dropped connection), a few times, for every client.
    case failover = "MongoDB failover errors"
    /// With several instances: one frozen (SIGSTOP) past its lease, the others take its
    /// tables over, then it resumes and must not commit what it decided before the freeze.
    case freezeBridge = "SIGSTOP bridge past its lease"

    static func schedule(count: Int, instances: Int = 1, using rng: inout SeededRandom) -> [Fault] {
        var pattern = [Fault.killBridge, .killBridge, .restartPostgres, .restartMongo, .crashMongo, .resync, .failover]
        if instances > 1 { pattern.append(.freezeBridge) }
        var out: [Fault] = []
        while out.count < count { out += pattern.shuffled(using: &rng) }
        return Array(out.prefix(count))
    }
}

/// A child process started with `posix_spawn` and reaped with `waitpid` by this code alone:
/// Foundation's `Process` left a restart script's shell unreaped here (its exit went unnoticed
/// while the server it started lived on). Output goes to a log file, never a pipe.
final class ChildProcess {
    let pid: pid_t

    init(_ path: String, _ arguments: [String], environment: [String: String], logFD: Int32) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, logFD, 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard rc == 0 else { throw ChaosError("cannot start \(path): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    func kill(_ signal: Int32) { _ = Glibc.kill(pid, signal) }

    /// The exit status if the process has ended (reaped now), nil while it runs.
    func exited() -> Int32? {
        var status: Int32 = 0
        var rc: pid_t
        repeat { rc = waitpid(pid, &status, WNOHANG) } while rc < 0 && errno == EINTR
        guard rc == pid else { return nil }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// The exit status, or 128 + signal number.
    @discardableResult
    func wait() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}

/// Restarts the servers `Scripts/lib.sh` started in the services directory, with its own
/// functions, so the chaos run restarts them exactly as an operator's service manager would.
struct ServerControl {
    let scriptsDirectory: String
    let servicesDirectory: String
    let logFD: Int32

    func restartPostgres() throws { try run("nb_restart_postgres") }
    func restartMongo(crash: Bool = false) throws { try run("nb_restart_mongo", crash ? "crash" : "") }

    private func run(_ function: String, _ mode: String = "") throws {
        let status = try ChildProcess("/bin/bash", ["-c", "source \"$0/lib.sh\" && \(function) \"$1\" $2", scriptsDirectory, servicesDirectory, mode],
                                      environment: ProcessInfo.processInfo.environment, logFD: logFD).wait()
        guard status == 0 else { throw ChaosError("\(function) failed (exit \(status))") }
    }
}

struct ChaosError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A failover as clients see it, through the server's `failCommand` failpoint (SecantusDB
/// runs with test commands here): a random write, read or change stream command fails with
/// PrimarySteppedDown, NotWritablePrimary, InterruptedDueToReplStateChange or
/// ShutdownInProgress, or has its connection dropped, for the next few such commands of any
/// client. Writers retry; the bridge must lose and duplicate nothing.
enum Failover {
    static let commands = ["insert", "update", "delete", "find", "aggregate", "getMore"]
    static let codes: [Int32] = [189, 10107, 11602, 91]

    static func inject(mongo: MongoClientPool, using rng: inout SeededRandom) throws {
        var data: Document = ["failCommands": .array([.string(commands.randomElement(using: &rng)!)])]
        if Int.random(in: 0..<4, using: &rng) == 0 {
            data["closeConnection"] = .bool(true)
        } else {
            data["errorCode"] = .int32(codes.randomElement(using: &rng)!)
        }
        let times = Int32.random(in: 1...5, using: &rng)
        try mongo.withClient { (c: MongoClient) throws(MongoError) in
            _ = try c.runCommand(["configureFailPoint": .string("failCommand"), "mode": .document(["times": .int32(times)]),
                                  "data": .document(data)], database: "admin")
        }
    }

    /// Ends what is left of the last failover, before both sides are compared.
    static func end(mongo: MongoClientPool) throws {
        try mongo.withClient { (c: MongoClient) throws(MongoError) in
            _ = try c.runCommand(["configureFailPoint": .string("failCommand"), "mode": .string("off")], database: "admin")
        }
    }
}
