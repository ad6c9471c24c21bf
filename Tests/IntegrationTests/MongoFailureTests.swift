import Foundation
@testable import Mongo
import SyncCore
import Testing

extension MongoFailureTests {
    /// The MongoDB layer's pure rules: error classification, identity, `currentOp` reading,
    /// versions and clocks, bulk splitting. No server.
    @Suite struct Rules {
        static let historyLostCodes: [Int32] = [286, 280, 260, 136, 9, 40647, 40649, 50795, 50854]

        @Test(arguments: historyLostCodes)
        func historyLostCodesCountOnlyFromTheServer(code: Int32) {
            #expect(MongoError.isHistoryLost(domain: MongoErrorDomain.server, code: code, labels: []))
            #expect(MongoError.isHistoryLost(domain: MongoErrorDomain.query, code: code, labels: []))
            // The same numbers from libmongoc itself mean something else (client code 9, say).
            for domain in [MongoErrorDomain.client, MongoErrorDomain.stream, MongoErrorDomain.command,
                           MongoErrorDomain.serverSelection, MongoErrorDomain.writeConcern, MongoErrorDomain.none] {
                #expect(!MongoError.isHistoryLost(domain: domain, code: code, labels: []), "domain \(domain)")
            }
        }

        @Test func transientAndOtherErrorsAreNotHistoryLost() {
            // Resumable or unrelated server codes: network-ish, CursorNotFound, interrupted, internal.
            for code: Int32 in [6, 7, 43, 89, 91, 189, 11601, 11602, 2, 1, 0, 26, 10334] {
                #expect(!MongoError.isHistoryLost(domain: MongoErrorDomain.server, code: code, labels: []), "code \(code)")
                #expect(!MongoError.isHistoryLost(domain: MongoErrorDomain.server, code: code, labels: ["ResumableChangeStreamError"]))
            }
            #expect(!MongoError.isHistoryLost(domain: MongoErrorDomain.stream, code: 4, labels: ["RetryableWriteError"]))
        }

        @Test func theNonResumableLabelIsHistoryLostWhateverTheCode() {
            #expect(MongoError.isHistoryLost(domain: MongoErrorDomain.server, code: 1234, labels: ["NonResumableChangeStreamError"]))
            let error = MongoError(kind: .server, domain: MongoErrorDomain.server, code: 0, errorLabels: ["NonResumableChangeStreamError"], message: "m")
            #expect(error.isHistoryLost)
            #expect(MongoError(kind: .server, domain: MongoErrorDomain.server, code: 286, message: "lost").isHistoryLost)
            #expect(!MongoError(kind: .server, code: 286, message: "made here, not by a server").isHistoryLost)
        }

