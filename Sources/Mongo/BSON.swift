import CMongoC
import SyncCore

/// Converts between `Document` and libbson's `bson_t`. Every `bson_t` made here is owned by
/// a `BSONBox`, freed in its `deinit`; documents read from libmongoc are copied out at once.
final class BSONBox {
    let pointer: OpaquePointer

    init() {
        pointer = bson_new()
    }

    init(copying other: OpaquePointer) {
        pointer = bson_copy(other)
    }

    init(document: Document) throws(MongoError) {
        pointer = bson_new()
        try BSONWriter.append(document, to: pointer)
    }

    init?(bytes: [UInt8]) {
        guard let p = bytes.withUnsafeBufferPointer({ bson_new_from_data($0.baseAddress, $0.count) }) else { return nil }
        pointer = p
    }

    deinit {
        bson_destroy(pointer)
    }

    var byteCount: Int { Int(BSONReader.length(pointer)) }

    var bytes: [UInt8] { BSONReader.bytes(pointer) }

    func document() -> Document { BSONReader.document(pointer) }
}

/// Storage for a `bson_t` that libmongoc initialises itself ("overwritable storage" in its
/// docs), aligned as libbson requires.
final class BSONReplyStorage {
    let pointer: OpaquePointer
    private let raw: UnsafeMutableRawPointer
    private var initialized = false

    init() {
        raw = UnsafeMutableRawPointer.allocate(byteCount: 128, alignment: 128)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: 128)
        pointer = OpaquePointer(raw)
    }

    /// Marks the storage as holding a document that must be destroyed.
    func markInitialized() { initialized = true }

    deinit {
        if initialized { bson_destroy(pointer) }
        raw.deallocate()
    }

    func document() -> Document { BSONReader.document(pointer) }
}

enum BSONWriter {
    static func append(_ document: Document, to bson: OpaquePointer) throws(MongoError) {
        for field in document.fields {
            try append(field.value, key: field.key, to: bson)
        }
    }

    static func append(_ value: Value, key: String, to bson: OpaquePointer) throws(MongoError) {
        let keyLength = Int32(key.utf8.count)
        let ok: Bool
        switch value {
        case .null: ok = bson_append_null(bson, key, keyLength)
        case .bool(let b): ok = bson_append_bool(bson, key, keyLength, b)
        case .int32(let i): ok = bson_append_int32(bson, key, keyLength, i)
        case .int64(let i): ok = bson_append_int64(bson, key, keyLength, i)
        case .double(let d): ok = bson_append_double(bson, key, keyLength, d)
        case .decimal(let d):
            var dec = bson_decimal128_t()
            guard bson_decimal128_from_string(d.text, &dec) else {
                throw MongoError(kind: .invalidDocument, message: "field \(key): \(d.text) is not a Decimal128")
            }
            ok = bson_append_decimal128(bson, key, keyLength, &dec)
        case .string(let s):
            var copy = s
            ok = copy.withUTF8 { buf in
                buf.withMemoryRebound(to: CChar.self) { bson_append_utf8(bson, key, keyLength, $0.baseAddress, Int32(buf.count)) }
            }
        case .date(let ms): ok = bson_append_date_time(bson, key, keyLength, ms)
        case .objectId(let oid):
            var o = bson_oid_t()
            withUnsafeMutableBytes(of: &o.bytes) { raw in
                for (i, b) in oid.bytes.enumerated() { raw[i] = b }
            }
            ok = bson_append_oid(bson, key, keyLength, &o)
        case .document(let doc):
            let child = try BSONBox(document: doc)
            ok = bson_append_document(bson, key, keyLength, child.pointer)
        case .array(let items):
            let child = BSONBox()
            for (i, item) in items.enumerated() {
                try append(item, key: String(i), to: child.pointer)
            }
            ok = bson_append_array(bson, key, keyLength, child.pointer)
        case .timestamp(let seconds, let increment):
            ok = bson_append_timestamp(bson, key, keyLength, seconds, increment)
        case .unsupported(let name):
            throw MongoError(kind: .invalidDocument, message: "field \(key): cannot write a \(name) value")
        }
        guard ok else {
            throw MongoError(kind: .invalidDocument, message: "field \(key): document exceeds BSON's size limit")
        }
    }
}

enum BSONReader {
    static func length(_ bson: OpaquePointer) -> UInt32 {
        // bson_t's first fields are flags then len (uint32 each).
        UnsafeRawPointer(bson).load(fromByteOffset: 4, as: UInt32.self)
    }

