import Testing
import VigilCore
import VigilExpression
@testable import VigilFeatures

/// A transaction's string fields looked up in a set from their bytes in place answer as the
/// string path does (``RowContext``'s lookups: what rules such as `card_id in deny_cards`,
/// `lower(email) in …` and `prefix(card_id, 6) in …` run on).
@Suite struct RowContextTests {
    @Test func lookupsInPlaceMatchTheStrings() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("aZz@[AMm09-.\r\n".unicodeScalars) + ["é", "\u{212A}"]
        var values: [String?] = [nil, "", "4111222233334444", "User1920@Example.COM", "41\r\n1122"]
        for _ in 0..<1_500 {
            let n = Int.random(in: 0...24, using: &rng)
            values.append(String(String.UnicodeScalarView((0..<n).map { _ in alphabet.randomElement(using: &rng)! })))
        }
        let fields: [TransactionField] = [.cardID, .email, .deviceID]
        for t in [LookupTransform.none, .lower, .prefix(6), .prefix(0)] {
            // ASCII members, so that the set has its filter (non-ASCII probes still go through it).
            let set = StringSet(values.enumerated().compactMap { $0.offset % 4 == 0 ? $0.element.map(t.apply) : nil }.filter { $0.utf8.allSatisfy { $0 < 0x80 } })
            for field in fields {
                let slot = TransactionField.allCases.firstIndex(of: field)!
                for v in values {
                    var tx = Transaction(id: "t", timestamp: 0, amount: 1)
                    switch field {
                    case .cardID: tx.cardID = v
                    case .email: tx.email = v
                    default: tx.deviceID = v
                    }
                    let expected = v.map { set.contains(t.apply($0)) } ?? false
                    let found = withUnsafePointer(to: tx) { RowContext(transaction: $0, row: UnsafeBufferPointer(start: nil, count: 0)).string(slot, t, isIn: set) }
                    #expect(found == expected, "\(field) \(String(describing: v).debugDescription) \(t)")
                }
            }
        }
    }
}