        @Test func domainsAreLibmongocs() {
            // mongoc-error.h numbers the research note and the classification rely on.
            #expect([MongoErrorDomain.client, MongoErrorDomain.stream, MongoErrorDomain.query, MongoErrorDomain.command,
                     MongoErrorDomain.serverSelection, MongoErrorDomain.writeConcern, MongoErrorDomain.server] == [1, 2, 5, 11, 15, 16, 17])
        }

        @Test func identityEndsEveryAppName() throws {
            #expect(MongoIdentity.identity(instance: "k3x") == "nocobridge/k3x")
            #expect(MongoIdentity.identity(instance: nil) == "nocobridge")
            let id = "nocobridge/k3x"
            #expect(MongoIdentity.appName(urlAppName: nil, identity: id) == id)
            #expect(MongoIdentity.appName(urlAppName: "", identity: id) == id)
            #expect(MongoIdentity.appName(urlAppName: "kitchen", identity: id) == "kitchen nocobridge/k3x")
            #expect(MongoIdentity.appName(urlAppName: "kitchen nocobridge/k3x", identity: id) == "kitchen nocobridge/k3x")
            let long = try #require(MongoIdentity.appName(urlAppName: String(repeating: "é", count: 100), identity: id))
            #expect(long.utf8.count <= 128 && long.hasSuffix(" " + id))
            #expect(MongoIdentity.appName(urlAppName: "x", identity: "nocobridge/" + String(repeating: "z", count: 120)) == nil)
            #expect(MongoIdentity.belongs(appName: "kitchen nocobridge/k3x", to: id))
            #expect(!MongoIdentity.belongs(appName: "kitchen nocobridge/k3xy", to: id))
            #expect(!MongoIdentity.belongs(appName: "kitchen nocobridge/ak3x", to: id))
            #expect(!MongoIdentity.belongs(appName: "kitchen", to: id))
        }

        /// mongod: one entry per running operation, `command.comment` set for our writes (an
        /// update or delete statement shows as `{q, u, comment}` with `op` update/remove).
        @Test func runningWritesOnMongodAreFoundByComment() {
            let a = "nocobridge/a1", b = "nocobridge/b2"
            let ops: [Document] = [
                ["active": .bool(true), "op": .string("update"), "ns": .string("r.orders"), "appName": .string("kitchen"),
                 "command": .document(["q": .document(["_id": .int32(1)]), "u": .document([:]), "comment": .string(a)])],
                ["active": .bool(true), "op": .string("insert"), "command": .document(["insert": .string("orders"), "comment": .string(a)])],
                ["active": .bool(true), "op": .string("remove"), "command": .document(["q": .document([:]), "limit": .int32(1), "comment": .string(a)])],
                // Reads carrying the same comment are not writes.
                ["active": .bool(true), "op": .string("getmore"), "command": .document(["getMore": .int64(7), "comment": .string(a)])],
                ["active": .bool(true), "op": .string("query"), "command": .document(["find": .string("orders"), "comment": .string(a)])],
                // A command only our writes would carry our comment on.
                ["active": .bool(true), "op": .string("command"), "command": .document(["findAndModify": .string("orders"), "comment": .string(a)])],
                // Finished, or another process's.
                ["active": .bool(false), "op": .string("update"), "command": .document(["q": .document([:]), "comment": .string(a)])],
                ["active": .bool(true), "op": .string("update"), "command": .document(["q": .document([:]), "comment": .string(b)])],
                ["active": .bool(true), "op": .string("insert"), "command": .document(["insert": .string("orders")])],
            ]
            #expect(RunningOperations.writes(in: ops, identity: a) == 4)
            #expect(RunningOperations.writes(in: ops, identity: b) == 1)
            #expect(RunningOperations.writes(in: ops, identity: "nocobridge/c3") == 0)
        }

        /// SecantusDB: one entry per connection with its last command's name, named only by
        /// `clientMetadata.application.name` (research note C).
        @Test func runningWritesOnSecantusAreFoundByAppName() {
            func entry(_ op: String, app: String, active: Bool = true) -> Document {
                ["active": .bool(active), "op": .string(op), "ns": .string(""), "command": .document(Document([(key: op, value: .int32(1))])),
                 "clientMetadata": .document(["application": .document(["name": .string(app)])])]
            }
            let a = "nocobridge/a1"
            let ops: [Document] = [
                entry("update", app: "kitchen nocobridge/a1"),
                entry("delete", app: "nocobridge/a1"),
                entry("hello", app: "kitchen nocobridge/a1"),
                entry("insert", app: "kitchen nocobridge/a1", active: false),
                entry("insert", app: "kitchen nocobridge/b2"),
                entry("insert", app: "kitchen"),
                ["active": .bool(false), "op": .string("command"), "command": .document(["aggregate": .int32(1), "pipeline": .array([])]),
                 "clientMetadata": .document(["application": .document(["name": .string("nocobridge/a1")])])],
            ]
            #expect(RunningOperations.writes(in: ops, identity: a) == 2)
            #expect(RunningOperations.writes(in: ops, identity: "nocobridge/b2") == 1)
        }

        @Test func versionsCompareByPart() throws {
            let secantus = try #require(ServerVersion(versionArray: .array([.int32(8), .int32(2), .int32(11), .int32(0)])))
            #expect(secantus.description == "8.2.11.0" && secantus.isAtLeast(6, 0) && secantus.hasChangeStreamImages)
            let five = try #require(ServerVersion(versionArray: .array([.int32(5), .int32(0), .int32(24), .int32(0)])))
            #expect(!five.isAtLeast(6, 0) && !five.hasChangeStreamImages && five < secantus)
            let rc = try #require(ServerVersion(versionArray: .array([.int64(6), .int64(0), .int64(0), .int64(-50)])))
            #expect(rc < ServerVersion([6, 0, 0]) && !rc.hasChangeStreamImages)
            #expect(ServerVersion([6, 0, 0, 0]).hasChangeStreamImages && ServerVersion([6, 0]) == ServerVersion([6, 0, 0, 0]))
            #expect(ServerVersion(string: .string("7.0.2-rc1")) == ServerVersion([7, 0, 2]))
            #expect(ServerVersion([6, 0, 9]).isAtLeast(6, 0, 9) && !ServerVersion([6, 0, 8]).isAtLeast(6, 0, 9))
            #expect(ServerVersion(versionArray: .array([.string("x")])) == nil && ServerVersion(versionArray: nil) == nil)
        }

        @Test func clockOffsetIsTakenAtTheRoundTripsMidpoint() {
            #expect(ClockOffset.estimate(serverTime: 1505, sentAt: 1000, receivedAt: 1010) == ClockOffset(milliseconds: 500, uncertaintyMilliseconds: 6))
            #expect(ClockOffset.estimate(serverTime: 990, sentAt: 1000, receivedAt: 1011) == ClockOffset(milliseconds: -15, uncertaintyMilliseconds: 7))
            #expect(ClockOffset.estimate(serverTime: 1000, sentAt: 1000, receivedAt: 1000) == ClockOffset(milliseconds: 0, uncertaintyMilliseconds: 1))
            let mongos = ServerInfo(buildInfo: ["version": .string("7.0.4")],
                                    hello: ["msg": .string("isdbgrid"), "localTime": .date(2_000)], sentAt: 1_000, receivedAt: 1_002)
            #expect(mongos == ServerInfo(version: ServerVersion([7, 0, 4]), isMongos: true, setName: nil,
                                         clockOffset: ClockOffset(milliseconds: 999, uncertaintyMilliseconds: 2)))
        }

        /// The stream's server-side wait stays below the socket timeout, or an idle stream times
        /// out and resumes for ever inside one `next()` (research note B).
        @Test func maxAwaitStaysBelowTheSocketTimeout() {
            var o = ChangeStreamOptions()
            #expect(o.maxAwaitMilliseconds(socketTimeoutMS: 10_000) == 250)
            o.maxAwaitMilliseconds = 8_000
            #expect(o.maxAwaitMilliseconds(socketTimeoutMS: 10_000) == 5_000)
            o.maxAwaitMilliseconds = 3_000
            #expect(o.maxAwaitMilliseconds(socketTimeoutMS: 2_000) == 1_000)
            o.maxAwaitMilliseconds = 0
            #expect(o.maxAwaitMilliseconds(socketTimeoutMS: 2_000) == 1)
        }

        /// One libmongoc bulk must stay one server command: below 100,000 operations and far
        /// below 48 MB.
        @Test func bulksAreSplitByCountAndSize() throws {
            let small = try (0..<50_001).map { i throws(MongoError) in try PreparedWrite(index: i, write: .insertOne(["_id": .int32(Int32(i))])) }
            #expect(MongoClient.chunks(small).map(\.count) == [50_000, 1])
            let blob = String(repeating: "x", count: 7_000_000)
            let big = try (0..<3).map { i throws(MongoError) in try PreparedWrite(index: i, write: .insertOne(["_id": .int32(Int32(i)), "b": .string(blob)])) }
            let chunks = MongoClient.chunks(big)
            #expect(chunks.map(\.count) == [2, 1])
            #expect(chunks.flatMap { $0.map(\.index) } == [0, 1, 2])
            let whole = String(repeating: "y", count: 16 * 1024 * 1024 - 100)
            let alone = try [PreparedWrite(index: 0, write: .insertOne(["b": .string(blob)])),
                             PreparedWrite(index: 1, write: .insertOne(["b": .string(whole)]))]
            #expect(MongoClient.chunks(alone).map(\.count) == [1, 1])
        }
    }
}

