import Logging
import Postgres

/// The bridge's periodic chores that belong to no table: advancing the restore-detection
/// markers now and then, so a backup taken a while ago is recognised as behind. With several
/// instances, one does them (a session advisory lock), whichever leases it holds.
final class Housekeeping: Sendable {
    private let environment: FlowEnvironment

    init(environment: FlowEnvironment) {
        self.environment = environment
    }

    func run() throws {
        var logger = environment.logger
        logger[metadataKey: "flow"] = "housekeeping"
        let configuration = environment.configuration
        try runReconnecting("housekeeping", configuration: configuration, stop: environment.stop, logger: logger,
                            statistics: environment.toMongo) { onConnected in
            let connection = try PostgresConnection(url: configuration.postgresURL, applicationName: "nocobridge-housekeeping")
            onConnected()
            var last = ContinuousClock.now
            // One instance of several does the chores: whichever holds this session lock.
            var mine = false
            while !environment.stop.isStopped {
                if !mine {
                    mine = try connection.query("SELECT pg_try_advisory_lock(hashtextextended('nocobridge.housekeeping', 0))").rows.first?[0] == "t"
                }
                if mine && ContinuousClock.now - last >= configuration.generationInterval {
                    last = .now
                    try GenerationMarker().realign(connection: connection, mongo: environment.mongo)
                }
                environment.stop.sleep(milliseconds: 1000)
            }
        }
    }
}
