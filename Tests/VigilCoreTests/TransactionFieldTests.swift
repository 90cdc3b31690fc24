import Testing
import VigilCore

@Suite struct TransactionFieldTests {
    @Test func ordinalIsThePositionInAllCases() {
        for (i, f) in TransactionField.allCases.enumerated() { #expect(f.ordinal == i, "\(f)") }
    }
}
