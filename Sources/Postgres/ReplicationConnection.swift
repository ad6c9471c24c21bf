import CLibPQ
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A walsender connection (`replication=database`) that streams a logical replication slot
/// with the `pgoutput` plugin. One owner; the connection is closed in `deinit`. Messages are
/// copied out of libpq's buffer at once.
public final class ReplicationConnection {
    private let handle: OpaquePointer

    public init(url: String, applicationName: String = "nocobridge-replication") throws(PostgresError) {
        let keys = ["dbname", "replication", "application_name"]
        let values = [url, "database", applicationName]
        let conn: OpaquePointer? = withCStringArray(keys) { k in
            withCStringArray(values) { v in PQconnectdbParams(k, v, 1) }
        }
        guard let conn else { throw PostgresError(kind: .connect, message: "out of memory") }
        guard PQstatus(conn) == CONNECTION_OK else {
            let message = PostgresError.connectionMessage(conn)
            PQfinish(conn)
            throw PostgresError(kind: .connect, message: PostgresConnection.scrub(message))
        }
        handle = conn
    }

    deinit {
        PQfinish(handle)
    }

    /// Starts streaming `slot` from `lsn` (0: from the slot's confirmed position).
    public func startReplication(slot: String, publication: String, from lsn: UInt64) throws(PostgresError) {
        let position = String(lsn >> 32, radix: 16, uppercase: true) + "/" + String(lsn & 0xFFFF_FFFF, radix: 16, uppercase: true)
        let command = "START_REPLICATION SLOT \(PostgresConnection.quoteIdentifier(slot)) LOGICAL \(position) "
            + "(proto_version '1', publication_names '\(PostgresConnection.quoteIdentifier(publication))', messages 'true')"
        guard let result = PQexec(handle, command) else {
            throw PostgresError(kind: .connectionLost, message: PostgresError.connectionMessage(handle))
        }
        defer { PQclear(result) }
        guard PQresultStatus(result) == PGRES_COPY_BOTH else {
            throw PostgresError.from(result: result, connection: handle)
        }
    }

    /// The next CopyData message, or nil when none arrived within the timeout or `wakeFD`
    /// became readable.
    public func read(timeoutMilliseconds: Int32, wakeFD: Int32? = nil) throws(PostgresError) -> [UInt8]? {
        var waited = false
        while true {
            var buffer: UnsafeMutablePointer<CChar>?
            let n = PQgetCopyData(handle, &buffer, 1)
            if n > 0, let buffer {
                let bytes = buffer.withMemoryRebound(to: UInt8.self, capacity: Int(n)) { Array(UnsafeBufferPointer(start: $0, count: Int(n))) }
                PQfreemem(buffer)
                return bytes
            }
            if n == -1 {
                // The server ended the stream; its reason is in the result that follows.
                var error = PostgresError(kind: .connectionLost, message: "the replication stream ended")
                while let result = PQgetResult(handle) {
                    if PQresultStatus(result) == PGRES_FATAL_ERROR { error = PostgresError.from(result: result, connection: handle) }
                    PQclear(result)
                }
                throw error
            }
            if n < -1 {
                throw PostgresError(kind: .connectionLost, message: PostgresError.connectionMessage(handle))
            }
            if waited { return nil }
            let socket = PQsocket(handle)
            guard socket >= 0 else { throw PostgresError(kind: .connectionLost, message: "no socket") }
            var fds = [pollfd(fd: socket, events: Int16(POLLIN), revents: 0)]
            if let wakeFD { fds.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)) }
            let rc = poll(&fds, nfds_t(fds.count), timeoutMilliseconds)
            if rc < 0, errno != EINTR { throw PostgresError(kind: .connectionLost, message: "poll failed") }
            if fds[0].revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
                throw PostgresError(kind: .connectionLost, message: "server closed the replication connection")
            }
            guard PQconsumeInput(handle) == 1 else {
                throw PostgresError(kind: .connectionLost, message: PostgresError.connectionMessage(handle))
            }
            waited = true
        }
    }

    /// Sends one CopyData message (a standby status update).
    public func send(_ bytes: [UInt8]) throws(PostgresError) {
        let ok = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { PQputCopyData(handle, $0.baseAddress, Int32($0.count)) }
        }
        guard ok == 1, PQflush(handle) == 0 else {
            throw PostgresError(kind: .connectionLost, message: PostgresError.connectionMessage(handle))
        }
    }
}
