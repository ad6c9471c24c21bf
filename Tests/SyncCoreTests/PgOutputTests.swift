import Testing
@testable import SyncCore

/// pgoutput messages built byte by byte as PostgreSQL sends them (protocol version 1).
@Suite struct PgOutputTests {
    struct Bytes {
        var out: [UInt8] = []
        mutating func c(_ s: String) { out.append(UInt8(ascii: s.unicodeScalars.first!)) }
        mutating func u8(_ v: UInt8) { out.append(v) }
        mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.bigEndian) { out += $0 } }
        mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.bigEndian) { out += $0 } }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.bigEndian) { out += $0 } }
        mutating func str(_ s: String) { out += Array(s.utf8) + [0] }
        mutating func tuple(_ values: [String?], unchanged: Set<Int> = []) {
            u16(UInt16(values.count))
            for (i, v) in values.enumerated() {
                if unchanged.contains(i) { c("u") } else if let v { c("t"); u32(UInt32(v.utf8.count)); out += Array(v.utf8) } else { c("n") }
            }
        }
    }

    @Test func transactionMessagesDecode() throws {
        var b = Bytes(); b.c("B"); b.u64(0x1_0000_0010); b.u64(12345); b.u32(777)
        #expect(try PgOutput.decodeMessage(b.out) == .begin(finalLSN: 0x1_0000_0010, commitTime: 12345, xid: 777))
        b = Bytes(); b.c("C"); b.u8(0); b.u64(0x20); b.u64(0x28); b.u64(99)
        #expect(try PgOutput.decodeMessage(b.out) == .commit(commitLSN: 0x20, endLSN: 0x28, commitTime: 99))
        b = Bytes(); b.c("O"); b.u64(5); b.str("nocobridge")
        #expect(try PgOutput.decodeMessage(b.out) == .origin(name: "nocobridge"))
    }

    @Test func relationAndRowChangesDecode() throws {
        var b = Bytes(); b.c("R"); b.u32(16384); b.str("p1abc"); b.str("waiter_ops"); b.u8(UInt8(ascii: "f")); b.u16(2)
        b.u8(1); b.str("id"); b.u32(23); b.u32(UInt32.max)
        b.u8(0); b.str("externalId"); b.u32(25); b.u32(UInt32.max)
        #expect(try PgOutput.decodeMessage(b.out) == .relation(id: 16384, namespace: "p1abc", name: "waiter_ops", replicaIdentity: UInt8(ascii: "f"),
                                                               columns: [.init(name: "id", typeOID: 23, isKey: true), .init(name: "externalId", typeOID: 25, isKey: false)]))
        b = Bytes(); b.c("I"); b.u32(16384); b.c("N"); b.tuple(["1", "k-1"])
        #expect(try PgOutput.decodeMessage(b.out) == .insert(relation: 16384, new: [.text("1"), .text("k-1")]))
        b = Bytes(); b.c("U"); b.u32(16384); b.c("O"); b.tuple(["1", "old"]); b.c("N"); b.tuple(["1", nil], unchanged: [])
        #expect(try PgOutput.decodeMessage(b.out) == .update(relation: 16384, old: [.text("1"), .text("old")], new: [.text("1"), .null]))
        b = Bytes(); b.c("U"); b.u32(16384); b.c("N"); b.tuple(["1", "x"], unchanged: [1])
        #expect(try PgOutput.decodeMessage(b.out) == .update(relation: 16384, old: nil, new: [.text("1"), .unchanged]))
        b = Bytes(); b.c("D"); b.u32(16384); b.c("O"); b.tuple(["1", "naïve ☕"])
        #expect(try PgOutput.decodeMessage(b.out) == .delete(relation: 16384, old: [.text("1"), .text("naïve ☕")]))
        b = Bytes(); b.c("T"); b.u32(2); b.u8(0); b.u32(1); b.u32(2)
        #expect(try PgOutput.decodeMessage(b.out) == .truncate(relations: [1, 2]))
    }

    @Test func envelopesAndStatusUpdates() throws {
        var b = Bytes(); b.c("k"); b.u64(0xABCDEF); b.u64(1); b.u8(1)
        #expect(try PgOutput.decodeEnvelope(b.out) == .keepalive(walEnd: 0xABCDEF, replyRequested: true))
        var w = Bytes(); w.c("w"); w.u64(10); w.u64(20); w.u64(0); w.c("Y"); w.u32(600); w.str("public"); w.str("point")
        #expect(try PgOutput.decodeEnvelope(w.out) == .xLogData(start: 10, walEnd: 20, message: .type(id: 600, namespace: "public", name: "point")))
        let status = PgOutput.standbyStatus(flushed: 0x1_0000_0002, now: PgOutput.postgresEpochOffsetMicroseconds + 5)
        #expect(status.count == 34 && status[0] == UInt8(ascii: "r"))
        #expect(Array(status[1...8]) == [0, 0, 0, 1, 0, 0, 0, 2] && Array(status[25...32]) == [0, 0, 0, 0, 0, 0, 0, 5])
        #expect(PgOutput.text(0x16_B374_D848) == "16/B374D848" && PgOutput.lsn("16/B374D848") == 0x16_B374_D848)
    }

    @Test func truncatedOrUnknownInputFailsCleanly() {
        var b = Bytes(); b.c("I"); b.u32(1); b.c("N"); b.u16(1); b.c("t"); b.u32(10); b.out += Array("abc".utf8)
        #expect(throws: PgOutput.DecodeError.self) { try PgOutput.decodeMessage(b.out) }
        #expect(throws: PgOutput.DecodeError.self) { try PgOutput.decodeEnvelope([UInt8(ascii: "z")]) }
        #expect(throws: PgOutput.DecodeError.self) { try PgOutput.decodeMessage([]) }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = try? PgOutput.decodeMessage(bytes)
            _ = try? PgOutput.decodeEnvelope(bytes)
        }
    }
}