    static func bytes(_ bson: OpaquePointer) -> [UInt8] {
        guard let data = bson_get_data(bson) else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: Int(length(bson))))
    }

    /// The raw bytes of the embedded document at top-level `key` (e.g. a change event's
    /// `_id`, a resume token kept byte for byte whatever value types it holds), or nil.
    static func embeddedDocumentBytes(_ bson: OpaquePointer, key: String) -> [UInt8]? {
        let iter = IteratorStorage()
        guard bson_iter_init_find(iter.pointer, bson, key), bson_iter_type(iter.pointer) == BSON_TYPE_DOCUMENT else { return nil }
        var length: UInt32 = 0
        var data: UnsafePointer<UInt8>?
        bson_iter_document(iter.pointer, &length, &data)
        guard let data else { return nil }
        return Array(UnsafeBufferPointer(start: data, count: Int(length)))
    }

    static func document(_ bson: OpaquePointer) -> Document {
        let iter = IteratorStorage()
        guard bson_iter_init(iter.pointer, bson) else { return Document() }
        return readDocument(iter.pointer)
    }

    private static func readDocument(_ iter: OpaquePointer) -> Document {
        var doc = Document()
        while bson_iter_next(iter) {
            let key = String(cString: bson_iter_key(iter))
            doc.fields.append((key, readValue(iter)))
        }
        return doc
    }

    private static func readValue(_ iter: OpaquePointer) -> Value {
        switch bson_iter_type(iter) {
        case BSON_TYPE_NULL, BSON_TYPE_UNDEFINED: return .null
        case BSON_TYPE_BOOL: return .bool(bson_iter_bool(iter))
        case BSON_TYPE_INT32: return .int32(bson_iter_int32(iter))
        case BSON_TYPE_INT64: return .int64(bson_iter_int64(iter))
        case BSON_TYPE_DOUBLE: return .double(bson_iter_double(iter))
        case BSON_TYPE_DECIMAL128:
            var dec = bson_decimal128_t()
            guard bson_iter_decimal128(iter, &dec) else { return .unsupported(typeName: "decimal128") }
            var buf = [CChar](repeating: 0, count: 64)
            bson_decimal128_to_string(&dec, &buf)
            let text = String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if let d = try? Decimal128Text(text) { return .decimal(d) }
            return .unsupported(typeName: "decimal128 \(text)")
        case BSON_TYPE_UTF8:
            var length: UInt32 = 0
            guard let p = bson_iter_utf8(iter, &length) else { return .string("") }
            // Decoding would silently replace invalid bytes; such a value is refused instead.
            let text = p.withMemoryRebound(to: UInt8.self, capacity: Int(length)) {
                String(validating: UnsafeBufferPointer(start: $0, count: Int(length)), as: UTF8.self)
            }
            return text.map(Value.string) ?? .unsupported(typeName: "string with invalid UTF-8")
        case BSON_TYPE_DATE_TIME: return .date(bson_iter_date_time(iter))
        case BSON_TYPE_OID:
            guard let oid = bson_iter_oid(iter) else { return .null }
            let bytes = withUnsafeBytes(of: oid.pointee.bytes) { Array($0) }
            return ObjectID(bytes: bytes).map(Value.objectId) ?? .null
        case BSON_TYPE_DOCUMENT:
            let child = IteratorStorage()
            guard bson_iter_recurse(iter, child.pointer) else { return .document(Document()) }
            return .document(readDocument(child.pointer))
        case BSON_TYPE_ARRAY:
            let child = IteratorStorage()
            guard bson_iter_recurse(iter, child.pointer) else { return .array([]) }
            return .array(readDocument(child.pointer).fields.map(\.value))
        case BSON_TYPE_TIMESTAMP:
            var seconds: UInt32 = 0, increment: UInt32 = 0
            bson_iter_timestamp(iter, &seconds, &increment)
            return .timestamp(seconds: seconds, increment: increment)
        case BSON_TYPE_BINARY: return .unsupported(typeName: "binary")
        case BSON_TYPE_REGEX: return .unsupported(typeName: "regex")
        case BSON_TYPE_CODE, BSON_TYPE_CODEWSCOPE: return .unsupported(typeName: "javascript")
        case BSON_TYPE_MINKEY: return .unsupported(typeName: "minKey")
        case BSON_TYPE_MAXKEY: return .unsupported(typeName: "maxKey")
        default: return .unsupported(typeName: "bson type \(bson_iter_type(iter).rawValue)")
        }
    }

    /// A `bson_iter_t` in 128-byte aligned heap memory, as libbson requires.
    final class IteratorStorage {
        let pointer: OpaquePointer
        private let raw: UnsafeMutableRawPointer

        init() {
            raw = UnsafeMutableRawPointer.allocate(byteCount: 256, alignment: 128)
            pointer = OpaquePointer(raw)
        }

        deinit { raw.deallocate() }
    }
}

/// Encodes a value on its own (e.g. a document's `_id`) as BSON bytes of `{"": value}`,
/// a stable binary key for the key map.
public enum BSONBytes {
    public static func encode(_ value: Value) throws(MongoError) -> [UInt8] {
        let box = try BSONBox(document: Document([("", value)]))
        return box.bytes
    }

    /// Full document ⇄ bytes, e.g. for a stored resume token.
    public static func encode(document: Document) throws(MongoError) -> [UInt8] {
        try BSONBox(document: document).bytes
    }

    /// The value `encode(_:)` encoded; nil for bytes that are not such a document.
    public static func decode(_ bytes: [UInt8]) -> Value? {
        BSONBox(bytes: bytes)?.document().fields.first?.value
    }
}

extension ObjectID {
    /// A new ObjectId from libbson (time, process-unique value, counter), so a document's
    /// `_id` is known before it is inserted.
    public static func generate() -> ObjectID {
        var oid = bson_oid_t()
        bson_oid_init(&oid, nil)
        return ObjectID(bytes: withUnsafeBytes(of: oid.bytes) { Array($0) })!
    }
}
