/// PostgreSQL timestamp text ⇄ BSON milliseconds, without Foundation's calendar.
///
/// NocoDB stores DateTime as `timestamp without time zone` holding UTC, while BSON dates are
/// UTC milliseconds. Parsing is pure integer arithmetic (civil-from-days) so it is exact over
/// PostgreSQL's whole range and cheap enough for every row.
public enum Timestamps {
    public enum Problem: Error, Sendable, Equatable {
        case malformed(String)
        case infinite
    }

    /// Parses `YYYY-MM-DD[ HH:MM:SS[.ffffff]][+HH[:MM[:SS]]][ BC]` (PostgreSQL's ISO output).
    /// Sub-millisecond digits are truncated toward the earlier instant.
    public static func parseMilliseconds(_ text: String) throws(Problem) -> Int64 {
        if text == "infinity" || text == "-infinity" { throw .infinite }
        var b = Array(text.utf8)
        var bc = false
        if b.count > 3, b.suffix(3) == Array(" BC".utf8) {
            bc = true
            b.removeLast(3)
        }
        var i = 0
        func number(_ minDigits: Int, _ maxDigits: Int) -> Int? {
            var v = 0
            var n = 0
            while i < b.count, n < maxDigits, b[i] >= 48, b[i] <= 57 {
                v = v * 10 + Int(b[i] - 48)
                i += 1
                n += 1
            }
            return n >= minDigits ? v : nil
        }
        func take(_ c: UInt8) -> Bool {
            if i < b.count, b[i] == c { i += 1; return true }
            return false
        }
        guard var year = number(4, 7), take(UInt8(ascii: "-")), let month = number(2, 2),
            take(UInt8(ascii: "-")), let day = number(2, 2), (1...12).contains(month), (1...31).contains(day)
        else { throw .malformed(text) }
        if bc { year = 1 - year }
        var hour = 0, minute = 0, second = 0, micros = 0
        if take(UInt8(ascii: " ")) || take(UInt8(ascii: "T")) {
            guard let h = number(2, 2), take(UInt8(ascii: ":")), let m = number(2, 2), take(UInt8(ascii: ":")),
                let s = number(2, 2), h < 25, m < 60, s < 61
            else { throw .malformed(text) }
            hour = h; minute = m; second = s
            if take(UInt8(ascii: ".")) {
                var digits = 0
                while i < b.count, b[i] >= 48, b[i] <= 57 {
                    if digits < 6 { micros = micros * 10 + Int(b[i] - 48) }
                    digits += 1
                    i += 1
                }
                guard digits > 0 else { throw .malformed(text) }
                for _ in digits..<6 where digits < 6 { micros *= 10 }
            }
        }
        var offsetSeconds = 0
        if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
            i += 1
            guard let oh = number(2, 2) else { throw .malformed(text) }
            var om = 0, os = 0
            if take(UInt8(ascii: ":")) { guard let v = number(2, 2) else { throw .malformed(text) }; om = v }
            if take(UInt8(ascii: ":")) { guard let v = number(2, 2) else { throw .malformed(text) }; os = v }
            offsetSeconds = sign * (oh * 3600 + om * 60 + os)
        } else if take(UInt8(ascii: "Z")) {
            offsetSeconds = 0
        }
        guard i == b.count else { throw .malformed(text) }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offsetSeconds)
        // Milliseconds directly: microseconds since 1970 overflow Int64 near PostgreSQL's
        // upper limit (294276 AD). `micros` is never negative, so this truncates toward the
        // earlier instant.
        return seconds * 1000 + Int64(micros / 1000)
    }

    /// `YYYY-MM-DD HH:MM:SS.mmm[ BC]` in UTC, the text PostgreSQL reads back into `timestamp`.
    public static func postgresText(milliseconds ms: Int64) -> String {
        let p = split(ms)
        return p.date + " " + p.time + p.era
    }

    /// `YYYY-MM-DD[ BC]` of the UTC day holding the instant.
    public static func postgresDate(milliseconds ms: Int64) -> String {
        let p = split(ms)
        return p.date + p.era
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, with PostgreSQL's ` BC` suffix before year 1.
    public static func iso8601(milliseconds ms: Int64) -> String {
        let p = split(ms)
        return p.date + "T" + p.time + "Z" + p.era
    }

    private static func split(_ ms: Int64) -> (date: String, time: String, era: String) {
        var days = ms / 86_400_000
        var rem = ms % 86_400_000
        if rem < 0 { rem += 86_400_000; days -= 1 }
        let (y, m, d) = civilFromDays(Int(days))
        let h = rem / 3_600_000, mi = rem / 60_000 % 60, s = rem / 1000 % 60, milli = rem % 1000
        let year = y <= 0 ? 1 - y : y
        return (pad(year, 4) + "-" + pad(m, 2) + "-" + pad(d, 2),
                pad(Int(h), 2) + ":" + pad(Int(mi), 2) + ":" + pad(Int(s), 2) + "." + pad(Int(milli), 3),
                y <= 0 ? " BC" : "")
    }

    private static func pad(_ v: Int, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    /// Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
