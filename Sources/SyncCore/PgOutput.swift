/// Decoder for PostgreSQL's logical replication stream: the CopyBoth envelope (XLogData,
/// primary keepalive) and the `pgoutput` plugin's messages (protocol version 1). Pure, so
/// every message kind is tested from bytes without a server.
public enum PgOutput {
    /// A 64-bit WAL position.
    public typealias LSN = UInt64

    /// One CopyData message from the server.
    public enum Envelope: Sendable, Equatable {
        /// `w`: WAL data starting at `start`; `walEnd` is the server's current end of WAL.
        case xLogData(start: LSN, walEnd: LSN, message: Message)
        /// `k`: the server's end of WAL, and whether it wants a status update now.
        case keepalive(walEnd: LSN, replyRequested: Bool)
    }

    public struct Column: Sendable, Equatable {
        public let name: String
        public let typeOID: UInt32
        public let isKey: Bool
    }

    public enum TupleValue: Sendable, Equatable {
        case null
        /// A TOASTed value the update did not change (not sent).
        case unchanged
        case text(String)
    }

    public enum Message: Sendable, Equatable {
        case begin(finalLSN: LSN, commitTime: Int64, xid: UInt32)
        case commit(commitLSN: LSN, endLSN: LSN, commitTime: Int64)
        /// The transaction was replayed from another origin (for the bridge: its own writes).
        case origin(name: String)
        case relation(id: UInt32, namespace: String, name: String, replicaIdentity: UInt8, columns: [Column])
        case type(id: UInt32, namespace: String, name: String)
        case insert(relation: UInt32, new: [TupleValue])
        case update(relation: UInt32, old: [TupleValue]?, new: [TupleValue])
        case delete(relation: UInt32, old: [TupleValue])
        case truncate(relations: [UInt32])
        /// A logical decoding message (`pg_logical_emit_message`); a transactional one belongs
        /// to the transaction it was emitted in.
        case message(transactional: Bool, prefix: String, content: [UInt8])
        /// Anything else (streaming): ignored.
        case other(kind: UInt8)
    }

    public struct DecodeError: Error, Sendable, Equatable, CustomStringConvertible {
        public let reason: String
        public var description: String { "cannot decode the replication stream: \(reason)" }
    }

    /// Microseconds between 1970-01-01 and PostgreSQL's epoch 2000-01-01.
    public static let postgresEpochOffsetMicroseconds: Int64 = 946_684_800_000_000

    public static func decodeEnvelope(_ bytes: [UInt8]) throws(DecodeError) -> Envelope {
        var r = Reader(bytes)
        switch try r.byte() {
        case UInt8(ascii: "w"):
            let start = try r.uint64()
            let walEnd = try r.uint64()
            _ = try r.uint64()  // send time
            return .xLogData(start: start, walEnd: walEnd, message: try decodeMessage(r.rest()))
        case UInt8(ascii: "k"):
            let walEnd = try r.uint64()
            _ = try r.uint64()
            return .keepalive(walEnd: walEnd, replyRequested: try r.byte() == 1)
        case let other:
            throw DecodeError(reason: "unknown envelope \(other)")
        }
    }

    public static func decodeMessage(_ bytes: [UInt8]) throws(DecodeError) -> Message {
        var r = Reader(bytes)
        let kind = try r.byte()
        switch kind {
        case UInt8(ascii: "B"):
            return .begin(finalLSN: try r.uint64(), commitTime: Int64(bitPattern: try r.uint64()), xid: try r.uint32())
        case UInt8(ascii: "C"):
            _ = try r.byte()  // flags
            return .commit(commitLSN: try r.uint64(), endLSN: try r.uint64(), commitTime: Int64(bitPattern: try r.uint64()))
        case UInt8(ascii: "O"):
            _ = try r.uint64()
            return .origin(name: try r.string())
        case UInt8(ascii: "R"):
            let id = try r.uint32()
            let namespace = try r.string()
            let name = try r.string()
            let identity = try r.byte()
            let count = Int(try r.uint16())
            var columns: [Column] = []
            for _ in 0..<count {
                let flags = try r.byte()
                let columnName = try r.string()
                let oid = try r.uint32()
                _ = try r.uint32()  // typmod
                columns.append(Column(name: columnName, typeOID: oid, isKey: flags & 1 == 1))
            }
            return .relation(id: id, namespace: namespace, name: name, replicaIdentity: identity, columns: columns)
        case UInt8(ascii: "Y"):
            return .type(id: try r.uint32(), namespace: try r.string(), name: try r.string())
        case UInt8(ascii: "I"):
            let relation = try r.uint32()
            guard try r.byte() == UInt8(ascii: "N") else { throw DecodeError(reason: "insert without a new tuple") }
            return .insert(relation: relation, new: try r.tuple())
        case UInt8(ascii: "U"):
            let relation = try r.uint32()
            var old: [TupleValue]?
            var marker = try r.byte()
            if marker == UInt8(ascii: "K") || marker == UInt8(ascii: "O") {
                old = try r.tuple()
                marker = try r.byte()
            }
            guard marker == UInt8(ascii: "N") else { throw DecodeError(reason: "update without a new tuple") }
            return .update(relation: relation, old: old, new: try r.tuple())
        case UInt8(ascii: "D"):
            let relation = try r.uint32()
            let marker = try r.byte()
            guard marker == UInt8(ascii: "K") || marker == UInt8(ascii: "O") else { throw DecodeError(reason: "delete without an old tuple") }
            return .delete(relation: relation, old: try r.tuple())
        case UInt8(ascii: "T"):
            let count = Int(try r.uint32())
            _ = try r.byte()  // options
            var ids: [UInt32] = []
            for _ in 0..<count { ids.append(try r.uint32()) }
            return .truncate(relations: ids)
        case UInt8(ascii: "M"):
            let transactional = try r.byte() & 1 == 1
            _ = try r.uint64()  // LSN of the message
            let prefix = try r.string()
            let length = Int(try r.uint32())
            return .message(transactional: transactional, prefix: prefix, content: try r.bytes(length))
        default:
            return .other(kind: kind)
        }
    }

