import Foundation
import Synchronization

/// SplitMix64: a seeded generator, so a run's operations can be replayed from its seed.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E4B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One application write, as the generator issued it. Every operation is idempotent when
/// retried (insert if absent, set to fixed values, delete), so a write whose outcome is unknown
/// (the server restarted mid-call) is simply repeated.
struct Operation: Sendable {
    enum Kind: Sendable { case insert, update, delete, softDelete }
    var kind: Kind
    var table: String
    var key: String
    /// Field values as text (integers and decimals in their canonical form).
    var fields: [String: String]
}

/// The tables the chaos run writes and how their fields are generated.
enum ChaosTables {
    static let names = ["waiter_ops", "cashier_txns"]
    static let fields: [String: [String]] = [
        "waiter_ops": ["table_no", "action", "notes"],
        "cashier_txns": ["amount", "currency", "method"],
    ]
    static let integerFields: Set<String> = ["table_no"]
    static let decimalFields: Set<String> = ["amount"]

    static func value(of field: String, using rng: inout SeededRandom) -> String {
        switch field {
        case "table_no": String(Int.random(in: 1...60, using: &rng))
        case "amount": String(format: "%d.%02d", Int.random(in: 0...500, using: &rng), Int.random(in: 0...99, using: &rng))
        case "currency": ["EUR", "USD", "GBP"].randomElement(using: &rng)!
        case "method": ["cash", "card", "voucher"].randomElement(using: &rng)!
        case "action": ["seat", "order", "serve", "clear", "bill"].randomElement(using: &rng)!
        default: "note \(Int.random(in: 0...9999, using: &rng)) café ☕ \"q\""
        }
    }
}

/// Issues a reproducible stream of inserts, updates and deletes for the keys one side owns,
/// and keeps the state those operations imply: the expected final state of both databases.
/// Each key is written by one side only, so the expected state does not depend on timing.
struct OperationStream {
    let side: String
    private var rng: SeededRandom
    private var live: [String: [String]] = [:]  // table -> live keys
    private var next = 0

    init(side: String, seed: UInt64) {
        self.side = side
        rng = SeededRandom(seed: seed ^ (side == "nocodb" ? 0x6E6F_636F : side == "mongo" ? 0x6D6F_6E67 : 0x6574_6C00))
    }

    mutating func nextOperation() -> Operation {
        let table = ChaosTables.names.randomElement(using: &rng)!
        let keys = live[table] ?? []
        let roll = Double.random(in: 0..<1, using: &rng)
        let fields = ChaosTables.fields[table]!
        if keys.count < 5 || roll < 0.4 {
            next += 1
            let key = "\(side.prefix(1))-\(next)"
            live[table, default: []].append(key)
            return Operation(kind: .insert, table: table, key: key,
                             fields: Dictionary(uniqueKeysWithValues: fields.map { ($0, ChaosTables.value(of: $0, using: &rng)) }))
        }
        let key = keys.randomElement(using: &rng)!
        if roll < 0.85 {
            let chosen = fields.filter { _ in Bool.random(using: &rng) }
            let set = chosen.isEmpty ? [fields[0]] : chosen
            return Operation(kind: .update, table: table, key: key,
                             fields: Dictionary(uniqueKeysWithValues: set.map { ($0, ChaosTables.value(of: $0, using: &rng)) }))
        }
        live[table]!.removeAll { $0 == key }
        let soft = side == "nocodb" && Bool.random(using: &rng)
        return Operation(kind: soft ? .softDelete : .delete, table: table, key: key, fields: [:])
    }
}

/// The state the applied operations imply, per table and key (absent: deleted or never made).
final class ExpectedState: Sendable {
    private let state = Mutex<[String: [String: [String: String]]]>([:])
    private let applied = Mutex(0)

    func apply(_ op: Operation) {
        state.withLock { s in
            switch op.kind {
            case .insert: s[op.table, default: [:]][op.key] = op.fields
            case .update: s[op.table]?[op.key]?.merge(op.fields) { _, new in new }
            case .delete, .softDelete: s[op.table]?[op.key] = nil
            }
        }
        applied.withLock { $0 += 1 }
    }

    var records: [String: [String: [String: String]]] { state.withLock { $0 } }
    var operations: Int { applied.withLock { $0 } }
}
