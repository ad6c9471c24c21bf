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
        // The first MongoDB marker write failed (failover, frozen server): not a restore.
        (1, nil, .consistent(generation: 1)),
        (nil, 1, .restored(.nocodb, nocodb: nil, mongo: 1)),
    ])
    func decides(nocodb: Int64?, mongo: Int64?, expected: RestoreDetection.Finding) {
        #expect(RestoreDetection.compare(nocodb: nocodb, mongo: mongo) == expected)
    }

    @Test(arguments: [
        (Int64?.none, Int64?.none, RestoreDetection.Advance.both(to: 1)),
        (5, 5, .both(to: 6)),
        (6, 5, .mongoCatchesUp(to: 6)),
        (1, nil, .mongoCatchesUp(to: 1)),
        (3, 7, .both(to: 8)),
        (9, 5, .mongoCatchesUp(to: 9)),
    ])
    func advances(nocodb: Int64?, mongo: Int64?, expected: RestoreDetection.Advance) {
        #expect(RestoreDetection.advance(nocodb: nocodb, mongo: mongo) == expected)
    }

    /// However often MongoDB's marker write fails between starts, the markers stay
    /// consistent: each start reads, compares and advances, and the MongoDB write may fail.
    @Test func repeatedMongoFailuresNeverLookLikeARestore() {
        var nocodb: Int64? = nil, mongo: Int64? = nil
        for start in 0..<20 {
            #expect(!{ if case .restored = RestoreDetection.compare(nocodb: nocodb, mongo: mongo) { true } else { false } }(),
                    "start \(start): \(String(describing: nocodb)) \(String(describing: mongo))")
            let mongoWriteFails = start % 3 != 2
            switch RestoreDetection.advance(nocodb: nocodb, mongo: mongo) {
            case .mongoCatchesUp(let g): if !mongoWriteFails { mongo = g }
            case .both(let g):
                nocodb = g
                if !mongoWriteFails { mongo = g }
            }
        }
    }
}
