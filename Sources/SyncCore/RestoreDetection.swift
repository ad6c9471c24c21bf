/// Decides from the two sides' generation markers whether one was restored from a backup,
/// and how to move the markers on.
///
/// The bridge writes generation g+1 to PostgreSQL first and then to MongoDB, at each start,
/// periodically and after a resync. A backup carries the generation of its time, so after a
/// restore that side is behind. PostgreSQL ahead by exactly one is a MongoDB write that did not
/// happen (a crash, a failover, a frozen server), not a restore; so a MongoDB backup is
/// recognised from two generations back. A side with no marker at all is at generation 0: a
/// first MongoDB write that failed leaves PostgreSQL at 1 and MongoDB without a marker, which
/// is consistent.
public enum RestoreDetection {
    public enum Finding: Sendable, Equatable {
        case firstRun
        case consistent(generation: Int64)
        case restored(Side, nocodb: Int64?, mongo: Int64?)
    }

    public static func compare(nocodb: Int64?, mongo: Int64?) -> Finding {
        if nocodb == nil && mongo == nil { return .firstRun }
        let n = nocodb ?? 0, m = mongo ?? 0
        if n == m || n == m + 1 { return .consistent(generation: n) }
        return n < m ? .restored(.nocodb, nocodb: nocodb, mongo: mongo) : .restored(.mongo, nocodb: nocodb, mongo: mongo)
    }

    /// The next marker writes.
    public enum Advance: Sendable, Equatable {
        /// A previous MongoDB write was lost: MongoDB is set to PostgreSQL's generation and
        /// PostgreSQL stays, so repeated MongoDB failures can never put PostgreSQL two ahead
        /// (which would read as a MongoDB restore).
        case mongoCatchesUp(to: Int64)
        /// PostgreSQL, then MongoDB, to this generation.
        case both(to: Int64)
    }

    public static func advance(nocodb: Int64?, mongo: Int64?) -> Advance {
        let n = nocodb ?? 0, m = mongo ?? 0
        return n > m ? .mongoCatchesUp(to: n) : .both(to: max(n, m) + 1)
    }
}
