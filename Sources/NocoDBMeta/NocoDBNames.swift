/// How NocoDB turns a field title into a PostgreSQL column name, so that a rename asks for
/// the column name NocoDB would choose itself.
public enum NocoDBNames {
    /// helpers/columnHelpers.ts:409-424 sanitizeColumnName: every character outside
    /// `[A-Za-z0-9_]` (JavaScript's `\W` without the `u` flag) becomes `_`; a name of
    /// underscores only becomes `field`. NocoDB then cuts it to 54 characters on PostgreSQL
    /// (59 less a suffix buffer, services/columns.service.ts:358-374).
    public static func columnName(forTitle title: String) -> String {
        var name = String(String.UnicodeScalarView(title.unicodeScalars.map { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "_") ? scalar : "_"
        }))
        if name.allSatisfy({ $0 == "_" }) { name = "field" }
        return String(name.prefix(54))
    }
}
