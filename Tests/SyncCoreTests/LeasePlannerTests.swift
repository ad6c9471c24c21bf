import Testing
@testable import SyncCore

/// The planner run by every instance of a simulated lease table, round after round, the way
/// `LeaseKeeper` ticks: all instances plan on the same snapshot (the worst case: they tick at
/// the same moment), then apply in a random order, a take succeeding only if the unit is
/// still free, as the conditional UPDATE does.
@Suite struct LeasePlannerTests {
    /// SplitMix64: the same cases on every run.
    struct Seeded: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    struct World {
        var units: [String]
        var holder: [String: String] = [:]
        var expired: Set<String> = []
        var live: [String]

        func leases() -> [LeasePlanner.Lease] {
            units.map { u in
                LeasePlanner.Lease(unit: u, holder: holder[u], expired: expired.contains(u),
                                   holderAlive: holder[u].map(live.contains) ?? false)
            }
        }

        /// What an instance counts as held after its renewal: its own leases still current.
        func held(by me: String) -> Set<String> {
            Set(units.filter { holder[$0] == me && !expired.contains($0) })
        }

        func validHolder(_ unit: String) -> String? {
            guard let h = holder[unit], !expired.contains(unit), live.contains(h) else { return nil }
            return h
        }

        func isFree(_ unit: String, for me: String) -> Bool {
            validHolder(unit) == nil || validHolder(unit) == me
        }

        /// One tick of every live instance; returns how many leases changed hands or state.
        mutating func round(using rng: inout Seeded) -> Int {
            let snapshot = leases()
            var plans: [(String, LeasePlanner.Plan)] = []
            for me in live {
                let held = held(by: me)
                let plan = LeasePlanner.plan(me: me, live: live, leases: snapshot, held: held)
                // The planner asks only for what is free and gives back only what it holds.
                #expect(plan.release.allSatisfy(held.contains))
                #expect(plan.acquire.allSatisfy { isFree($0, for: me) && !held.contains($0) })
                #expect(plan.release.isEmpty || plan.acquire.isEmpty)
                plans.append((me, plan))
            }
            var changes = 0
            for (me, plan) in plans.shuffled(using: &rng) {
                for u in plan.release where holder[u] == me {
                    holder[u] = nil
                    changes += 1
                }
                for u in plan.acquire where isFree(u, for: me) {
                    holder[u] = me
                    expired.remove(u)
                    changes += 1
                }
            }
            return changes
        }

        /// Rounds until a round changes nothing; returns how many changed something.
        mutating func settle(using rng: inout Seeded, limit: Int = 20) -> Int {
            var rounds = 0
            while rounds < limit, round(using: &rng) > 0 { rounds += 1 }
            return rounds
        }

        func count(_ me: String) -> Int { units.filter { validHolder($0) == me }.count }
    }

    static func units(_ n: Int) -> [String] { (0..<n).map { "public.t\($0 < 10 ? "0" : "")\($0)" } }

    /// The fewest leases that must move from `held` (per instance) to any even spread.
    static func minimalMoves(_ held: [Int], units n: Int) -> Int {
        let k = held.count, base = n / k, spare = n % k
        // Which instances get the spare units: every choice of `spare` of them.
        var best = Int.max
        func choose(_ start: Int, _ left: Int, _ chosen: Set<Int>) {
            if left == 0 {
                best = min(best, (0..<k).reduce(0) { $0 + max(0, held[$1] - base - (chosen.contains($1) ? 1 : 0)) })
                return
            }
            guard start < k else { return }
            for i in start..<k { choose(i + 1, left - 1, chosen.union([i])) }
        }
        choose(0, spare, [])
        return best
    }

