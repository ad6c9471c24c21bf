import Foundation
import SyncCore

/// What the bridge needs to know about the MongoDB server before relying on features or
/// clocks: the version (pre-/post-images, `wallTime` in events need 6.0), whether it is a
/// `mongos` (change streams and `currentOp` differ behind one), the replica set, and how far
/// the server's clock is from ours (`updatedAt` comparisons across the two sides).
public struct ServerInfo: Sendable, Equatable {
    public let version: ServerVersion
    /// `hello.msg == "isdbgrid"`: the server is a sharded cluster's router.
    public let isMongos: Bool
    /// `hello.setName`; nil for a standalone or a mongos.
    public let setName: String?
    /// nil when `hello` carried no `localTime`.
    public let clockOffset: ClockOffset?

    public init(version: ServerVersion, isMongos: Bool, setName: String?, clockOffset: ClockOffset?) {
        self.version = version
        self.isMongos = isMongos
        self.setName = setName
        self.clockOffset = clockOffset
    }

    /// Reads the replies of `buildInfo` and of a `hello` sent at `sentAt` and answered at
    /// `receivedAt` (local wall clock, ms since the epoch).
    public init(buildInfo: Document, hello: Document, sentAt: Int64, receivedAt: Int64) {
        version = ServerVersion(versionArray: buildInfo["versionArray"]) ?? ServerVersion(string: buildInfo["version"]) ?? ServerVersion([0])
        if case .string(let msg)? = hello["msg"] { isMongos = msg == "isdbgrid" } else { isMongos = false }
        if case .string(let name)? = hello["setName"] { setName = name } else { setName = nil }
        if case .date(let serverTime)? = hello["localTime"] {
            clockOffset = ClockOffset.estimate(serverTime: serverTime, sentAt: sentAt, receivedAt: receivedAt)
        } else {
            clockOffset = nil
        }
    }

    static func wallClockMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// A MongoDB version as `buildInfo.versionArray` gives it (`[8, 2, 11, 0]`; a release
/// candidate has a negative last part), compared part by part.
public struct ServerVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let components: [Int]

    public init(_ components: [Int]) {
        self.components = components
    }

    public init?(versionArray: Value?) {
        guard case .array(let items)? = versionArray, !items.isEmpty else { return nil }
        var parts: [Int] = []
        for item in items {
            switch item {
            case .int32(let i): parts.append(Int(i))
            case .int64(let i): parts.append(Int(i))
            case .double(let d) where d == d.rounded(): parts.append(Int(d))
            default: return nil
            }
        }
        components = parts
    }

    /// `"6.0.3"`, `"7.0.0-rc1"` (the suffix is ignored).
    public init?(string: Value?) {
        guard case .string(let text)? = string else { return nil }
        let numeric = text.prefix { $0.isNumber || $0 == "." }
        let parts = numeric.split(separator: ".").compactMap { Int($0) }
        guard !parts.isEmpty else { return nil }
        components = parts
    }

    public static func < (a: ServerVersion, b: ServerVersion) -> Bool {
        let n = max(a.components.count, b.components.count)
        for i in 0..<n {
            let x = i < a.components.count ? a.components[i] : 0
            let y = i < b.components.count ? b.components[i] : 0
            if x != y { return x < y }
        }
        return false
    }

    public static func == (a: ServerVersion, b: ServerVersion) -> Bool { !(a < b) && !(b < a) }

    public func hash(into hasher: inout Hasher) {
        var trimmed = components
        while trimmed.last == 0 { trimmed.removeLast() }
        hasher.combine(trimmed)
    }

    public func isAtLeast(_ major: Int, _ minor: Int = 0, _ patch: Int = 0) -> Bool {
        self >= ServerVersion([major, minor, patch])
    }

    /// MongoDB 6.0 brought change stream pre-/post-images (`fullDocumentBeforeChange`),
    /// `wallTime` in events and `showExpandedEvents`.
    public var hasChangeStreamImages: Bool { isAtLeast(6, 0) }

    public var description: String { components.map(String.init).joined(separator: ".") }
}

/// How far the server's clock is ahead of ours: `milliseconds` ± `uncertaintyMilliseconds`.
public struct ClockOffset: Sendable, Equatable {
    /// Server clock minus local clock (positive: the server is ahead).
    public let milliseconds: Int64
    /// The true offset lies within `milliseconds` ± this.
    public let uncertaintyMilliseconds: Int64

    public init(milliseconds: Int64, uncertaintyMilliseconds: Int64) {
        self.milliseconds = milliseconds
        self.uncertaintyMilliseconds = uncertaintyMilliseconds
    }

    /// The server read its clock (`serverTime`) somewhere between our `sentAt` and
    /// `receivedAt`; assuming the midpoint is off by at most half the round trip, plus 1 ms
    /// because `localTime` is truncated to milliseconds.
    public static func estimate(serverTime: Int64, sentAt: Int64, receivedAt: Int64) -> ClockOffset {
        let roundTrip = max(0, receivedAt - sentAt)
        let midpoint = sentAt + roundTrip / 2
        return ClockOffset(milliseconds: serverTime - midpoint, uncertaintyMilliseconds: (roundTrip + 1) / 2 + 1)
    }
}
