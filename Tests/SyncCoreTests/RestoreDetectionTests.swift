import Testing
@testable import SyncCore

@Suite struct RestoreDetectionTests {
    @Test(arguments: [
        (Int64?.none, Int64?.none, RestoreDetection.Finding.firstRun),
        (5, 5, .consistent(generation: 5)),
        (6, 5, .consistent(generation: 6)),
        (7, 5, .restored(.mongo, nocodb: 7, mongo: 5)),
        (3, 5, .restored(.nocodb, nocodb: 3, mongo: 5)),
        (4, 5, .restored(.nocodb, nocodb: 4, mongo: 5)),
        (nil, 5, .restored(.nocodb, nocodb: nil, mongo: 5)),
        (5, nil, .restored(.mongo, nocodb: 5, mongo: nil)),
    ])
    func decides(nocodb: Int64?, mongo: Int64?, expected: RestoreDetection.Finding) {
        #expect(RestoreDetection.compare(nocodb: nocodb, mongo: mongo) == expected)
    }
}