/// The MongoDB driver layer against real failures, injected with `failCommand` on the shared
/// SecantusDB (started with `--enable-test-commands`; each failpoint is scoped to the test's
/// own pool by `appName`) or on a SecantusDB of the test's own. Serialized: SecantusDB holds
/// one failpoint at a time.
@Suite(.serialized) struct MongoFailureTests {
    /// Seeds `items` (validated: `n` ≤ 10) with `_id` 1…4, `n` = `_id`.
    func seeded(_ s: MongoScratch, _ pool: MongoClientPool) throws {
        try s.createValidated("items", on: pool)
        _ = try pool.bulk((1...4).map { .insertOne(numbered($0, n: $0)) }, "items")
    }

    /// A batch whose update is refused by the validator while its deletes fail outright.
    static let mixedBatch: [BulkWrite] = [setN(1, 50), .insertOne(numbered(10, n: 1)), setN(2, 5), deleteID(3), deleteID(4)]

    /// (a) Before the split, libmongoc reported only the update's 121 (as a write error at
    /// index 0) and the bridge took the deletes as done: `bulkWrite` returned normally with
    /// deleted 0.
    @Test func failedDeletesBesideAWriteErrorAreThrownNotReturned() throws {
        let s = try MongoScratch()
        // 189 marks the server "unknown" until the pool's monitor hears from it again, which
        // an injected error (no real step-down) delays to the next heartbeat: a short one lets
        // the retry happen (and fail, `times: 2`) instead of waiting out server selection.
        let pool = try s.pool(options: "heartbeatFrequencyMS=500")
        let check = try s.pool()
        try seeded(s, check)
        try FailPoint.failCommand(on: check, times: 2, appName: pool.appName,
                                  ["failCommands": .array([.string("delete")]), "errorCode": .int32(189)])
        defer { FailPoint.off(on: check) }
        let error = #expect(throws: MongoError.self) { try pool.bulk(Self.mixedBatch, "items") }
        #expect(error?.code == 189 && error?.domain == MongoErrorDomain.server)
        #expect(error?.hasLabel("RetryableWriteError") == true)

        #expect(try check.numbers("items") == [1: 1, 2: 5, 3: 3, 4: 4, 10: 1])
        // Retrying the batch as a whole finishes it; its writes are idempotent.
        let again = try check.bulk(Self.mixedBatch, "items")
        #expect(again.writeErrors.map(\.index) == [0, 1] && again.writeErrors.map(\.code) == [121, 11000])
        #expect(again.deleted == 2 && again.matched == 1)
        #expect(try check.numbers("items") == [1: 1, 2: 5, 10: 1])
    }

