import Bridge
import BuildInfo
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Mongo
import Postgres
import StatusServer
import SyncCore
import Testing

/// One HTTP exchange, blocking (the tests run on their own threads).
struct HTTPExchange {
    var status: Int
    var headers: [String: String]
    var body: String

    var json: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] }

    static func send(_ url: String, method: String = "GET", headers: [String: String] = [:], body: String? = nil) throws -> HTTPExchange {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.timeoutInterval = 30
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        if let body { request.httpBody = Data(body.utf8) }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: HTTPExchange?
        URLSession.shared.dataTask(with: request) { data, response, _ in
            if let r = response as? HTTPURLResponse {
                var h: [String: String] = [:]
                for (k, v) in r.allHeaderFields { h[String(describing: k).lowercased()] = String(describing: v) }
                result = HTTPExchange(status: r.statusCode, headers: h, body: String(decoding: data ?? Data(), as: UTF8.self))
            }
            done.signal()
        }.resume()
        done.wait()
        guard let result else { throw SetupError("no response from \(url)") }
        return result
    }
}

/// The console's API: who may read and act, the headers every answer carries, and what the
/// conflicts, dead letters, history and resync endpoints return, against a running bridge.
@Suite struct ConsoleAPITests {
    static let policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    func startBridge(_ f: BridgeFixture, address: String? = nil, token: String?) throws -> (BridgeProcess, String) {
        let port = try address.flatMap { $0.split(separator: ":").last.flatMap { Int($0) } } ?? freeTCPPort()
        var env = f.environment
        env["STATUS_ADDR"] = address ?? "127.0.0.1:\(port)"
        env["STATUS_TOKEN"] = token
        let process = try BridgeProcess(environment: env)
        let base = "http://127.0.0.1:\(port)"
        try eventually("endpoint up", seconds: 30) { (try? HTTPExchange.send(base + "/healthz").status) == 200 }
        return (process, base)
    }

