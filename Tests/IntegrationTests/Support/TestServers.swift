import Bridge
import Foundation
import Logging
import Mongo
import Postgres
import SyncCore
import Testing

/// The servers the integration tests run against, started by `Scripts/test.sh`.
/// Missing servers are a failure, never a skip: a suite that skips proves nothing.
struct TestServers {
    let adminURL: String
    let mongoURL: String

    static func fromEnvironment() throws -> TestServers {
        let env = ProcessInfo.processInfo.environment
        guard let pg = env["PG_ADMIN_URL"] ?? env["PG_URL"], let mongo = env["MONGO_URL"] else {
            throw SetupError("PG_URL/MONGO_URL are not set: run the tests with Scripts/test.sh, which starts PostgreSQL and SecantusDB")
        }
        return TestServers(adminURL: pg, mongoURL: mongo)
    }
}

struct SetupError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Test logger: warnings and errors only, so failures stay readable.
func testLogger(_ label: String = "test") -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = ProcessInfo.processInfo.environment["TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .critical
    return logger
}

/// Polls `condition` until it holds or `seconds` pass; failing to converge is a test failure.
func eventually(_ what: @autoclosure () -> String, seconds: Double = 20, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return }
        usleep(5_000)
    }
    throw SetupError("timed out after \(seconds) s waiting for: \(what())")
}

func randomSuffix(_ n: Int = 10) -> String {
    String((0..<n).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
}

/// Path of the built `nocobridge` executable (built by `swift build --build-tests`).
func nocobridgeBinary() throws -> String {
    if let path = ProcessInfo.processInfo.environment["NOCOBRIDGE_BIN"] { return path }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    for candidate in [".build/debug/nocobridge", ".build/release/nocobridge"] {
        let path = root.appendingPathComponent(candidate).path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw SetupError("nocobridge binary not found; build it with `swift build --build-tests` (Scripts/test.sh does)")
}

func packageRoot() -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
}

/// Milliseconds since the epoch, for dating test writes.
func wallClockMillisecondsForTests() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

