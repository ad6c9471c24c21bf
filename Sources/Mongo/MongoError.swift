import CMongoC
import Foundation

/// A libmongoc or server failure. The message never holds credentials: libmongoc messages
/// name hosts, not the URI, and anything that looks like `user:pass@` is masked anyway.
public struct MongoError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case invalidURL
        /// No server reachable, network cut, server shutting down: retry on a new client.
        case connection
        /// The server answered with an error code.
        case server
        /// A document cannot be encoded (too large, invalid key).
        case invalidDocument
    }

    public let kind: Kind
    public let code: Int32
    public let message: String

    public init(kind: Kind, code: Int32 = 0, message: String) {
        self.kind = kind
        self.code = code
        self.message = MongoError.mask(message)
    }

    public var description: String {
        switch kind {
        case .invalidURL: "invalid MongoDB URL: \(message)"
        case .connection: "cannot reach MongoDB: \(message)"
        case .server: "MongoDB error \(code): \(message)"
        case .invalidDocument: "invalid document: \(message)"
        }
    }

    /// The one place a `bson_error_t` becomes a Swift error.
    static func from(_ error: bson_error_t) -> MongoError {
        let message = withUnsafeBytes(of: error.message) { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            let end = bytes.firstIndex(of: 0) ?? bytes.count
            return String(decoding: bytes[..<end], as: UTF8.self)
        }
        switch Int32(error.domain) {
        case Int32(MONGOC_ERROR_STREAM.rawValue), Int32(MONGOC_ERROR_SERVER_SELECTION.rawValue):
            return MongoError(kind: .connection, code: Int32(error.code), message: message)
        case Int32(MONGOC_ERROR_BSON.rawValue):
            return MongoError(kind: .invalidDocument, code: Int32(error.code), message: message)
        case Int32(MONGOC_ERROR_COMMAND.rawValue):
            if error.code == MONGOC_ERROR_COMMAND_INVALID_ARG.rawValue {
                return MongoError(kind: .invalidDocument, code: Int32(error.code), message: message)
            }
            return MongoError(kind: .server, code: Int32(error.code), message: message)
        default:
            // Server-side codes that mean the node went away (shutdown, not primary).
            if [11600, 11602, 91, 189, 10107, 13435, 13436, 6, 7, 89, 9001].contains(Int32(error.code)) {
                return MongoError(kind: .connection, code: Int32(error.code), message: message)
            }
            return MongoError(kind: .server, code: Int32(error.code), message: message)
        }
    }

    static func mask(_ text: String) -> String {
        guard let scheme = text.range(of: "://"), let at = text[scheme.upperBound...].firstIndex(of: "@") else {
            return text
        }
        return String(text[..<scheme.upperBound]) + "***" + String(text[at...])
    }
}
