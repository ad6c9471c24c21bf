/// Which leases one bridge instance gives back and which it tries to take, so that several
/// instances share the units (tables) evenly, each unit has one holder, and a join or a leave
/// moves as few leases as possible. Every instance runs it on its own view of the lease table;
/// the views agree once the table settles, and while they disagree the conditional take
/// (`holder` still free) keeps a unit to one holder. Pure: the keeper reads, this decides.
public enum LeasePlanner {
    /// One unit's lease as read from the lease table.
    public struct Lease: Sendable, Equatable {
        public var unit: String
        public var holder: String?
        /// The expiry has passed (the holder froze or was cut off, or it gave the lease back).
        public var expired: Bool
        /// The holder is a live instance (its row is current and its session holds its lock).
        public var holderAlive: Bool

        public init(unit: String, holder: String?, expired: Bool = false, holderAlive: Bool = true) {
            self.unit = unit
            self.holder = holder
            self.expired = expired
            self.holderAlive = holderAlive
        }

        /// Anyone may take it: nobody holds it, or its holding ran out or died with its holder.
        public var isFree: Bool { holder == nil || expired || !holderAlive }
    }

    public struct Plan: Sendable, Equatable {
        /// Units to give back (stop their work first), in sort order.
        public var release: [String] = []
        /// Units to try to take, in preference order.
        public var acquire: [String] = []

        public init(release: [String] = [], acquire: [String] = []) {
            self.release = release
            self.acquire = acquire
        }

        public var isEmpty: Bool { release.isEmpty && acquire.isEmpty }
    }

    /// How many units each live instance should hold: `n / k` each, and the `n % k` left over
    /// to the instances holding most now (ties by id), so that a join or a leave does not take
    /// a unit from one instance only to give another the spare one. Every instance computes
    /// the same answer from the same lease table.
    public static func quotas(live: [String], units: Int, holding: [String: Int]) -> [String: Int] {
        let instances = Set(live).sorted(by: KeyOrder.utf8Less)
        guard !instances.isEmpty else { return [:] }
        let base = units / instances.count, spare = units % instances.count
        let byHolding = instances.sorted { a, b in
            let ha = holding[a, default: 0], hb = holding[b, default: 0]
            return ha != hb ? ha > hb : KeyOrder.utf8Less(a, b)
        }
        var out: [String: Int] = [:]
        for (index, id) in byHolding.enumerated() { out[id] = base + (index < spare ? 1 : 0) }
        return out
    }

    /// - Parameters:
    ///   - me: this instance.
    ///   - live: the live instances (this one is counted whether listed or not).
    ///   - leases: every unit's lease, one per unit.
    ///   - held: the units this instance holds by its own reckoning (renewed this tick). A
    ///     lease naming it that it does not count as held is free to take again.
    public static func plan(me: String, live: [String], leases: [Lease], held: Set<String>) -> Plan {
        let instances = Set(live + [me]).sorted(by: KeyOrder.utf8Less)
        let sorted = leases.sorted { KeyOrder.utf8Less($0.unit, $1.unit) }
        let mine = sorted.filter { held.contains($0.unit) }.map(\.unit)
        var holding: [String: Int] = [me: mine.count]
        var free: [String] = []
        for lease in sorted where !held.contains(lease.unit) {
            if lease.isFree || lease.holder == me {
                free.append(lease.unit)
            } else if let holder = lease.holder {
                holding[holder, default: 0] += 1
            }
        }
        let quota = quotas(live: instances, units: sorted.count, holding: holding)
        let myQuota = quota[me] ?? 0
        if mine.count > myQuota {
            return Plan(release: Array(mine.suffix(mine.count - myQuota)))
        }
        guard !free.isEmpty else { return Plan() }
        // Start at an offset that depends on the rank, so instances taking at the same moment
        // mostly ask for different units.
        let rank = instances.firstIndex(of: me) ?? 0
        let offset = (rank * free.count) / instances.count
        let rotated = Array(free[offset...] + free[..<offset])
        let want = myQuota - mine.count
        // Units nobody else has room for (views disagree for a moment): taken anyway, so no
        // unit stays unprocessed; the excess is given back once the views agree.
        let othersRoom = instances.filter { $0 != me }.reduce(0) { sum, id in sum + max(0, quota[id, default: 0] - holding[id, default: 0]) }
        let extra = max(0, free.count - want - othersRoom)
        return Plan(acquire: Array(rotated.prefix(want + extra)))
    }
}