    /// (b) A delete whose connection closes twice (the retry too) never reached the server.
    @Test func deletesCutOffByTheNetworkAreThrown() throws {
        let s = try MongoScratch()
        let pool = try s.pool(options: "heartbeatFrequencyMS=500")
        let check = try s.pool()
        try seeded(s, check)
        try FailPoint.failCommand(on: check, times: 2, appName: pool.appName,
                                  ["failCommands": .array([.string("delete")]), "closeConnection": .bool(true)])
        defer { FailPoint.off(on: check) }
        let error = #expect(throws: MongoError.self) { try pool.bulk(Self.mixedBatch, "items") }
        #expect(error?.kind == .connection)
        #expect(error?.domain == MongoErrorDomain.stream || error?.domain == MongoErrorDomain.serverSelection)
        #expect(error?.hasLabel("RetryableWriteError") == true)
        #expect(try check.numbers("items") == [1: 1, 2: 5, 3: 3, 4: 4, 10: 1])
    }

    /// (c) A writeConcernError means "applied, but not acknowledged as asked": thrown, alone
    /// and beside a write error (which used to hide it).
    @Test func writeConcernErrorIsThrownAlthoughTheWriteIsApplied() throws {
        let s = try MongoScratch()
        let pool = try s.pool()
        try seeded(s, pool)
        let concern: Document = ["failCommands": .array([.string("update")]),
                                 "writeConcernError": .document(["code": .int32(64), "codeName": .string("WriteConcernFailed"),
                                                                 "errmsg": .string("waiting for replication timed out"),
                                                                 "errInfo": .document(["wtimeout": .bool(true)])])]
        defer { FailPoint.off(on: pool) }

        try FailPoint.failCommand(on: pool, times: 1, appName: pool.appName, concern)
        let alone = #expect(throws: MongoError.self) {
            try pool.bulk([setN(2, 6), .insertOne(numbered(10, n: 1))], "items", writeConcern: .majority(wtimeoutMS: 1000))
        }
        #expect(alone?.domain == MongoErrorDomain.writeConcern && alone?.code == 64)

