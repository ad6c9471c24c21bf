import ArgumentParser
import Bridge
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the running bridge's live status (from its endpoint at STATUS_ADDR) and per-table backlog, dead letters and row counts read from the databases.")

    @OptionGroup var options: ConnectionOptions

    @Flag(help: "Print JSON: {\"bridge\": live status or null, \"databases\": per-table state}.")
    var json = false

    func run() async throws {
        try await runReporting {
            let config = try options.configuration()
            let env = ProcessInfo.processInfo.environment
            let address = env["STATUS_ADDR"] ?? "127.0.0.1:8787"
            let live = address == "off" ? nil : LiveStatus.fetch(address: address, token: env["STATUS_TOKEN"])
            let report = try StatusReport.collect(configuration: config)
            if json {
                let bridge = live.map { $0.json() } ?? "null"
                let text = "{\n\"bridge\": \(bridge),\n\"databases\": \(report.json())}\n"
                FileHandle.standardOutput.write(Data(text.utf8))
            } else {
                let header = live?.table() ?? "bridge: no answer at \(address) (not running, or STATUS_ADDR/STATUS_TOKEN differ); state read from the databases:\n"
                FileHandle.standardOutput.write(Data((header + "\n" + report.table()).utf8))
            }
        }
    }
}

/// Reads `/status` of a running bridge; nil when nothing answers in time.
enum LiveStatus {
    static func fetch(address: String, token: String?) -> BridgeHealth? {
        guard let url = URL(string: "http://\(address)/status") else { return nil }
        var request = URLRequest(url: url)
        request.timeoutInterval = 3
        if let token, !token.isEmpty { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox()
        URLSession.shared.dataTask(with: request) { data, response, _ in
            // 503 still carries the full report (degraded or down).
            if let code = (response as? HTTPURLResponse)?.statusCode, code == 200 || code == 503, let data {
                box.set(try? JSONDecoder().decode(BridgeHealth.self, from: data))
            }
            done.signal()
        }.resume()
        done.wait()
        return box.value
    }

    private final class ResultBox: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: BridgeHealth?
        func set(_ value: BridgeHealth?) { lock.withLock { stored = value } }
        var value: BridgeHealth? { lock.withLock { stored } }
    }
}
