/// The order both sides sort keys in for a resync's merge: byte order of UTF-8, which
/// PostgreSQL's "C" collation and MongoDB's default string comparison share.
public enum KeyOrder {
    public static func utf8Less(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }
}
