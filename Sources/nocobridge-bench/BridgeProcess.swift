import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The `nocobridge` binary as an operator runs it: the benchmark measures whatever bridge the
/// binary holds, through its CLI and environment only.
struct NocoBridgeCLI {
    let binary: String
    /// PG_URL, MONGO_URL, MONGO_DB, SYNC_TABLES, … for the benchmark's base.
    let environment: [String: String]
    /// The bridge's own output (its log), appended; kept beside the JSON for diagnosis.
    let logPath: String

    enum Capture: String, Sendable {
        case triggers, logical
    }

    /// Runs a subcommand to completion; a non-zero exit is an error naming the log.
    func run(_ arguments: [String], capture: Capture) throws {
        let process = try makeProcess(arguments, capture: capture)
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BenchError("nocobridge \(arguments.joined(separator: " ")) exited with \(process.terminationStatus) (see \(logPath))")
        }
    }

    /// Starts `nocobridge run` with its status endpoint on a free port (for `/readyz`).
    func startBridge(capture: Capture) throws -> BridgeProcess {
        let port = try LocalHTTP.freePort()
        let process = try makeProcess(["run"], capture: capture, extra: ["STATUS_ADDR": "127.0.0.1:\(port)"])
        let started = Clock.micros()
        try process.run()
        return BridgeProcess(process: process, statusPort: port, startedMicros: started)
    }

    /// A child process, for commands the benchmark times itself (resync).
    func makeProcess(_ arguments: [String], capture: Capture, extra: [String: String] = [:]) throws -> Process {
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw BenchError("cannot write \(logPath)") }
        log.seekToEndOfFile()
        log.write(Data("--- nocobridge \(arguments.joined(separator: " ")) (capture \(capture.rawValue))\n".utf8))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        var env = environment
        env["SYNC_CAPTURE"] = capture.rawValue
        for (key, value) in extra { env[key] = value }
        process.environment = env
        process.standardOutput = log
        process.standardError = log
        return process
    }
}

/// A running `nocobridge run`.
final class BridgeProcess {
    let process: Process
    let statusPort: Int
    let startedMicros: Double
    /// Highest VmHWM read before the process ended.
    private(set) var peakMiB: Double = 0

    init(process: Process, statusPort: Int, startedMicros: Double) {
        self.process = process
        self.statusPort = statusPort
        self.startedMicros = startedMicros
    }

    var currentMiB: Double? { ProcessMemory.currentMiB(pid: process.processIdentifier) }

    /// Waits until `/readyz` answers 200 (both pipelines connected); returns the seconds since
    /// the process was started.
    @discardableResult
    func waitReady(timeout: Double = 60) throws -> Double {
        try Clock.wait(timeout: timeout, every: 0.01, "the bridge's /readyz") {
            guard process.isRunning else { throw BenchError("the bridge exited with \(process.terminationStatus) while starting") }
            return LocalHTTP.status(port: statusPort, path: "/readyz") == 200
        }
        return Clock.seconds(since: startedMicros)
    }

    func checkRunning() throws {
        guard process.isRunning else { throw BenchError("the bridge exited with \(process.terminationStatus)") }
    }

    /// SIGTERM, as an operator's `systemctl stop` sends, and waits for the exit.
    func stop() {
        samplePeak()
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    func samplePeak() {
        if let peak = ProcessMemory.peakMiB(pid: process.processIdentifier) { peakMiB = max(peakMiB, peak) }
    }
}

/// Just enough HTTP over a loopback socket to ask the bridge's status endpoint whether it is
/// ready, without pulling an HTTP client into the benchmark.
enum LocalHTTP {
    /// The status code of `GET path`, or nil when nothing answers.
    static func status(port: Int, path: String) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        guard write(fd, request, request.count) == request.count else { return nil }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = read(fd, &buffer, buffer.count)
        guard n > 12 else { return nil }
        // "HTTP/1.1 200 OK"
        return Int(String(decoding: buffer[9..<12], as: UTF8.self))
    }

    /// A loopback port nothing listens on now (bound to port 0, read back, released).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket() failed") }
        defer { close(fd) }
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw BenchError("bind() failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw BenchError("getsockname() failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }
}
