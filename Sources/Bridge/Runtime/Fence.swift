import Postgres
import Synchronization

/// The proof a flow still holds its unit's lease, checked where a stale holder could do
/// harm: right before each commit (in PostgreSQL, against the lease row) and right before
/// each MongoDB write (locally, against the last renewal, since MongoDB cannot check a token).
/// A holder frozen past its lease (SIGSTOP, a VM pause, a partition) resumes with a fence
/// that no longer passes, so nothing it decided before the freeze lands afterwards.
public final class Fence: Sendable {
    public let unit: String
    public let holder: String
    /// `nocobridge.lease_token` at this acquisition: a later holding has a larger one.
    public let token: Int64
    /// Who held the unit before, when that was another instance still listed: its writes
    /// may still be in flight, so the new holder settles them before deciding anything.
    public let previousHolder: String?
    /// Until when the lease is ours by local monotonic time: the last renewal's send time
    /// plus the lease minus a margin, so it ends before PostgreSQL's expiry does.
    private let deadline: Mutex<ContinuousClock.Instant>

    init(unit: String, holder: String, token: Int64, previousHolder: String?, validUntil: ContinuousClock.Instant) {
        self.unit = unit
        self.holder = holder
        self.token = token
        self.previousHolder = previousHolder
        deadline = Mutex(validUntil)
    }

    public var isValid: Bool { ContinuousClock.now < deadline.withLock { $0 } }

    func extend(until instant: ContinuousClock.Instant) {
        deadline.withLock { $0 = Swift.max($0, instant) }
    }

    func revoke() {
        deadline.withLock { $0 = .now - .seconds(1) }
    }

    /// Throws `LeaseLost` unless the lease row still names this holding and has not expired.
    /// `FOR SHARE` holds the row until the caller's transaction ends, so a takeover's UPDATE
    /// waits for this commit: the commit lands while the lease is ours, or not at all.
    func check(on connection: PostgresConnection) throws {
        let rows = try connection.query(cached: """
            SELECT 1 FROM nocobridge.leases
            WHERE unit = $1 AND holder = $2 AND token = $3::bigint AND expires_at > clock_timestamp()
            FOR SHARE
            """, [unit, holder, String(token)])
        guard !rows.rows.isEmpty else {
            revoke()
            throw LeaseLost(unit: unit, token: token)
        }
    }

    /// Throws `LeaseLost` once the lease may have run out, before a write PostgreSQL cannot fence.
    func checkValid() throws {
        guard isValid else { throw LeaseLost(unit: unit, token: token) }
    }
}

/// This instance no longer holds the unit: its flows stop, and the batch in hand is rolled back.
public struct LeaseLost: Error, CustomStringConvertible {
    public let unit: String
    public let token: Int64
    public var description: String { "lease of \(unit) lost (token \(token)); batch rolled back" }
}