    @Test func tokenGuardsReadsAndActionsRefuseForeignOriginsAndEveryAnswerCarriesThePolicy() throws {
        let f = try BridgeFixture()
        let token = "t0k-\(randomSuffix())"
        let (bridge, base) = try startBridge(f, token: token)
        _ = bridge
        let auth = ["Authorization": "Bearer \(token)"]
        let json = ["Content-Type": "application/json"]

        // The shell and its files need no token (they hold no data); the API does.
        for path in ["/", "/assets/console.js", "/assets/console.css", "/api/mode", "/api/overview", "/no-such-page"] {
            let r = try HTTPExchange.send(base + path)
            #expect(r.headers["content-security-policy"] == Self.policy, "\(path)")
            #expect(r.headers["x-content-type-options"] == "nosniff" && r.headers["referrer-policy"] == "no-referrer", "\(path)")
            #expect(r.headers["x-frame-options"] == "DENY" && r.headers["cache-control"] == "no-store", "\(path)")
        }
        #expect(try HTTPExchange.send(base + "/").headers["content-type"] == "text/html; charset=utf-8")
        #expect(try HTTPExchange.send(base + "/assets/console.js").headers["content-type"] == "text/javascript; charset=utf-8")
        #expect(try HTTPExchange.send(base + "/api/mode").json?["tokenRequired"] as? Bool == true)
        for path in ["/api/overview", "/api/conflicts", "/api/dead-letters", "/api/history", "/api/resync"] {
            #expect(try HTTPExchange.send(base + path).status == 401, "\(path)")
            #expect(try HTTPExchange.send(base + path, headers: ["Authorization": "Bearer wrong"]).status == 401, "\(path)")
            #expect(try HTTPExchange.send(base + path, headers: auth).status == 200, "\(path)")
        }
        // A token in the URL or a cookie is no credential.
        #expect(try HTTPExchange.send(base + "/api/overview?token=\(token)").status == 401)
        #expect(try HTTPExchange.send(base + "/api/overview", headers: ["Cookie": "token=\(token)"]).status == 401)

        let retry = base + "/api/dead-letters/retry"
        let body = #"{"ids":[1]}"#
        #expect(try HTTPExchange.send(retry, method: "POST", headers: json, body: body).status == 401)
        #expect(try HTTPExchange.send(retry, method: "POST", headers: auth.merging(json) { a, _ in a }
            .merging(["Origin": "http://evil.example"]) { a, _ in a }, body: body).status == 403)
        #expect(try HTTPExchange.send(retry, method: "POST", headers: auth.merging(json) { a, _ in a }
            .merging(["Sec-Fetch-Site": "cross-site"]) { a, _ in a }, body: body).status == 403)
        // What an HTML form could send: refused for its content type.
        #expect(try HTTPExchange.send(retry, method: "POST", headers: auth.merging(["Content-Type": "application/x-www-form-urlencoded"]) { a, _ in a },
                                      body: "ids=1").status == 415)
        #expect(try HTTPExchange.send(retry, method: "POST", headers: auth.merging(json) { a, _ in a }, body: "not json").status == 400)
        let sameOrigin = auth.merging(json) { a, _ in a }.merging(["Origin": base, "Sec-Fetch-Site": "same-origin"]) { a, _ in a }
        let ok = try HTTPExchange.send(retry, method: "POST", headers: sameOrigin, body: body)
        #expect(ok.status == 200 && ok.json?["resolved"] as? Int == 0, "\(ok.body)")
        #expect(!ok.body.contains(token))
        // The rest of the status endpoint keeps its token too.
        #expect(try HTTPExchange.send(base + "/status").status == 401)
        #expect(try HTTPExchange.send(base + "/status", headers: auth).json?["version"] as? String == BuildInfo.description)
    }

    @Test func withoutATokenALoopbackConsoleIsReadOnlyAndOnlyForLoopbackHostNames() throws {
        let f = try BridgeFixture()
        let (bridge, base) = try startBridge(f, token: nil)
        _ = bridge
        let mode = try HTTPExchange.send(base + "/api/mode").json
        #expect(mode?["tokenRequired"] as? Bool == false && mode?["readable"] as? Bool == true && mode?["actions"] as? Bool == false)
        #expect(try HTTPExchange.send(base + "/api/overview").status == 200)
        // A page on another name resolved to 127.0.0.1 (DNS rebinding) gets nothing.
        #expect(try HTTPExchange.send(base + "/api/overview", headers: ["Host": "evil.example:80"]).status == 403)
        let action = try HTTPExchange.send(base + "/api/resync", method: "POST", headers: ["Content-Type": "application/json"], body: "{}")
        #expect(action.status == 403 && action.body.contains("STATUS_TOKEN"))
        #expect(try f.sql("SELECT count(*) FROM nocobridge.resync_progress").rows[0][0] == "0")
    }

    @Test func withoutATokenANonLoopbackConsoleShowsNothing() throws {
        let f = try BridgeFixture()
        let port = try freeTCPPort()
        let (bridge, _) = try startBridge(f, address: "0.0.0.0:\(port)", token: nil)
        _ = bridge
        let base = "http://127.0.0.1:\(port)"
        #expect(try HTTPExchange.send(base + "/api/mode").json?["readable"] as? Bool == false)
        for path in ["/api/overview", "/api/conflicts", "/api/dead-letters", "/api/history"] {
            let r = try HTTPExchange.send(base + path)
            #expect(r.status == 403 && r.body.contains("STATUS_TOKEN"), "\(path)")
        }
        // Unchanged: /status and /metrics hold no record data.
        try eventually("status answers") { try [200, 503].contains(HTTPExchange.send(base + "/status").status) }
    }

    @Test func conflictsDeadLettersHistoryAndResyncThroughTheAPIAndTheCLI() throws {
        let f = try BridgeFixture()
        let token = "t0k-\(randomSuffix())"
        let auth = ["Authorization": "Bearer \(token)"]
        let post = auth.merging(["Content-Type": "application/json"]) { a, _ in a }
        let ops = f.table("waiter_ops")
        var env = f.environment
        env["STATUS_TOKEN"] = token

        // A conflict on c-1 and none on c-2, made while the bridge is down.
        var (bridge, base) = try startBridge(f, token: token)
        try f.sql("INSERT INTO \(ops) (\"externalId\", action, notes) VALUES ('c-1', 'seat', 'x'), ('c-2', 'seat', 'y')")
        try eventually("crossed") { try f.count("waiter_ops") == 2 }
        bridge.kill(SIGTERM)
        #expect(bridge.wait() == 0)
        try f.sql("UPDATE \(ops) SET notes = 'from nocodb', updated_by = 'us_dana' WHERE \"externalId\" = 'c-1'")
        try f.mongoWrite { c throws(MongoError) in
            try c.updateOne(filter: ["externalId": .string("c-1")], update: ["$set": .document(["notes": .string("from mongo"), "action": .string("order")])],
                            collection: "waiter_ops")
            try c.insertOne(["externalId": .string("d-1"), "table_no": .string("not a number")], collection: "waiter_ops")
            try c.insertOne(["externalId": .string("d-2"), "table_no": .string("nor this")], collection: "waiter_ops")
        }
        (bridge, base) = try startBridge(f, token: token)
        env["STATUS_ADDR"] = base.replacingOccurrences(of: "http://", with: "")
        try eventually("conflict and dead letters") {
            try f.sql("SELECT (SELECT count(*) FROM nocobridge.conflicts) || '/' || (SELECT count(*) FROM nocobridge.dead_letters)").rows[0][0] == "1/2"
        }

        let conflicts = try #require(try HTTPExchange.send(base + "/api/conflicts?table=waiter_ops&key=c-1", headers: auth).json?["conflicts"] as? [[String: Any]])
        #expect(conflicts.count == 1)
        let c = try #require(conflicts.first)
        #expect(c["key"] as? String == "c-1" && c["winner"] as? String == "nocodb" && c["rule"] as? String == "source_priority")
        #expect(c["differing"] as? [String] == ["action", "notes"])
        let nocodbFields = (c["nocodb"] as? [String: Any])?["fields"] as? [[Any]]
        #expect(nocodbFields?.contains { ($0.first as? String) == "notes" && ($0.last as? String) == "from nocodb" } == true)
        #expect((try HTTPExchange.send(base + "/api/conflicts?key=c-2", headers: auth).json?["conflicts"] as? [Any])?.count == 0)
        let unknown = try HTTPExchange.send(base + "/api/conflicts?table=nope", headers: auth)
        #expect(unknown.status == 400 && unknown.body.contains("nope"))

        // The terminal shows the same.
        let cliJSON = try runCLI(["conflicts", "--table", "waiter_ops", "--key", "c-1", "--json"], environment: env)
        #expect(cliJSON.status == 0)
        let apiBody = try HTTPExchange.send(base + "/api/conflicts?table=waiter_ops&key=c-1", headers: auth).body
        #expect(cliJSON.output == apiBody, "CLI: \(cliJSON.output)\nAPI: \(apiBody)")
        let cliTable = try runCLI(["conflicts", "--key", "c-1"], environment: env)
        #expect(cliTable.output.contains(" * notes") && cliTable.output.contains("from mongo") && cliTable.output.contains("winner nocodb"))
        let history = try runCLI(["history", "--table", "waiter_ops", "--key", "c-1", "--json"], environment: env)
        #expect(history.output == (try HTTPExchange.send(base + "/api/history?table=waiter_ops&key=c-1", headers: auth).body))
        let entries = try #require((try JSONSerialization.jsonObject(with: Data(history.output.utf8)) as? [String: Any])?["history"] as? [[String: Any]])
        #expect(entries.first?["by"] as? String == "us_dana" && entries.first?["winner"] as? String == "nocodb")
        let historyTable = try runCLI(["history", "--table", "waiter_ops", "--key", "c-1"], environment: env)
        #expect(historyTable.output.contains("us_dana") && historyTable.output.contains("conflict: nocodb won by source_priority"))
        let badTable = try runCLI(["history", "--table", "nope", "--key", "x"], environment: env)
        #expect(badTable.status == 2 && badTable.output.contains("--table"))

        // Dead letters: listed with payload; drop one, retry the other after the app fixed it.
        let letters = try #require(try HTTPExchange.send(base + "/api/dead-letters?table=waiter_ops", headers: auth).json?["deadLetters"] as? [[String: Any]])
        #expect(Set(letters.compactMap { $0["key"] as? String }) == ["d-1", "d-2"])
        #expect(letters.allSatisfy { ($0["field"] as? String) == "table_no" && (($0["payload"] as? String)?.contains("not a number") == true
                                                                                      || ($0["payload"] as? String)?.contains("nor this") == true) })
        let id1 = try #require(letters.first { $0["key"] as? String == "d-1" }?["id"] as? Int)
        let id2 = try #require(letters.first { $0["key"] as? String == "d-2" }?["id"] as? Int)
        let dropped = try HTTPExchange.send(base + "/api/dead-letters/drop", method: "POST", headers: post, body: "{\"ids\":[\(id2)]}")
        #expect(dropped.json?["dropped"] as? Int == 1)
        let stillBad = try HTTPExchange.send(base + "/api/dead-letters/retry", method: "POST", headers: post, body: "{\"ids\":[\(id1)]}")
        #expect(stillBad.json?["resolved"] as? Int == 0 && stillBad.json?["failing"] as? Int == 1)
        try f.mongoWrite { c throws(MongoError) in
            try c.updateOne(filter: ["externalId": .string("d-1")], update: ["$set": .document(["table_no": .int64(12)])], collection: "waiter_ops")
        }
        try eventually("fixed document crossed") { try f.sql("SELECT table_no FROM \(ops) WHERE \"externalId\" = 'd-1'").rows.first?[0] == "12" }
        let fixed = try HTTPExchange.send(base + "/api/dead-letters/retry", method: "POST", headers: post, body: #"{"all":true}"#)
        #expect(fixed.json?["resolved"] as? Int == 1 && fixed.json?["failing"] as? Int == 0, "\(fixed.body)")
        #expect(try f.sql("SELECT count(*) FROM nocobridge.dead_letters").rows[0][0] == "0")
        #expect(try HTTPExchange.send(base + "/api/dead-letters/drop", method: "POST", headers: post, body: #"{"ids":[]}"#).status == 400)

        // Resync: refused while another holds the lock, then run from the console with its progress.
        let holder = try PostgresConnection(url: f.configuration.postgresURL)
        try holder.query("SELECT pg_advisory_lock(hashtext('nocobridge.resync'))")
        let busy = try HTTPExchange.send(base + "/api/resync", method: "POST", headers: post, body: "{}")
        #expect(busy.status == 409)
        #expect(try HTTPExchange.send(base + "/api/overview", headers: auth).json?["resyncRunning"] as? Bool == true)
        try holder.query("SELECT pg_advisory_unlock(hashtext('nocobridge.resync'))")
        #expect(try HTTPExchange.send(base + "/api/resync", method: "POST", headers: post, body: "{}").status == 202)
        try eventually("console resync finished", seconds: 60) {
            let state = try HTTPExchange.send(base + "/api/resync", headers: auth).json
            return (state?["console"] as? [String: Any])?["finishedAt"] is String
        }
        let state = try #require(try HTTPExchange.send(base + "/api/resync", headers: auth).json)
        #expect((state["console"] as? [String: Any])?["failed"] as? Bool == false)
        let tables = try #require(state["tables"] as? [[String: Any]])
        #expect(tables.count == BridgeFixture.tables.count && tables.allSatisfy { $0["finishedAt"] is String && $0["running"] as? Bool == false })
        #expect(tables.first { ($0["table"] as? String)?.hasSuffix(".waiter_ops") == true }?["done"] as? Int == 4)
    }

    /// Two instances share the four tables 2/2: each overview says who holds which table and
    /// lists both instances, each exports `nocobridge_leader 1` and two leases held; the one
    /// left after a SIGKILL holds all four.
    @Test func everyInstanceShowsWhoHoldsWhichTableAndMetricsCountLeases() throws {
        let f = try BridgeFixture()
        let (first, firstBase) = try startBridge(f, token: nil)
        try eventually("first instance holds every table", seconds: 30) {
            try HTTPExchange.send(firstBase + "/api/overview").json?["leases"] as? Int == 4
        }
        let (second, secondBase) = try startBridge(f, token: nil)
        _ = second
        try eventually("two leases each", seconds: 30) {
            try HTTPExchange.send(firstBase + "/api/overview").json?["leases"] as? Int == 2
                && HTTPExchange.send(secondBase + "/api/overview").json?["leases"] as? Int == 2
        }
        let a = try #require(try HTTPExchange.send(firstBase + "/api/overview").json)
        let b = try #require(try HTTPExchange.send(secondBase + "/api/overview").json)
        let idA = try #require(a["instance"] as? String), idB = try #require(b["instance"] as? String)
        #expect(a["role"] as? String == "leader" && b["role"] as? String == "leader")
        let heldBy = (a["tables"] as? [[String: Any]] ?? []).compactMap { $0["heldBy"] as? String }
        #expect(heldBy.count == 2 * BridgeFixture.tables.count)  // both directions of every table
        #expect(heldBy.filter { $0 == idA }.count == 4 && heldBy.filter { $0 == idB }.count == 4)
        let instances = (b["instances"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
        #expect(Set(instances) == [idA, idB])
        for base in [firstBase, secondBase] {
            let metrics = try HTTPExchange.send(base + "/metrics").body
            #expect(metrics.contains("\nnocobridge_leader 1.0") && metrics.contains("\nnocobridge_leases_held 2.0"), "\(metrics)")
            #expect(metrics.contains("\nnocobridge_lease_units 4.0"))
        }
        first.kill(SIGKILL)
        first.wait()
        try eventually("the second holds all four", seconds: 30) {
            try HTTPExchange.send(secondBase + "/api/overview").json?["leases"] as? Int == 4
        }
    }

    @Test func anInstanceWithNoLeaseIsAStandby() throws {
        let f = try BridgeFixture(capture: .logical)
        let (first, firstBase) = try startBridge(f, token: nil)
        _ = first
        try eventually("first instance holds the slot", seconds: 30) {
            try HTTPExchange.send(firstBase + "/api/overview").json?["role"] as? String == "leader"
        }
        let (second, secondBase) = try startBridge(f, token: nil)
        _ = second
        try eventually("second is a standby", seconds: 30) {
            try HTTPExchange.send(secondBase + "/api/overview").json?["role"] as? String == "standby"
        }
        #expect(try HTTPExchange.send(secondBase + "/metrics").body.contains("\nnocobridge_leader 0.0"))
        #expect(try HTTPExchange.send(secondBase + "/metrics").body.contains("\nnocobridge_leases_held 0.0"))
    }

    @Test func versionIsTheCommitBuiltFromEverywhere() throws {
        let root = packageRoot()
        let git = Process()
        git.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        git.arguments = ["-C", root.path, "rev-parse", "--short=12", "HEAD"]
        let out = Pipe()
        git.standardOutput = out
        try git.run()
        git.waitUntilExit()
        let head = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(head.count == 12)
        #expect(BuildInfo.commit == head || BuildInfo.commit == head + "-dirty", "built from \(BuildInfo.commit), checkout at \(head)")
        let cli = try runCLI(["--version"], environment: ProcessInfo.processInfo.environment)
        #expect(cli.status == 0 && cli.output == BuildInfo.description + "\n", "\(cli.output)")
        #expect(BuildInfo.description.hasPrefix(BuildInfo.version + " (build " + head))
        let health = try JSONDecoder().decode(BridgeHealth.self, from: Data(#"{"status":"ok","postgres":true,"mongo":true,"directions":{},"checkedAt":""}"#.utf8))
        let metrics = MetricsExport().text(after: health)
        #expect(metrics.contains("nocobridge_build_info{version=\"\(BuildInfo.version)\",commit=\"\(BuildInfo.commit)\"} 1"))
    }
}

/// The embedded page matches its sources, and its script never turns data into markup.
@Suite struct ConsoleAssetTests {
    func asset(_ name: String) throws -> String {
        try String(contentsOf: packageRoot().appendingPathComponent("Sources/StatusServer/Assets/\(name)"), encoding: .utf8)
    }

    @Test func embeddedAssetsAreTheFilesInAssets() throws {
        let generated = try String(contentsOf: packageRoot().appendingPathComponent("Sources/StatusServer/ConsoleAssets.swift"), encoding: .utf8)
        for (name, file) in [("indexHTML", "index.html"), ("consoleJS", "console.js"), ("consoleCSS", "console.css"), ("faviconSVG", "favicon.svg")] {
            let text = try asset(file)
            #expect(generated.contains("static let \(name) = ##\"\"\"\n" + text + "\"\"\"##"), "run Scripts/gen-assets.sh: \(file) changed")
        }
    }

    @Test func theScriptBuildsNodesAndNeverParsesMarkup() throws {
        let js = try asset("console.js")
        for forbidden in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setTimeout(\"",
                          "createContextualFragment", "DOMParser", ".href", ".src", "location ="] {
            #expect(!js.contains(forbidden), "console.js uses \(forbidden)")
        }
        let html = try asset("index.html")
        // No inline script or style for the policy to allow: one external script, one stylesheet.
        #expect(html.components(separatedBy: "<script").count == 2 && html.contains(#"<script src="/assets/console.js" defer></script>"#))
        #expect(!html.contains("<style") && !html.contains("style=") && html.range(of: #"\son[a-z]+\s*="#, options: .regularExpression) == nil)
    }
}
