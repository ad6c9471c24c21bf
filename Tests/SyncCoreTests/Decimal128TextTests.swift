import Testing
@testable import SyncCore

@Suite struct Decimal128TextTests {
    @Test(arguments: ["0", "12.50", "-0.001", "1234567890123456789012345678901234", "0.0000000000000000000000000000000001234", "1E+6111", "1E-6176", "+3"])
    func accepts(text: String) throws {
        #expect(try Decimal128Text(text).text == text)
    }

    @Test func rejectsWhatDecimal128WouldRound() {
        #expect(throws: Decimal128Text.Problem.tooManyDigits(35)) { try Decimal128Text("12345678901234567890123456789012345") }
        #expect(throws: Decimal128Text.Problem.tooManyDigits(40)) { try Decimal128Text("1.234567890123456789012345678901234567890") }
    }

    @Test(arguments: ["NaN", "Infinity", "-Infinity"])
    func rejectsNonNumbers(text: String) {
        #expect(throws: Decimal128Text.Problem.notANumber) { try Decimal128Text(text) }
    }

    @Test(arguments: ["", "1.2.3", "abc", "1e", "--1"])
    func rejectsMalformed(text: String) {
        #expect(throws: Decimal128Text.Problem.self) { try Decimal128Text(text) }
    }

    @Test func rejectsExponentsOutsideRange() {
        #expect(throws: Decimal128Text.Problem.exponentOutOfRange) { try Decimal128Text("1E+6112") }
        #expect(throws: Decimal128Text.Problem.exponentOutOfRange) { try Decimal128Text("1E-6177") }
    }
}