        try FailPoint.failCommand(on: pool, times: 1, appName: pool.appName, concern)
        let beside = #expect(throws: MongoError.self) { try pool.bulk([setN(1, 50), setN(3, 7)], "items") }
        #expect(beside?.domain == MongoErrorDomain.writeConcern && beside?.code == 64)
        #expect(try pool.numbers("items") == [1: 1, 2: 6, 3: 7, 4: 4, 10: 1])
    }

    /// (d) Refused writes alone are per-write results at their index in the caller's array,
    /// with every other write applied and counted by kind.
    @Test func writeErrorsAloneAreReturnedAtTheirOriginalIndex() throws {
        let s = try MongoScratch()
        let pool = try s.pool()
        try seeded(s, pool)
        let tooLarge: Document = ["_id": .int32(99), "n": .int32(1), "blob": .string(String(repeating: "x", count: 17 * 1024 * 1024))]
        let writes: [BulkWrite] = [
            .insertOne(tooLarge),                 // 0: over 16 MiB, never sent
            .insertOne(numbered(1, n: 1)),        // 1: duplicate key
            setN(2, 8),                           // 2
            setN(3, 99),                          // 3: validator
            deleteID(4),                          // 4
            setN(404, 1),                         // 5: matches nothing
            deleteID(405),                        // 6: matches nothing
            .replaceOne(filter: ["_id": .int32(500)], replacement: ["n": .int32(3)], upsert: true),  // 7: upserts
            .insertOne(numbered(11, n: 2)),       // 8
        ]
        let r = try pool.bulk(writes, "items")
        #expect(r.writeErrors.map(\.index) == [0, 1, 3])
        #expect(r.writeErrors.map(\.code) == [10334, 11000, 121])
        #expect(r.inserted == 1 && r.matched == 1 && r.modified == 1 && r.upserted == 1 && r.deleted == 1)
        #expect(r.inserts == .init(operations: 3, failed: 2))
        #expect(r.updates == .init(operations: 4, failed: 1))
        #expect(r.deletes == .init(operations: 2, failed: 0))
        #expect(r.updatesMatchingNothing == 1 && r.deletesMatchingNothing == 1)
        #expect(r.upsertedIDs.map(\.index) == [7] && r.upsertedIDs.map(\.id) == [.int32(500)])
        #expect(try pool.numbers("items") == [1: 1, 2: 8, 3: 3, 11: 2, 500: 3])
    }

    /// Every write command names its process (`comment`) and carries the write concern asked
    /// for, and a majority read asks for it: read back from the server's profiler.
    @Test func writesCarryTheIdentityAsComment() throws {
        let s = try MongoScratch()
        let pool = try s.pool()
        try seeded(s, pool)
        _ = try pool.command(["profile": .int32(2)])
        defer { _ = try? pool.command(["profile": .int32(0)]) }
        _ = try pool.bulk([.insertOne(numbered(20, n: 1)), setN(2, 3), deleteID(4)], "items", writeConcern: .majority(wtimeoutMS: 2000))
        _ = try pool.documents("items", ["_id": .int32(2)], readConcern: .majority)
        let profile = try pool.documents("system.profile")
        let commands = profile.compactMap { if case .document(let c)? = $0["command"] { c } else { nil } }
        let writes = commands.filter { c in ["insert", "update", "delete"].contains { c[$0] == .string("items") } }
        #expect(writes.count == 3)
        #expect(writes.allSatisfy { $0["comment"] == .string(pool.identity) })
        #expect(writes.allSatisfy { w in
            guard case .document(let concern)? = w["writeConcern"] else { return false }
            return concern["w"] == .string("majority") && MongoClient.int(concern["wtimeout"]) == 2000
        })
        let find = commands.first { $0["find"] == .string("items") }
        #expect(find?["readConcern"] == .document(["level": .string("majority")]))
    }

    /// Writes that name no concern are acknowledged by a majority (a write the old primary
    /// alone acknowledged can be rolled back after the bridge recorded it as agreed), with a
    /// `wtimeout` under the socket timeout; a `w` in the URL is the operator's choice and stands.
    @Test func writesDefaultToMajorityUnlessTheURLSaysOtherwise() throws {
        let s = try MongoScratch()
        let byDefault = try s.pool(socketTimeoutMS: 10_000)
        let chosen = try s.pool(options: "w=1")
        #expect(byDefault.defaultWriteConcern != nil)
        #expect(chosen.defaultWriteConcern == nil)
        _ = try byDefault.command(["profile": .int32(2)])
        defer { _ = try? byDefault.command(["profile": .int32(0)]) }
        _ = try byDefault.bulk([.insertOne(numbered(1, n: 1))], "items")
        _ = try chosen.bulk([.insertOne(numbered(2, n: 1))], "items")
        let profile = try byDefault.documents("system.profile")
        let inserts = profile.compactMap { p -> Document? in
            guard case .document(let c)? = p["command"], c["insert"] == .string("items") else { return nil }
            return c
        }
        func concern(of identity: String) -> Document? {
            let command = inserts.first { $0["comment"] == .string(identity) }
            guard case .document(let concern)? = command?["writeConcern"] else { return nil }
            return concern
        }
        #expect(inserts.count == 2)
        #expect(concern(of: byDefault.identity)?["w"] == .string("majority"))
        #expect(MongoClient.int(concern(of: byDefault.identity)?["wtimeout"]) == 8_000)
        #expect(concern(of: chosen.identity)?["w"] != .string("majority"))
    }

    /// (e) Two processes share a URL that sets `appName`; the identity each adds keeps them
    /// apart. Before, the URL's name replaced the instance name, so neither could be found.
    @Test func runningWritesTellsInstancesApartDespiteTheURLsAppName() throws {
        let s = try MongoScratch()
        let a = try s.pool(instance: "a" + randomSuffix(6), options: "appName=kitchen-monitor")
        let b = try s.pool(instance: "b" + randomSuffix(6), options: "appName=kitchen-monitor")
        let observer = try s.pool(options: "appName=kitchen-monitor")
        #expect(a.appName == "kitchen-monitor " + a.identity && b.appName == "kitchen-monitor " + b.identity)
        try b.ping()
        try FailPoint.failCommand(on: observer, times: 1, appName: a.appName,
                                  ["failCommands": .array([.string("insert")]), "blockConnection": .bool(true), "blockTimeMS": .int32(3000)])
        defer { FailPoint.off(on: observer) }
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = try? a.bulk([.insertOne(numbered(1, n: 1))], "items")
            done.signal()
        }
        try eventually("a's blocked insert is listed", seconds: 2.5) { try observer.runningWrites(of: a.identity) == 1 }
        #expect(try observer.runningWrites(of: b.identity) == 0)
        #expect(try observer.runningWrites(of: observer.identity) == 0)
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(try observer.numbers("items") == [1: 1])
    }

    /// Without the `inprog` privilege `currentOp` answers 13; `$currentOp` (own operations)
    /// is used instead. Any other failure is the caller's to see.
    @Test func runningWritesFallsBackToDollarCurrentOpWithoutInprog() throws {
        let s = try MongoScratch()
        let observer = try s.pool()
        defer { FailPoint.off(on: observer) }
        try FailPoint.failCommand(on: observer, times: 2, appName: observer.appName,
                                  ["failCommands": .array([.string("currentOp")]), "errorCode": .int32(13)])
        let refused = #expect(throws: MongoError.self) { try observer.command(["currentOp": .int32(1)], database: "admin") }
        #expect(refused?.code == 13)
        #expect(try observer.runningWrites(of: "nocobridge/someone") == 0)
        try FailPoint.failCommand(on: observer, times: 1, appName: observer.appName,
                                  ["failCommands": .array([.string("currentOp")]), "errorCode": .int32(2)])
        let other = #expect(throws: MongoError.self) { try observer.runningWrites(of: "nocobridge/someone") }
        #expect(other?.code == 2)
    }

    /// (f) A server that stops answering is noticed within the socket timeout (twice: the
    /// read is retried once on a new connection), not libmongoc's 5 minutes.
    @Test func findAgainstAFrozenServerFailsWithinTwoSocketTimeouts() throws {
        let server = try OwnSecantus()
        let s = try MongoScratch(url: server.url)
        let pool = try s.pool(socketTimeoutMS: 1000)
        #expect(pool.socketTimeoutMS == 1000)
        _ = try pool.bulk([.insertOne(numbered(1, n: 1))], "items")
        #expect(try pool.numbers("items") == [1: 1])
        server.freeze()
        let start = Date()
        let error = #expect(throws: MongoError.self) { try pool.documents("items") }
        let elapsed = Date().timeIntervalSince(start)
        server.thaw()
        #expect(error?.kind == .connection)
        #expect(elapsed >= 0.9 && elapsed <= 2 * 1.0 + 1.0, "failed after \(elapsed) s")
        try eventually("reads work again after the server resumes", seconds: 15) { (try? pool.numbers("items")) == [1: 1] }
    }

    @Test func socketTimeoutDefaultsTo10sAndTheURLWins() throws {
        let s = try MongoScratch()
        #expect(try MongoClientPool(url: s.url, database: s.database).socketTimeoutMS == 10_000)
        #expect(try s.pool(options: "socketTimeoutMS=12345").socketTimeoutMS == 12_345)
        #expect(try s.pool(options: "socketTimeoutMS=0").socketTimeoutMS == MongoClientPool.libmongocDefaultSocketTimeoutMS)
    }

    /// Reads that feed decisions go to the primary whatever the URL says; on a one-member set
    /// a secondary read finds no server at all.
    @Test func readsGoToThePrimaryWhateverTheURLsReadPreference() throws {
        let s = try MongoScratch()
        let pool = try s.pool(options: "readPreference=secondary&serverSelectionTimeoutMS=1000")
        _ = try pool.bulk([.insertOne(numbered(1, n: 1))], "items")
        #expect(try pool.numbers("items") == [1: 1])
        #expect(try pool.documents("items", readConcern: .majority).count == 1)
        #expect(try pool.withClient { (c: MongoClient) throws(MongoError) -> Int in try c.count(collection: "items") } == 1)
        let cursor = try MongoCursor(pool: pool, collection: "items", filter: Document(), options: Document(), readConcern: .majority)
        #expect(try cursor.next()?["_id"] == .int32(1))
        var options = ChangeStreamOptions()
        options.maxAwaitMilliseconds = 50
        let stream = try pool.watch(collection: "items", options: options)
        _ = try stream.next()
    }

    /// (g) A dropped database invalidates its stream; `resumeAfter` the invalidate is refused
    /// (260, history lost), `startAfter` it continues with the next change.
    @Test func startAfterContinuesAfterAnInvalidate() throws {
        let s = try MongoScratch()
        let pool = try s.pool()
        _ = try pool.bulk([.insertOne(numbered(1, n: 1))], "items")
        var options = ChangeStreamOptions()
        options.maxAwaitMilliseconds = 100
        options.fullDocumentUpdateLookup = false
        let stream = try pool.watch(collection: nil, options: options)
        _ = try stream.next()
        _ = try pool.command(["dropDatabase": .int32(1)])
        var kinds: [String] = []
        try eventually("the stream is invalidated") {
            if case .string(let kind)? = try stream.next()?["operationType"] { kinds.append(kind) }
            return stream.invalidateToken != nil
        }
        #expect(kinds.last == "invalidate" && kinds.contains("dropDatabase"))
        let token = try #require(stream.invalidateToken)

        var resume = options
        resume.resumeToken = token
        let refused = #expect(throws: MongoError.self) { try pool.watch(collection: nil, options: resume) }
        #expect(refused?.code == 260 && refused?.isHistoryLost == true)

        var after = options
        after.startAfter = token
        let continued = try pool.watch(collection: nil, options: after)
        _ = try pool.bulk([.insertOne(numbered(2, n: 2))], "items")
        var event: Document?
        try eventually("the insert after the drop arrives") { event = try continued.next(); return event != nil }
        #expect(event?["operationType"] == .string("insert"))
        #expect(event?["documentKey"] == .document(["_id": .int32(2)]))
    }

    /// A watch that fails to start gives its client back: with a pool of one client, a
    /// leaked one would leave the next caller waiting for ever.
    @Test func aWatchThatFailsLeavesItsClientInThePool() throws {
        let s = try MongoScratch()
        let pool = try s.pool(options: "maxPoolSize=1")
        var unencodable = ChangeStreamOptions()
        unencodable.pipeline = [["$match": .document(["x": .unsupported(typeName: "regex")])]]
        var badToken = ChangeStreamOptions()
        badToken.resumeToken = try BSONBytes.encode(document: ["foo": .int32(1)])
        // On another thread: a leaked client makes the next watch or ping wait for ever.
        let attempts = [unencodable, unencodable, badToken, badToken]
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            let allFailed = attempts.allSatisfy { options in
                (try? pool.watch(collection: nil, options: options)) == nil
            }
            if allFailed, (try? pool.ping()) != nil { done.signal() }
        }
        #expect(done.wait(timeout: .now() + 20) == .success, "a failed watch kept the pool's only client")
    }

    @Test func serverInfoReportsVersionReplicaSetAndClock() throws {
        let info = try MongoScratch().pool().serverInfo()
        #expect(info.version.hasChangeStreamImages)  // SecantusDB reports 8.2.11
        #expect(!info.isMongos)
        #expect(info.setName == "secantus")
        let offset = try #require(info.clockOffset)
        #expect(abs(offset.milliseconds) <= 1000 + offset.uncertaintyMilliseconds)  // same machine
        #expect(offset.uncertaintyMilliseconds >= 1 && offset.uncertaintyMilliseconds < 1000)
    }
}
