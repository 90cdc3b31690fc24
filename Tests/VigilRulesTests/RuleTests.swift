import Foundation
import Testing
@testable import VigilCore
@testable import VigilFeatures
@testable import VigilRules

@Suite struct RuleTests {
    let schema = FeatureSchema(names: ["card_count_5m", "card_big_count_5m", "card_speed_kmh"])

    func dir() throws -> String {
        let d = NSTemporaryDirectory() + "vigil-rules-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: d + "/lists", withIntermediateDirectories: true)
        try "# bad cards\n4000000000000002\n\n  4000000000000010  # trailing comment\n".write(toFile: d + "/lists/deny.txt", atomically: true, encoding: .utf8)
        return d
    }

    let rulesText = """
        version: v7
        lists:
          deny_cards: lists/deny.txt
        rules:
          - id: deny
            when: card_id in deny_cards
            action: block
            reason: deny-listed card
          - id: burst
            when: amount > 1000 and card_big_count_5m >= 2
            action: review
            reason: three big ones in 5 minutes
          - id: travel
            when: card_speed_kmh > 900
            action: challenge
            reason: impossible travel
          - id: vip
            when: customer_id == "vip"
            action: allow
            reason: allow-listed customer
          - id: note
            when: channel == "ecom"
            action: tag
            reason: online
        """

    func outcome(_ rules: RuleSet, _ tx: Transaction, _ row: [Float]) -> RuleOutcome {
        row.withUnsafeBufferPointer { rules.evaluate(tx, row: $0) }
    }

    @Test func evaluatesForcesFloorsAndTags() throws {
        let d = try dir()
        try rulesText.write(toFile: d + "/rules.yaml", atomically: true, encoding: .utf8)
        let rules = try RuleSet.load(path: d + "/rules.yaml", schema: schema)
        #expect(rules.version == "v7" && rules.rules.count == 5 && rules.lists[0].values.count == 2)
        var tx = Transaction(id: "1", timestamp: 0, amount: 1500, cardID: "4000000000000010", customerID: "vip", channel: "ecom")
        var o = outcome(rules, tx, [0, 2, 1000])
        #expect(o.forced == .block)  // block beats allow
        #expect(o.floor == .review)
        #expect(o.hits.map(\.id) == ["deny", "burst", "travel", "vip", "note"])
        tx.cardID = "4111"
        o = outcome(rules, tx, [0, 0, .nan])
        #expect(o.forced == .approve && o.floor == .approve && o.hits.map(\.id) == ["vip", "note"])
        tx.customerID = nil
        o = outcome(rules, tx, [0, 1, 100])
        #expect(o.forced == nil && o.hits.map(\.id) == ["note"])
    }

    @Test(arguments: [
        ("when: card_count_5n > 3", "rules.yaml:3", "unknown name 'card_count_5n'; did you mean 'card_count_5m'?"),
        ("when: card_id > 3", "rules.yaml:3", "rule 'r1'"),
        ("when: amount >", "rules.yaml:3", "ends too early"),
        ("when: label == 1", "rules.yaml:3", "unknown name 'label'"),
    ])
    func typeErrorsNameFileLineAndRule(when: String, location: String, message: String) {
        let text = "rules:\n  - id: r1\n    \(when)\n    action: block\n"
        #expect { try RuleSet.parse(text, file: "rules.yaml", schema: schema) } throws: { e in
            "\(e)".hasPrefix(location) && "\(e)".contains(message) && "\(e)".contains("r1")
        }
    }

    @Test("a large rule file: every rule that holds is a hit, in file order, on a thread with a small stack")
    func largeRuleFileKeepsOrder() throws {
        // Even rules hold below the amount, odd ones above it.
        let count = 5_000, amount = 2_500
        var text = "rules:\n"
        for k in 0..<count { text += "  - id: r\(k)\n    when: amount \(k % 2 == 0 ? ">" : "<") \(k)\n    action: tag\n" }
        let rules = try RuleSet.parse(text, file: "big.yaml", schema: schema)
        #expect(rules.rules.count == count)
        let tx = Transaction(id: "1", timestamp: 0, amount: Double(amount))
        let expected = (0..<count).filter { $0 % 2 == 0 ? amount > $0 : amount < $0 }.map { "r\($0)" }
        // 64 KiB of stack: one closure per rule nested in the next would need far more.
        nonisolated(unsafe) var hits: [String] = []
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            hits = outcome(rules, tx, [0, 0, 0]).hits.map(\.id)
            done.signal()
        }
        thread.stackSize = 64 << 10
        thread.start()
        done.wait()
        #expect(hits == expected)
        #expect(expected.count == 2_500)
    }

    @Test func structuralErrors() {
        let cases = [
            "rules:\n  - id: a\n    when: amount > 1\n    action: explode\n",
            "rules:\n  - id: a\n    when: amount > 1\n    action: block\n  - id: a\n    when: amount > 2\n    action: block\n",
            "rules:\n  - when: amount > 1\n    action: block\n",
            "lists:\n  x: /nonexistent/file.txt\nrules: []\n",
            "rules:\n  - id: a\n    when: amount > 1\n    action: block\n    severity: 3\n",
            "rules: [\n",
        ]
        for c in cases {
            #expect(throws: ConfigurationError.self, "\(c)") { try RuleSet.parse(c, file: "r.yaml", schema: schema) }
        }
    }

    @Test func shippedRulesTypeCheckAgainstTheDefaultSpec() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let schema = try FeaturePlan(spec: .default).schema
        let rules = try RuleSet.load(path: root.path + "/rules/default.yaml", schema: schema)
        #expect(rules.rules.count >= 8)
        // Card testing: the third small amount within 10 minutes is blocked.
        var row = [Float](repeating: .nan, count: schema.count)
        row[schema.index(of: "card_small_count_10m")!] = 3
        row[schema.index(of: "amount")!] = 1.5  // the spec copies amount into the row
        let hit = row.withUnsafeBufferPointer { rules.evaluate(Transaction(id: "t", timestamp: 0, amount: 1.5, cardID: "4999"), row: $0) }
        #expect(hit.forced == .block && hit.hits.first?.id == "card_testing_burst", "\(hit)")
        row[schema.index(of: "amount")!] = 50
        let bin = row.withUnsafeBufferPointer { rules.evaluate(Transaction(id: "t", timestamp: 0, amount: 50, cardID: "4000011234567890"), row: $0) }
        #expect(bin.hits.map(\.id) == ["deny_listed_bin"])
    }
}
