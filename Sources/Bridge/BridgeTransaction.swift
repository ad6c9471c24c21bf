import Postgres

extension PostgresConnection {
    /// A transaction whose writes the capture triggers neither stamp nor record (echo
    /// suppression), begun and marked in one round trip; rolled back if `body` throws.
    func bridgeTransaction<T>(_ body: () throws -> T) throws -> T {
        try execute(script: "BEGIN; SET LOCAL nocobridge.origin = 'bridge'")
        do {
            let value = try body()
            try query("COMMIT")
            return value
        } catch {
            if isConnected { _ = try? query("ROLLBACK") }
            throw error
        }
    }
}