    func checkSettled(_ world: World, rounds: Int, _ context: String) {
        let n = world.units.count, k = world.live.count
        #expect(rounds <= 3, "\(context): \(rounds) rounds")
        for u in world.units { #expect(world.validHolder(u) != nil, "\(context): \(u) unprocessed") }
        for id in world.live {
            let c = world.count(id)
            #expect(c == n / k || c == n / k + 1, "\(context): \(id) holds \(c)")
        }
        #expect(world.live.filter { world.count($0) == n / k + 1 }.count == n % k, "\(context): spare units")
    }

    @Test func everyStartConvergesToAnEvenSpreadWithOneHolderPerUnit() {
        var rng = Seeded(state: 21)
        var worst = 0
        for n in 0...13 {
            for k in 1...4 {
                for trial in 0..<60 {
                    let live = (0..<k).map { "i\($0)" }.shuffled(using: &rng)
                    let dead = (0..<Int.random(in: 0...2, using: &rng)).map { "dead\($0)" }
                    var world = World(units: Self.units(n), live: live)
                    for u in world.units {
                        switch Int.random(in: 0..<4, using: &rng) {
                        case 0: break
                        case 1: world.holder[u] = (dead.isEmpty ? live : dead).randomElement(using: &rng)
                        default: world.holder[u] = live.randomElement(using: &rng)
                        }
                        if Bool.random(using: &rng) && Int.random(in: 0..<4, using: &rng) == 0 { world.expired.insert(u) }
                    }
                    let rounds = world.settle(using: &rng)
                    worst = max(worst, rounds)
                    checkSettled(world, rounds: rounds, "n=\(n) k=\(k) trial \(trial)")
                }
            }
        }
        #expect(worst >= 1)
    }

    @Test func aLeaveMovesOnlyTheLeaversUnitsAndAJoinAsFewAsPossible() {
        var rng = Seeded(state: 2121)
        for n in 0...13 {
            for k in 1...4 {
                for _ in 0..<20 {
                    var world = World(units: Self.units(n), live: (0..<k).map { "i\($0)" })
                    _ = world.settle(using: &rng)
                    checkSettled(world, rounds: 0, "n=\(n) k=\(k) start")
                    var before = world.holder

                    // A new instance, whose id sorts anywhere among the others.
                    let joiner = ["a", "i1x", "z"].randomElement(using: &rng)!
                    let counts = world.live.map(world.count) + [0]
                    world.live.append(joiner)
                    var rounds = world.settle(using: &rng)
                    checkSettled(world, rounds: rounds, "n=\(n) k=\(k) join")
                    let joinMoves = world.units.filter { before[$0] != world.holder[$0] }.count
                    // A unit given back and taken by the joiner counts once: it moved once.
                    #expect(joinMoves == Self.minimalMoves(counts, units: n), "n=\(n) k=\(k): join moved \(joinMoves)")

                    // One instance leaves (killed: alive no more, its leases stay named).
                    before = world.holder
                    let leaver = world.live.randomElement(using: &rng)!
                    let orphaned = world.count(leaver)
                    world.live.removeAll { $0 == leaver }
                    guard !world.live.isEmpty else { continue }
                    rounds = world.settle(using: &rng)
                    checkSettled(world, rounds: rounds, "n=\(n) k=\(k) leave")
                    let leaveMoves = world.units.filter { before[$0] != world.holder[$0] }.count
                    let remaining = world.live.map { id in before.values.filter { $0 == id }.count }
                    // The leaver's units must move; beyond them, only what the remaining spread
                    // needs to even out.
                    #expect(leaveMoves == orphaned + Self.minimalMoves(remaining, units: n),
                            "n=\(n) k=\(k): leave moved \(leaveMoves), orphaned \(orphaned)")
                }
            }
        }
    }

    @Test func quotasGiveTheSpareUnitsToTheInstancesHoldingMost() {
        #expect(LeasePlanner.quotas(live: ["a", "b", "c"], units: 12, holding: [:]) == ["a": 4, "b": 4, "c": 4])
        #expect(LeasePlanner.quotas(live: ["a", "b", "c"], units: 13, holding: [:]) == ["a": 5, "b": 4, "c": 4])
        #expect(LeasePlanner.quotas(live: ["a", "b", "c"], units: 13, holding: ["c": 6]) == ["a": 4, "b": 4, "c": 5])
        #expect(LeasePlanner.quotas(live: [], units: 3, holding: [:]) == [:])
    }

    @Test func anOverQuotaInstanceGivesBackItsLastUnitsAndTakesNothing() {
        let leases = Self.units(4).map { LeasePlanner.Lease(unit: $0, holder: "a") }
        let plan = LeasePlanner.plan(me: "a", live: ["a", "b"], leases: leases, held: Set(Self.units(4)))
        #expect(plan == LeasePlanner.Plan(release: ["public.t02", "public.t03"]))
    }

    @Test func leasesOfDeadOrExpiredHoldersAreFreeAndTakenUpToTheQuota() {
        let leases = [
            LeasePlanner.Lease(unit: "u1", holder: "gone", holderAlive: false),
            LeasePlanner.Lease(unit: "u2", holder: "b", expired: true),
            LeasePlanner.Lease(unit: "u3", holder: "b"),
            LeasePlanner.Lease(unit: "u4", holder: nil),
        ]
        let plan = LeasePlanner.plan(me: "a", live: ["a", "b"], leases: leases, held: [])
        #expect(plan.release.isEmpty)
        #expect(Set(plan.acquire).isSubset(of: ["u1", "u2", "u4"]))
        #expect(plan.acquire.count == 2)
        // A lease still naming me that I no longer count (lost and not renewed) is taken anew.
        let again = LeasePlanner.plan(me: "a", live: ["a"], leases: [LeasePlanner.Lease(unit: "u1", holder: "a")], held: [])
        #expect(again.acquire == ["u1"])
    }

    @Test func instancesTakingTogetherStartAtDifferentUnits() {
        let leases = Self.units(12).map { LeasePlanner.Lease(unit: $0, holder: nil) }
        let live = ["a", "b", "c"]
        let firsts = live.map { LeasePlanner.plan(me: $0, live: live, leases: leases, held: []).acquire.first }
        #expect(Set(firsts).count == 3)
    }
}
