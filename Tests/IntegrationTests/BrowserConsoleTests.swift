import Bridge
import Foundation
import Mongo
import Postgres
import SyncCore
import Testing

/// The console in a real browser (headless Chromium): it signs in with the token, renders the
/// overview, a conflict and a dead letter whose fields hold script-injection attempts, retries
/// the dead letter with a real click and sees it resolved, and nothing injected ever runs.
@Suite(.serialized) struct BrowserConsoleTests {
    static let script = "<script>window.__pwned=1</script>"
    static let image = "\"><img src=x onerror=\"window.__pwned=1\">"
    static let url = "javascript:window.__pwned=1"

    @Test func consoleRendersHostileRecordsAsTextAndRetriesADeadLetter() throws {
        let f = try BridgeFixture()
        let port = try freeTCPPort()
        let token = "console-token-\(randomSuffix())"
        var env = f.environment
        env["STATUS_ADDR"] = "127.0.0.1:\(port)"
        env["STATUS_TOKEN"] = token
        env["STATUS_SAMPLE_SECONDS"] = "1"
        let ops = f.table("waiter_ops")

        // A record both sides agree on, then edited on both sides while the bridge is down: a conflict.
        var first: BridgeProcess? = try BridgeProcess(environment: env)
        try f.sql("INSERT INTO \(ops) (\"externalId\", action, notes) VALUES ('xss-conflict', 'seat', 'table 4')")
        try eventually("record crossed", seconds: 30) { try f.document("waiter_ops", key: "xss-conflict") != nil }
        first?.kill(SIGTERM)
        #expect(first?.wait() == 0)
        first = nil
        try f.sql("UPDATE \(ops) SET action = $1, notes = $2, updated_by = $3 WHERE \"externalId\" = 'xss-conflict'",
                  [Self.script, Self.image, Self.url])
        try f.mongoWrite { (client: MongoClient) throws(MongoError) in
            try client.updateOne(filter: ["externalId": .string("xss-conflict")],
                                 update: ["$set": .document(["action": .string(Self.url), "notes": .string(Self.script),
                                                             "updatedAt": .date(wallClockMillisecondsForTests() + 60_000)])],
                                 collection: "waiter_ops")
        }
        // A dead letter: an app wrote a document where NocoDB keeps text.
        let deadKey = "dead-" + Self.script
        try f.mongoWrite { (client: MongoClient) throws(MongoError) in
            try client.insertOne(["externalId": .string(deadKey), "action": .string(Self.image),
                                  "notes": .document(["html": .string(Self.script), "link": .string(Self.url)])],
                                 collection: "waiter_ops")
        }
        let bridge = try BridgeProcess(environment: env)
        _ = bridge
        try eventually("conflict recorded", seconds: 30) { try f.sql("SELECT count(*) FROM nocobridge.conflicts").rows[0][0] == "1" }
        try eventually("dead letter recorded", seconds: 30) { try f.sql("SELECT count(*) FROM nocobridge.dead_letters").rows[0][0] == "1" }
        // The app fixes its document; the dead letter stays until someone retries it.
        try f.mongoWrite { (client: MongoClient) throws(MongoError) in
            try client.updateOne(filter: ["externalId": .string(deadKey)], update: ["$set": .document(["notes": .string("fixed")])],
                                 collection: "waiter_ops")
        }
        try eventually("fixed record crossed", seconds: 30) {
            try f.sql("SELECT notes FROM \(ops) WHERE \"externalId\" = $1", [deadKey]).rows.first?[0] == "fixed"
        }
        // Some traffic for the charts.
        for i in 0..<8 {
            try f.sql("INSERT INTO \(ops) (action, notes) SELECT 'order ' || g, 'load \(i)' FROM generate_series(1, \(20 + 15 * i)) g")
            usleep(400_000)
        }

        let shots = try screenshotDirectory()
        let browser = try HeadlessChromium()
        let base = "http://127.0.0.1:\(port)"
        try browser.navigate(base + "/")
        try browser.waitFor("!document.getElementById('login').hidden")
        try browser.type(token, into: "#token")
        try browser.click("#sign-in")

        // Overview: every table and direction, this instance leading, samples charted.
        try browser.waitFor("document.querySelectorAll('#overview-table tbody tr').length === \(2 * BridgeFixture.tables.count)")
        try browser.waitFor("document.getElementById('role').textContent === 'leader'")
        try browser.waitFor("document.querySelectorAll('#chart-throughput polyline').length > 0", seconds: 30)
        // The only bridge holds every table's lease: each row names it as this instance, and the
        // instance list shows it with every unit.
        try browser.waitFor("""
            [...document.querySelectorAll('#overview-table tbody tr')].every(r => r.cells[2].textContent.endsWith(' (this)'))
            """)
        let figures = try browser.evaluate("[...document.querySelectorAll('#summary .figure')].map(f => f.textContent)") as? [String] ?? []
        #expect(figures.contains { $0.hasPrefix("This instance") && $0.hasSuffix("(\(BridgeFixture.tables.count) leases)") }, "\(figures)")
        #expect(figures.contains { $0.hasPrefix("Instances") && $0.hasSuffix(" \(BridgeFixture.tables.count)") }, "\(figures)")
        let footer = try browser.evaluate("document.getElementById('version').textContent") as? String
        #expect(footer?.contains("NocoBridge 0.") == true)
        try browser.screenshot(to: shots.appendingPathComponent("console-overview.png"))

        // Conflict: both versions side by side, the differing fields marked, hostile values as text.
        try browser.click("button[data-tab=conflicts]")
        try browser.waitFor("document.querySelectorAll('article.conflict').length === 1")
        let conflict = try #require(try browser.evaluate("""
            (() => { const a = document.querySelector('article.conflict');
                     return { text: a.textContent, differs: [...a.querySelectorAll('tr.differs th.field')].map(e => e.textContent),
                              winner: a.querySelector('th.winner') ? a.querySelector('th.winner').textContent : null,
                              cells: [...a.querySelectorAll('tr.differs td.value')].map(e => e.textContent) }; })()
            """) as? [String: Any])
        #expect(Set(conflict["differs"] as? [String] ?? []) == ["action", "notes"])
        #expect((conflict["winner"] as? String)?.hasPrefix("NocoDB") == true)
        #expect(Set(conflict["cells"] as? [String] ?? []) == [Self.script, Self.image, Self.url])
        try browser.screenshot(to: shots.appendingPathComponent("console-conflict.png"))

        // Dead letter: error, field and payload shown as text; a real click on Retry resolves it.
        try browser.click("button[data-tab=dead-letters]")
        try browser.waitFor("document.querySelectorAll('tr.dead-letter').length === 1")
        _ = try browser.evaluate("document.querySelector('tr.payload-row details').open = true")
        let row = try #require(try browser.evaluate("""
            (() => { const r = document.querySelector('tr.dead-letter');
                     return { key: r.querySelector('td.key').textContent, payload: document.querySelector('tr.payload-row pre.payload').textContent,
                              text: r.textContent }; })()
            """) as? [String: Any])
        #expect(row["key"] as? String == deadKey)
        let payload = row["payload"] as? String ?? ""
        #expect(payload.contains("onerror=\\\"window.__pwned=1\\\"") && payload.contains("<script>") && payload.contains(Self.url))
        #expect((row["text"] as? String)?.contains("notes") == true)
        try browser.screenshot(to: shots.appendingPathComponent("console-dead-letter.png"))
        try browser.click("tr.dead-letter button.retry")
        try browser.waitFor("document.getElementById('message').textContent.includes('resolved 1, still failing 0')")
        try browser.waitFor("document.querySelectorAll('tr.dead-letter').length === 0")
        #expect(try f.sql("SELECT count(*) FROM nocobridge.dead_letters").rows[0][0] == "0")

        // History of the conflicted record: NocoDB's editor and the decision, as text.
        try browser.click("button[data-tab=history]")
        try browser.type("xss-conflict", into: "#history-key")
        try browser.click("#history-search")
        try browser.waitFor("""
            (() => { const keys = [...document.querySelectorAll('tr.history-entry .key')].map(e => e.textContent);
                     return keys.length >= 2 && keys.every(k => k === 'xss-conflict'); })()
            """)
        let history = try browser.evaluate("document.getElementById('history-list').textContent") as? String ?? ""
        #expect(history.contains(Self.url) && history.contains("source_priority") && history.contains(Self.script))
        try browser.screenshot(to: shots.appendingPathComponent("console-history.png"))

        // Resync from the console, with its progress.
        try browser.click("button[data-tab=resync]")
        try browser.waitFor("!document.getElementById('resync-start').disabled")
        try browser.click("#resync-start")
        try browser.waitFor("document.getElementById('resync-console').textContent.includes('last run from this console')", seconds: 60)
        try browser.waitFor("document.querySelectorAll('#resync-table tbody tr').length === \(BridgeFixture.tables.count)")
        try browser.screenshot(to: shots.appendingPathComponent("console-resync.png"))

        // Nothing injected ran, nothing was even attempted (no policy violation), no script error.
        #expect(try browser.evaluate("typeof window.__pwned") as? String == "undefined")
        let violations = try browser.evaluate("window.__cspViolations") as? [String]
        #expect(violations == [], "\(violations ?? [])")
        #expect(try browser.evaluate("document.images.length") as? Int == 0)
        #expect(try browser.evaluate("document.scripts.length") as? Int == 1)
        #expect(try browser.evaluate("document.querySelectorAll('[onerror],[onclick],a[href^=javascript]').length") as? Int == 0)
        browser.pump()
        #expect(browser.pageErrors.isEmpty, "\(browser.pageErrors)")

        // The detector itself: markup forced into the page is blocked by the policy, and seen.
        _ = try browser.evaluate("document.body.insertAdjacentHTML('beforeend', '<img src=x onerror=\"window.__pwned=1\">')")
        try browser.waitFor("window.__cspViolations.length > 0")
        #expect(try browser.evaluate("typeof window.__pwned") as? String == "undefined")
    }

    func screenshotDirectory() throws -> URL {
        let dir = URL(fileURLWithPath: ProcessInfo.processInfo.environment["NB_SCREENSHOT_DIR"]
                      ?? FileManager.default.temporaryDirectory.appendingPathComponent("nocobridge-console-\(randomSuffix())").path)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}
