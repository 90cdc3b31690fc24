import Testing
@testable import VigilCore
@testable import VigilDecision

@Suite struct DeciderTests {
    let costs = try! CostMatrix.parse("""
        approve:   { fraud: "amount", legit: "0" }
        challenge: { fraud: "0.5 * amount + 1", legit: "1" }
        review:    { fraud: "5", legit: "5" }
        block:     { fraud: "0", legit: "10 + 0.1 * amount" }
        fallback: review
        """, file: "costs.yaml")

    func decide(_ p: Double, _ amount: Double, forced: Action? = nil, floor: Action = .approve) -> Decision {
        Decider(costs: costs).decide(probability: p, transaction: Transaction(id: "x", timestamp: 0, amount: amount), forced: forced, floor: floor)
    }

    /// Hand-computed: at amount 100, costs are approve 100p, challenge 51p + (1-p), review 5,
    /// block 20(1-p).
    @Test(arguments: [
        (0.001, Action.approve, 0.1),     // 0.1 < 1.05 < 5 < 19.98
        (0.05, .challenge, 3.5),          // approve 5, challenge 2.55+0.95 = 3.5, review 5, block 19
        (0.3, .review, 5),                // approve 30, challenge 15.3+0.7 = 16, review 5, block 14
        (0.9, .block, 2),                 // approve 90, challenge 46.1, review 5, block 2
    ])
    func leastExpectedCost(p: Double, expected: Action, cost: Double) {
        let d = decide(p, 100)
        #expect(d.action == expected)
        #expect(abs(d.expectedCost - cost) < 1e-9)
    }

    @Test func rulesForceAndFloor() {
        #expect(decide(0.001, 100, forced: .block).action == .block)
        #expect(decide(0.9, 100, forced: .approve).action == .approve)
        // Floor review at p = 0.001: review costs 5, block 19.98 → review.
        #expect(decide(0.001, 100, floor: .review).action == .review)
        // Floor challenge at p = 0.9: the costs already choose block, above the floor.
        #expect(decide(0.9, 100, floor: .challenge).action == .block)
    }

    @Test func noProbabilityFallsBack() {
        #expect(decide(.nan, 100).action == .review)
        #expect(decide(.nan, 100, forced: .block).action == .block)
        #expect(decide(.nan, 100, floor: .block).action == .block)
    }

    @Test func costFileErrors() {
        #expect { try CostMatrix.parse("approve: { fraud: \"amount\", legit: \"0\" }\n", file: "c.yaml") } throws: { "\($0)".contains("missing costs for 'challenge'") }
        let bad = "approve: { fraud: \"amont\", legit: \"0\" }\nchallenge: {fraud: \"1\", legit: \"1\"}\nreview: {fraud: \"1\", legit: \"1\"}\nblock: {fraud: \"1\", legit: \"1\"}\n"
        #expect { try CostMatrix.parse(bad, file: "c.yaml") } throws: { "\($0)".hasPrefix("c.yaml:1") && "\($0)".contains("did you mean 'amount'") }
        _ = CostMatrix.default
    }
}
