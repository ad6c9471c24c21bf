import Foundation

/// Drives a real headless Chromium over the DevTools protocol through
/// `--remote-debugging-pipe` (requests on fd 3, answers and events on fd 4, each message
/// NUL-terminated JSON): no debugging port, no WebSocket library, nothing but the browser.
/// Debian's `chromium` package provides it (Scripts/lib.sh installs it).
final class HeadlessChromium: @unchecked Sendable {
    // @unchecked: used from the one test thread that created it.
    let pid: pid_t
    private let toBrowser: Int32
    private let fromBrowser: Int32
    private var buffer: [UInt8] = []
    private var nextID = 0
    private var session: String?
    let profile: URL
    let log: String
    /// Every event received, in order (method, params).
    private(set) var events: [(method: String, params: [String: Any])] = []

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    static func executable() -> String? {
        let env = ProcessInfo.processInfo.environment
        if let path = env["CHROMIUM_BIN"], FileManager.default.isExecutableFile(atPath: path) { return path }
        for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
            where FileManager.default.isExecutableFile(atPath: path) { return path }
        return nil
    }

    init(width: Int = 1400, height: Int = 1000) throws {
        guard let binary = Self.executable() else {
            throw Failure("chromium is not installed (apt-get install chromium; Scripts/lib.sh does it)")
        }
        profile = FileManager.default.temporaryDirectory.appendingPathComponent("nb-chromium-\(randomSuffix())")
        try FileManager.default.createDirectory(at: profile, withIntermediateDirectories: true)
        log = profile.appendingPathComponent("chromium.log").path
        var input: [Int32] = [0, 0], output: [Int32] = [0, 0]
        guard pipe(&input) == 0, pipe(&output) == 0 else { throw Failure("pipe failed") }
        // Only the copies on fds 3 and 4 may reach the browser (dup2 clears close-on-exec).
        for fd in input + output { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let logFD = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        defer { close(logFD); close(input[0]); close(output[1]) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, logFD, 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        posix_spawn_file_actions_adddup2(&actions, input[0], 3)
        posix_spawn_file_actions_adddup2(&actions, output[1], 4)
        let arguments = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--remote-debugging-pipe", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-default-apps", "--mute-audio", "--hide-scrollbars", "--window-size=\(width),\(height)",
                         "--user-data-dir=\(profile.path)", "about:blank"]
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, binary, &actions, nil, argv, envp)
        guard rc == 0 else { throw Failure("cannot start \(binary): \(String(cString: strerror(rc)))") }
        pid = child
        toBrowser = input[1]
        fromBrowser = output[0]
        let target = try call("Target.createTarget", ["url": "about:blank"])
        guard let targetID = target["targetId"] as? String else { throw Failure("no target: \(target)") }
        let attached = try call("Target.attachToTarget", ["targetId": targetID, "flatten": true])
        session = attached["sessionId"] as? String
        guard session != nil else { throw Failure("not attached: \(attached)") }
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] { _ = try call(domain) }
        _ = try call("Emulation.setDeviceMetricsOverride", ["width": width, "height": height, "deviceScaleFactor": 1, "mobile": false])
        // Injected by the debugger, so no page policy applies to it: records every CSP
        // violation the page causes, whatever tried it.
        _ = try call("Page.addScriptToEvaluateOnNewDocument", ["source": """
            window.__cspViolations = [];
            document.addEventListener('securitypolicyviolation', e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || '')));
            """])
    }

    deinit {
        close(toBrowser)
        close(fromBrowser)
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if ProcessInfo.processInfo.environment["NB_KEEP_LOGS"] == nil { try? FileManager.default.removeItem(at: profile) }
    }

    // MARK: Protocol

    /// Sends a command (to the page's session unless `browser`) and waits for its answer.
    @discardableResult
    func call(_ method: String, _ params: [String: Any] = [:], browser: Bool = false, timeout: Double = 30) throws -> [String: Any] {
        nextID += 1
        let id = nextID
        var message: [String: Any] = ["id": id, "method": method, "params": params]
        if !browser, let session { message["sessionId"] = session }
        var bytes = [UInt8](try JSONSerialization.data(withJSONObject: message))
        bytes.append(0)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(toBrowser, $0.baseAddress, $0.count) }
            guard n > 0 else { throw Failure("write to chromium failed: \(String(cString: strerror(errno)))") }
            offset += n
        }
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let m = try receive(until: deadline)
            if let got = m["id"] as? Int, got == id {
                if let error = m["error"] as? [String: Any] { throw Failure("\(method): \(error)") }
                return m["result"] as? [String: Any] ?? [:]
            }
        }
    }

    /// Reads one message, recording events on the way.
    private func receive(until deadline: Date) throws -> [String: Any] {
        while true {
            if let end = buffer.firstIndex(of: 0) {
                let data = Data(buffer[..<end])
                buffer.removeSubrange(...end)
                guard let m = try JSONSerialization.jsonObject(with: data) as? [String: Any] else { continue }
                if let method = m["method"] as? String { events.append((method, m["params"] as? [String: Any] ?? [:])) }
                return m
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { throw Failure("no answer from chromium in time; log: \(log)") }
            var fd = pollfd(fd: fromBrowser, events: Int16(POLLIN), revents: 0)
            guard poll(&fd, 1, Int32(min(remaining, 1) * 1000)) >= 0 else { continue }
            guard fd.revents != 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let n = read(fromBrowser, &chunk, chunk.count)
            guard n > 0 else { throw Failure("chromium closed the pipe; log: \((try? String(contentsOfFile: log, encoding: .utf8))?.suffix(2000) ?? "")") }
            buffer += chunk[..<n]
        }
    }

    /// Takes in whatever events have arrived meanwhile.
    func pump(seconds: Double = 0.05) {
        let deadline = Date().addingTimeInterval(seconds)
        while (try? receive(until: deadline)) != nil {}
    }

    // MARK: Page

    func navigate(_ url: String) throws {
        let loaded = events.count
        _ = try call("Page.navigate", ["url": url])
        try wait("page load of \(url)") { self.events[loaded...].contains { $0.method == "Page.loadEventFired" } }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its JSON value.
    func evaluate(_ expression: String) throws -> Any? {
        let r = try call("Runtime.evaluate", ["expression": expression, "returnByValue": true, "awaitPromise": true])
        if let exception = r["exceptionDetails"] { throw Failure("evaluating \(expression): \(exception)") }
        return (r["result"] as? [String: Any])?["value"]
    }

    func wait(_ what: String, seconds: Double = 20, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return }
            pump(seconds: 0.1)
        }
        throw Failure("timed out after \(seconds) s waiting for \(what)")
    }

    /// Waits until `expression` is true in the page.
    func waitFor(_ expression: String, seconds: Double = 20) throws {
        try wait(expression, seconds: seconds) { (try evaluate("Boolean(\(expression))") as? Bool) == true }
    }

    /// A real click: mouse pressed and released at the middle of the element `selector` finds.
    func click(_ selector: String) throws {
        let box = try evaluate("""
            (() => { const e = document.querySelector(\(Self.jsString(selector))); if (!e) return null;
                     e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();
                     return [r.left + r.width / 2, r.top + r.height / 2]; })()
            """) as? [Double]
        guard let box, box.count == 2 else { throw Failure("no element \(selector) to click") }
        for type in ["mousePressed", "mouseReleased"] {
            _ = try call("Input.dispatchMouseEvent", ["type": type, "x": box[0], "y": box[1], "button": "left", "clickCount": 1])
        }
    }

    /// Types into the element `selector` finds, as a keyboard would.
    func type(_ text: String, into selector: String) throws {
        _ = try evaluate("document.querySelector(\(Self.jsString(selector))).focus()")
        _ = try call("Input.insertText", ["text": text])
    }

    func screenshot(to url: URL) throws {
        let r = try call("Page.captureScreenshot", ["format": "png"])
        guard let base64 = r["data"] as? String, let data = Data(base64Encoded: base64) else { throw Failure("no screenshot") }
        try data.write(to: url)
    }

    /// Exceptions thrown by the page's scripts, and console errors, so far.
    var pageErrors: [String] {
        events.compactMap { e in
            switch e.method {
            case "Runtime.exceptionThrown": return "\(e.params["exceptionDetails"] ?? e.params)"
            case "Runtime.consoleAPICalled" where (e.params["type"] as? String) == "error": return "\(e.params["args"] ?? "")"
            case "Log.entryAdded":
                let entry = e.params["entry"] as? [String: Any]
                return (entry?["level"] as? String) == "error" ? "\(entry?["text"] ?? "")" : nil
            default: return nil
            }
        }
    }

    static func jsString(_ s: String) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: [s]), as: UTF8.self).dropFirst().dropLast().description
    }
}
