import SyncCore

/// Names a bridge process on the server so its operations can be found while it is gone:
/// every write command carries `comment: <identity>`, and every connection announces an
/// `appName` that ends with it. The URL's own `appName` (operators set one to spot the
/// bridge in their monitoring) is kept in front, never in place of it: two processes
/// sharing a URL must still be told apart.
public enum MongoIdentity {
    /// `nocobridge/<instance>`, or `nocobridge` for a process that names no instance.
    public static func identity(instance: String?) -> String {
        guard let instance, !instance.isEmpty else { return "nocobridge" }
        return "nocobridge/" + instance
    }

    /// libmongoc refuses longer application names (`MONGOC_HANDSHAKE_APPNAME_MAX`).
    public static let maxAppNameBytes = 128

    /// The `appName` for a pool: the URL's `appName`, a space, then `identity`; the URL's part
    /// is shortened when the whole would exceed 128 bytes. nil when `identity` alone is too
    /// long.
    public static func appName(urlAppName: String?, identity: String) -> String? {
        guard identity.utf8.count <= maxAppNameBytes else { return nil }
        guard var prefix = urlAppName, !prefix.isEmpty else { return identity }
        if belongs(appName: prefix, to: identity) { return prefix }
        while !prefix.isEmpty && prefix.utf8.count + 1 + identity.utf8.count > maxAppNameBytes {
            prefix.removeLast()
        }
        return prefix.isEmpty ? identity : prefix + " " + identity
    }

    /// Whether a connection announcing `appName` belongs to the process named `identity`.
    public static func belongs(appName: String, to identity: String) -> Bool {
        appName == identity || appName.hasSuffix(" " + identity)
    }
}

/// Reads `currentOp` / `$currentOp` entries. Pure, so the rules can be tested against both
/// shapes: mongod lists each running operation with `command.comment`, `op`, `appName` and
/// `clientMetadata`; SecantusDB lists one entry per connection with only
/// `op`/`command: {<last command>: 1}` and `clientMetadata` (research note C).
public enum RunningOperations {
    /// `op` values of write operations (mongod uses `remove` for a delete statement).
    static let writeOps: Set<String> = ["insert", "update", "remove", "delete"]
    /// Command names of write commands.
    static let writeCommands = ["insert", "update", "delete"]
    /// Command names that are reads even when they carry our comment.
    static let readCommands = ["find", "aggregate", "getMore", "count", "distinct"]

    /// How many entries are active write operations of `identity`.
    public static func writes(in operations: [Document], identity: String) -> Int {
        operations.filter { isWrite($0, of: identity) }.count
    }

    /// An entry that is active, belongs to `identity` (its command's `comment` is the
    /// identity, or its connection's `appName` / `clientMetadata.application.name` ends with
    /// it) and is a write (`op` insert/update/remove/delete, a write command, or a command
    /// carrying our comment, which only writes do).
    public static func isWrite(_ operation: Document, of identity: String) -> Bool {
        if case .bool(false)? = operation["active"] { return false }
        let command: Document = if case .document(let c)? = operation["command"] { c } else { Document() }
        let commentIsOurs = command["comment"] == .string(identity)
        var ours = commentIsOurs
        if case .string(let name)? = operation["appName"], MongoIdentity.belongs(appName: name, to: identity) { ours = true }
        if case .document(let metadata)? = operation["clientMetadata"], case .document(let application)? = metadata["application"],
           case .string(let name)? = application["name"], MongoIdentity.belongs(appName: name, to: identity) {
            ours = true
        }
        guard ours else { return false }
        if readCommands.contains(where: { command[$0] != nil }) { return false }
        if case .string(let op)? = operation["op"], writeOps.contains(op) { return true }
        if writeCommands.contains(where: { command[$0] != nil }) { return true }
        return commentIsOurs
    }
}
