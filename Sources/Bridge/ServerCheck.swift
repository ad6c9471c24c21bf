import Foundation
import Logging
import Mongo
import Postgres
import SyncCore

/// What the bridge requires of the MongoDB deployment, checked at start so an unusable one is
/// one clear line (exit 2), and the clocks both sides date changes by.
public enum ServerCheck {
    /// Change events carry `wallTime`, pre- and post-images exist, from MongoDB 6.0.
    public static let minimumVersion = ServerVersion([6, 0])
    /// Clocks further apart than this make `last_write_wins` and tombstones compare times
    /// that do not mean what they say.
    public static let skewWarningMilliseconds: Int64 = 1000

    /// Why the server cannot serve the bridge, or nil.
    public static func problem(_ info: ServerInfo) -> String? {
        if info.isMongos {
            return "MONGO_URL names a mongos (a sharded cluster): not supported. The bridge keeps a unique index on "
                + "externalId, which a sharded collection allows only when it starts with the shard key, and it reads "
                + "change streams and currentOp per replica set; point it at an unsharded replica set, or shard the synced "
                + "collections on { externalId: 1 } and run one bridge per shard (not tested)"
        }
        if info.setName == nil {
            return "MONGO_URL names a standalone server: the bridge needs a replica set (change streams, majority writes); "
                + "a single server can be one: start it with a replica set name (replication.replSetName) and run rs.initiate() once"
        }
        if info.version < minimumVersion {
            return "MongoDB \(info.version) is too old: the bridge needs \(minimumVersion) or newer (change event wall times, pre- and post-images)"
        }
        return nil
    }

    /// MongoDB's clock minus PostgreSQL's (ms), each measured against this host's clock at
    /// the midpoint of a round trip, with the sum of both uncertainties.
    public struct Skew: Sendable, Codable, Equatable {
        public let milliseconds: Int64
        public let uncertaintyMilliseconds: Int64

        public var isLarge: Bool { abs(milliseconds) - uncertaintyMilliseconds > ServerCheck.skewWarningMilliseconds }
    }

    public static func skew(mongo: ClockOffset, postgres: ClockOffset) -> Skew {
        Skew(milliseconds: mongo.milliseconds - postgres.milliseconds,
             uncertaintyMilliseconds: mongo.uncertaintyMilliseconds + postgres.uncertaintyMilliseconds)
    }

    /// PostgreSQL's clock against this host's.
    static func postgresOffset(on connection: PostgresConnection) throws -> ClockOffset? {
        let sent = wallClockMilliseconds()
        let row = try connection.query("SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS now").named.first
        let received = wallClockMilliseconds()
        guard let now = row?["now"].flatMap({ Int64($0) }) else { return nil }
        return ClockOffset.estimate(serverTime: now, sentAt: sent, receivedAt: received)
    }

    /// Both clocks now; nil when either could not be read.
    public static func measureSkew(postgres connection: PostgresConnection, mongo: MongoClientPool) throws -> Skew? {
        guard let pg = try postgresOffset(on: connection), let m = try mongo.serverInfo().clockOffset else { return nil }
        return skew(mongo: m, postgres: pg)
    }
}
