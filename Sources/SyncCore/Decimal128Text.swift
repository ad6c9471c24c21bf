/// A decimal number in text form that is known to fit IEEE 754-2008 Decimal128 exactly.
///
/// PostgreSQL `numeric` and BSON Decimal128 both keep the scale ("12.50" stays "12.50"), so
/// the text is the exact value on both sides; the check here rejects what Decimal128 would
/// round (more than 34 significant digits) instead of silently changing a price.
public struct Decimal128Text: Sendable, Hashable, CustomStringConvertible {
    public let text: String

    public static let maxDigits = 34
    public static let minExponent = -6176
    public static let maxExponent = 6111

    public enum Problem: Error, Sendable, Equatable {
        case notANumber
        case tooManyDigits(Int)
        case exponentOutOfRange
        case malformed
    }

    public init(_ text: String) throws(Problem) {
        let trimmed = text
        var digits = 0
        var leading = true
        var exponent = 0
        var sawDigit = false
        var sawPoint = false
        var fractionDigits = 0
        var chars = Substring(trimmed).utf8[...]
        if let first = chars.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            chars = chars.dropFirst()
        }
        let lowered = String(decoding: chars, as: UTF8.self).lowercased()
        if lowered == "nan" || lowered == "infinity" || lowered == "inf" {
            throw .notANumber
        }
        var index = chars.startIndex
        while index < chars.endIndex {
            let c = chars[index]
            if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                sawDigit = true
                if sawPoint { fractionDigits += 1 }
                if c != UInt8(ascii: "0") || !leading {
                    leading = false
                    digits += 1
                }
            } else if c == UInt8(ascii: ".") && !sawPoint {
                sawPoint = true
            } else if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                let rest = String(decoding: chars[chars.index(after: index)...], as: UTF8.self)
                guard let e = Int(rest) else { throw .malformed }
                exponent = e
                break
            } else {
                throw .malformed
            }
            index = chars.index(after: index)
        }
        guard sawDigit else { throw .malformed }
        if digits > Self.maxDigits {
            throw .tooManyDigits(digits)
        }
        let adjusted = exponent - fractionDigits
        guard adjusted >= Self.minExponent, adjusted <= Self.maxExponent else {
            throw .exponentOutOfRange
        }
        self.text = trimmed
    }

    public var description: String { text }
}
