/// How NocoDB turns a field title into a PostgreSQL column name, so that a rename asks for
/// the column name NocoDB would derive from the title (the client sends it; NocoDB then only
/// sanitizes and shortens what it is sent).
public enum NocoDBNames {
    /// helpers/columnHelpers.ts:409-424 sanitizeColumnName: every character outside
    /// `[A-Za-z0-9_]` (JavaScript's `\W` without the `u` flag, which matches UTF-16 code
    /// units, so a character beyond the BMP becomes two) becomes `_`; a name of underscores
    /// only becomes `field`. NocoDB then cuts it to 54 characters on PostgreSQL (59 less a
    /// suffix buffer, services/columns.service.ts:358-374).
    public static func columnName(forTitle title: String) -> String {
        var name = ""
        for scalar in title.unicodeScalars {
            if scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "_") {
                name.unicodeScalars.append(scalar)
            } else {
                name += String(repeating: "_", count: String(scalar).utf16.count)
            }
        }
        if name.allSatisfy({ $0 == "_" }) { name = "field" }
        return String(name.prefix(54))
    }
}
