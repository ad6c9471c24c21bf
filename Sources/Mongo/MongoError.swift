import CMongoC
import Foundation
import SyncCore

/// libmongoc's error domains (`mongoc_error_domain_t`), for reading `MongoError.domain`. With
/// error API 2 (every pool here sets it) an error the *server* returned is `server` (17);
/// `query` (5) is the same for clients on API 1, which is why both are accepted as "the server
/// said so" by the classification helpers.
public enum MongoErrorDomain {
    /// Not from libmongoc (made by this module), or libmongoc lost the error (see `bulkWrite`).
    public static let none: UInt32 = 0
    public static let client = UInt32(MONGOC_ERROR_CLIENT.rawValue)
    public static let stream = UInt32(MONGOC_ERROR_STREAM.rawValue)
    public static let `protocol` = UInt32(MONGOC_ERROR_PROTOCOL.rawValue)
    public static let cursor = UInt32(MONGOC_ERROR_CURSOR.rawValue)
    public static let query = UInt32(MONGOC_ERROR_QUERY.rawValue)
    public static let bson = UInt32(MONGOC_ERROR_BSON.rawValue)
    public static let command = UInt32(MONGOC_ERROR_COMMAND.rawValue)
    public static let serverSelection = UInt32(MONGOC_ERROR_SERVER_SELECTION.rawValue)
    public static let writeConcern = UInt32(MONGOC_ERROR_WRITE_CONCERN.rawValue)
    public static let server = UInt32(MONGOC_ERROR_SERVER.rawValue)
}

/// A libmongoc or server failure. The message never holds credentials: libmongoc messages
/// name hosts, not the URI, and anything that looks like `user:pass@` is masked anyway.
///
/// `domain`, `code` and `errorLabels` are kept raw so callers can classify without parsing
/// messages; `kind` is the coarse reading of them made in `from(error:reply:)`.
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
    /// libmongoc's `bson_error_t.domain` (see `MongoErrorDomain`); 0 for errors made here.
    public let domain: UInt32
    public let code: Int32
    /// The reply's `errorLabels` (e.g. `RetryableWriteError`, `NonResumableChangeStreamError`,
    /// including the ones libmongoc adds itself), empty when there was no reply.
    public let errorLabels: [String]
    public let message: String

    public init(kind: Kind, domain: UInt32 = MongoErrorDomain.none, code: Int32 = 0, errorLabels: [String] = [], message: String) {
        self.kind = kind
        self.domain = domain
        self.code = code
        self.errorLabels = errorLabels
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

    public func hasLabel(_ label: String) -> Bool { errorLabels.contains(label) }

    /// The one place a `bson_error_t` (and the reply that came with it, when there is one)
    /// becomes a Swift error.
    static func from(error: bson_error_t, reply: Document? = nil) -> MongoError {
        let message = withUnsafeBytes(of: error.message) { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            let end = bytes.firstIndex(of: 0) ?? bytes.count
            return String(decoding: bytes[..<end], as: UTF8.self)
        }
        let labels = reply.map(labels(in:)) ?? []
        let domain = error.domain
        let code = Int32(bitPattern: error.code)
        func make(_ kind: Kind) -> MongoError {
            MongoError(kind: kind, domain: domain, code: code, errorLabels: labels, message: message)
        }
        switch domain {
        case MongoErrorDomain.stream, MongoErrorDomain.serverSelection:
            return make(.connection)
        case MongoErrorDomain.bson:
            return make(.invalidDocument)
        case MongoErrorDomain.command:
            return make(error.code == MONGOC_ERROR_COMMAND_INVALID_ARG.rawValue ? .invalidDocument : .server)
        default:
            // Server-side codes that mean the node went away (shutdown, not primary).
            if [11600, 11602, 91, 189, 10107, 13435, 13436, 6, 7, 89, 9001].contains(code) {
                return make(.connection)
            }
            return make(.server)
        }
    }

    static func labels(in reply: Document) -> [String] {
        guard case .array(let items)? = reply["errorLabels"] else { return [] }
        return items.compactMap { if case .string(let s) = $0 { s } else { nil } }
    }

    static func mask(_ text: String) -> String {
        guard let scheme = text.range(of: "://"), let at = text[scheme.upperBound...].firstIndex(of: "@") else {
            return text
        }
        return String(text[..<scheme.upperBound]) + "***" + String(text[at...])
    }
}

// MARK: - Classification

extension MongoError {
    /// Server codes meaning a change stream position can never be used again:
    /// 286 ChangeStreamHistoryLost, 280 ChangeStreamFatalError, 260 InvalidResumeToken,
    /// 136 CappedPositionLost (older servers' 286), 9 FailedToParse (SecantusDB's answer to any
    /// malformed token), and mongod's malformed-token location codes 40647, 40649, 50795, 50854
    /// (resume_token.cpp). Retrying with the same token cannot succeed; only a resync can.
    public static let historyLostCodes: Set<Int32> = [286, 280, 260, 136, 9, 40647, 40649, 50795, 50854]

    /// The label mongod puts on 280/286 (SecantusDB omits it on 286, hence the codes too).
    public static let nonResumableLabel = "NonResumableChangeStreamError"

    /// Whether an error means the change stream position is gone for good. Pure: the codes
    /// count only when the server sent them (domain `server`, or `query` on error API 1); the
    /// same numbers from libmongoc itself (e.g. client code 9) mean something else.
    public static func isHistoryLost(domain: UInt32, code: Int32, labels: [String]) -> Bool {
        if labels.contains(nonResumableLabel) { return true }
        guard domain == MongoErrorDomain.server || domain == MongoErrorDomain.query else { return false }
        return historyLostCodes.contains(code)
    }

    /// See `isHistoryLost(domain:code:labels:)`.
    public var isHistoryLost: Bool { Self.isHistoryLost(domain: domain, code: code, labels: errorLabels) }

}
