import Testing
@testable import SyncCore

@Suite struct TimestampsTests {
    @Test(arguments: [
        ("1970-01-01 00:00:00", Int64(0)),
        ("1970-01-01 00:00:00.001", 1),
        ("1970-01-01 00:00:00.0019", 1),
        ("1969-12-31 23:59:59.9995", -1),
        ("2024-02-29 12:34:56.789", 1_709_210_096_789),
        ("2024-02-29T12:34:56.789Z", 1_709_210_096_789),
        ("2024-02-29 14:34:56.789+02", 1_709_210_096_789),
        ("2024-02-29 07:04:56.789-05:30", 1_709_210_096_789),
        ("2024-03-01", 1_709_251_200_000),
        ("0001-01-01 00:00:00", -62_135_596_800_000),
        ("0001-12-31 00:00:00 BC", -62_135_683_200_000),
    ])
    func parses(text: String, ms: Int64) throws {
        #expect(try Timestamps.parseMilliseconds(text) == ms)
    }

    @Test(arguments: ["infinity", "-infinity", "2024-13-01", "2024-01-01 25:00:00", "yesterday", "2024-01-01 10:00", "2024-01-01 10:00:00."])
    func rejects(text: String) {
        #expect(throws: Timestamps.Problem.self) { try Timestamps.parseMilliseconds(text) }
    }

    @Test func formatsWhatItParses() throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            // PostgreSQL's range, 4713 BC to 294276 AD, in milliseconds.
            let ms = Int64.random(in: -210_866_803_200_000...9_224_318_015_999_999, using: &generator)
            #expect(try Timestamps.parseMilliseconds(Timestamps.postgresText(milliseconds: ms)) == ms)
            #expect(try Timestamps.parseMilliseconds(Timestamps.iso8601(milliseconds: ms)) == ms)
        }
    }

    @Test func civilDaysMatchKnownDates() {
        #expect(Timestamps.daysFromCivil(year: 2000, month: 3, day: 1) == 11_017)
        #expect(Timestamps.civilFromDays(11_017) == (2000, 3, 1))
        #expect(Timestamps.civilFromDays(-1) == (1969, 12, 31))
    }
}

