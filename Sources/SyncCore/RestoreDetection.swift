/// Decides from the two sides' generation markers whether one was restored from a backup.
///
/// The bridge writes generation g+1 to PostgreSQL first and then to MongoDB, at each start,
/// periodically and after a resync. A backup carries the generation of its time, so after a
/// restore that side is behind. PostgreSQL ahead by exactly one is a crash between the two
/// writes, not a restore (so a MongoDB backup is recognised from two generations back).
public enum RestoreDetection {
    public enum Finding: Sendable, Equatable {
        case firstRun
        case consistent(generation: Int64)
        case restored(Side, nocodb: Int64?, mongo: Int64?)
    }

    public static func compare(nocodb: Int64?, mongo: Int64?) -> Finding {
        switch (nocodb, mongo) {
        case (nil, nil): return .firstRun
        case (nil, _): return .restored(.nocodb, nocodb: nil, mongo: mongo)
        case (_, nil): return .restored(.mongo, nocodb: nocodb, mongo: nil)
        case (let n?, let m?):
            if n == m || n == m + 1 { return .consistent(generation: n) }
            return n < m ? .restored(.nocodb, nocodb: n, mongo: m) : .restored(.mongo, nocodb: n, mongo: m)
        }
    }
}
