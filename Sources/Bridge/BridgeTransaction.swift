import Postgres

/// The session setting the capture triggers read (`install.sql`): a transaction that sets it
/// to `bridge` is the bridge's own, which the triggers neither stamp nor record.
public enum BridgeOrigin {
    public static let setting = "nocobridge.origin"
    public static let value = "bridge"
    /// `BEGIN` and the mark in one round trip.
    public static let begin = "BEGIN; SET LOCAL \(setting) = '\(value)'"
    /// For logical capture, the same mark in the write-ahead log: a transactional message the
    /// decoder sees inside the transaction and skips it for (`LogicalChangeCollector`).
    public static let logicalMessage = "SELECT pg_logical_emit_message(true, 'nocobridge', 'bridge')"
}

extension PostgresConnection {
    /// A transaction whose writes the capture triggers neither stamp nor record (echo
    /// suppression), begun and marked in one round trip; rolled back if `body` throws.
    /// - Parameter fence: the lease the transaction is made under, checked right before
    ///   COMMIT (nil for the CLI's own work, which holds no lease).
    func bridgeTransaction<T>(fence: Fence? = nil, _ body: () throws -> T) throws -> T {
        try execute(script: BridgeOrigin.begin)
        do {
            let value = try body()
            try fence?.check(on: self)
            try query("COMMIT")
            return value
        } catch {
            if isConnected { _ = try? query("ROLLBACK") }
            throw error
        }
    }
}