    /// The client's standby status update (`r`): written, flushed and applied positions.
    public static func standbyStatus(flushed: LSN, now microsecondsSince1970: Int64, replyRequested: Bool = false) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "r")]
        for value in [flushed, flushed, flushed, UInt64(bitPattern: microsecondsSince1970 - postgresEpochOffsetMicroseconds)] {
            withUnsafeBytes(of: value.bigEndian) { out += $0 }
        }
        out.append(replyRequested ? 1 : 0)
        return out
    }

    /// `X/Y` text form, as PostgreSQL prints and parses LSNs.
    public static func text(_ lsn: LSN) -> String {
        String(lsn >> 32, radix: 16, uppercase: true) + "/" + String(lsn & 0xFFFF_FFFF, radix: 16, uppercase: true)
    }

    public static func lsn(_ text: String) -> LSN? {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let hi = UInt64(parts[0], radix: 16), let lo = UInt64(parts[1], radix: 16) else { return nil }
        return hi << 32 | lo
    }

    struct Reader {
        let bytes: [UInt8]
        var index = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        mutating func byte() throws(DecodeError) -> UInt8 {
            guard index < bytes.count else { throw DecodeError(reason: "message ends early") }
            defer { index += 1 }
            return bytes[index]
        }

        mutating func integer(_ size: Int) throws(DecodeError) -> UInt64 {
            guard index + size <= bytes.count else { throw DecodeError(reason: "message ends early") }
            var value: UInt64 = 0
            for b in bytes[index..<index + size] { value = value << 8 | UInt64(b) }
            index += size
            return value
        }

        mutating func uint16() throws(DecodeError) -> UInt16 { UInt16(try integer(2)) }
        mutating func uint32() throws(DecodeError) -> UInt32 { UInt32(try integer(4)) }
        mutating func uint64() throws(DecodeError) -> UInt64 { try integer(8) }

        mutating func string() throws(DecodeError) -> String {
            guard let end = bytes[index...].firstIndex(of: 0) else { throw DecodeError(reason: "unterminated string") }
            defer { index = end + 1 }
            return String(decoding: bytes[index..<end], as: UTF8.self)
        }

        mutating func bytes(_ count: Int) throws(DecodeError) -> [UInt8] {
            guard count >= 0, index + count <= bytes.count else { throw DecodeError(reason: "message ends early") }
            defer { index += count }
            return Array(bytes[index..<index + count])
        }

        mutating func tuple() throws(DecodeError) -> [TupleValue] {
            let count = Int(try uint16())
            var values: [TupleValue] = []
            values.reserveCapacity(count)
            for _ in 0..<count {
                switch try byte() {
                case UInt8(ascii: "n"): values.append(.null)
                case UInt8(ascii: "u"): values.append(.unchanged)
                case UInt8(ascii: "t"), UInt8(ascii: "b"):
                    let length = Int(try uint32())
                    guard index + length <= bytes.count else { throw DecodeError(reason: "column value ends early") }
                    guard let text = String(validating: bytes[index..<index + length], as: UTF8.self) else {
                        throw DecodeError(reason: "column value is not UTF-8")
                    }
                    values.append(.text(text))
                    index += length
                case let other:
                    throw DecodeError(reason: "unknown column kind \(other)")
                }
            }
            return values
        }

        func rest() -> [UInt8] { Array(bytes[index...]) }
    }
}
