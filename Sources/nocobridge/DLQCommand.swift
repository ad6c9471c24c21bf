import ArgumentParser
import Bridge
import Foundation

struct DLQCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq", abstract: "Dead letters: changes that could not cross.",
        subcommands: [List.self, Show.self, Retry.self, Drop.self])

    struct List: AsyncParsableCommand {
        @OptionGroup var options: ConnectionOptions
        @Option(help: "At most this many.") var limit = 100

        func run() async throws {
            try await runReporting {
                let entries = try DeadLetters(configuration: try options.configuration(requireMongo: false),
                                              logger: makeLogger("nocobridge.dlq")).list(limit: limit)
                var out = "ID      DIRECTION  SOURCE                          KEY                                   FIELD          RETRIES  ERROR\n"
                for e in entries {
                    out += [String(e.id).padding(toLength: 7, withPad: " ", startingAt: 0), e.direction.padding(toLength: 10, withPad: " ", startingAt: 0),
                            e.source.padding(toLength: 31, withPad: " ", startingAt: 0), (e.key ?? "-").padding(toLength: 37, withPad: " ", startingAt: 0),
                            (e.field ?? "-").padding(toLength: 14, withPad: " ", startingAt: 0), String(e.retries).padding(toLength: 8, withPad: " ", startingAt: 0),
                            e.error].joined(separator: " ") + "\n"
                }
                FileHandle.standardOutput.write(Data(out.utf8))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        @OptionGroup var options: ConnectionOptions
        @Argument var id: Int64

        func run() async throws {
            try await runReporting {
                let e = try DeadLetters(configuration: try options.configuration(requireMongo: false),
                                        logger: makeLogger("nocobridge.dlq")).show(id)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                FileHandle.standardOutput.write(try encoder.encode(e) + Data("\n".utf8))
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        @OptionGroup var options: ConnectionOptions
        @Argument var id: Int64?
        @Flag(help: "Retry every dead letter.") var all = false

        func run() async throws {
            try await runReporting {
                guard all != (id != nil) else {
                    throw ConfigurationError(setting: "dlq retry", message: "give one ID or --all")
                }
                let r = try DeadLetters(configuration: try options.configuration(), logger: makeLogger("nocobridge.dlq")).retry(id)
                FileHandle.standardOutput.write(Data("resolved \(r.resolved), still failing \(r.failing)\n".utf8))
                if r.failing > 0 { throw ExitCode(1) }
            }
        }
    }

    struct Drop: AsyncParsableCommand {
        @OptionGroup var options: ConnectionOptions
        @Argument var id: Int64

        func run() async throws {
            try await runReporting {
                try DeadLetters(configuration: try options.configuration(requireMongo: false), logger: makeLogger("nocobridge.dlq")).drop(id)
            }
        }
    }
}
