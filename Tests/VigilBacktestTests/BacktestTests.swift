import Foundation
import Testing
@testable import VigilBacktest
import Vigil
import VigilSimulator

func scored(_ id: String, _ score: Double, _ label: Int8, day: Int64 = 0, card: UInt64 = 1, amount: Double = 100, action: Action = .approve) -> ScoredTransaction {
    ScoredTransaction(id: id, timestamp: 1_767_225_600_000 + day * 86_400_000, amount: amount, score: score, action: action, label: label,
                      card: card, latency: 10, degraded: false)
}

@Suite struct BacktestMetricTests {
    let costs = try! CostMatrix.parse("""
        approve:   { fraud: "amount", legit: "0" }
        challenge: { fraud: "0.5 * amount + 1", legit: "1" }
        review:    { fraud: "5", legit: "5" }
        block:     { fraud: "0", legit: "10 + 0.1 * amount" }
        """, file: nil)

    /// Four transactions, computed by hand.
    @Test func metricsOnATinyFixture() {
        let fixture = [
            scored("a", 0.9, 1, card: 1, action: .block),
            scored("b", 0.8, 0, card: 2, action: .review),
            scored("c", 0.7, 1, card: 3, action: .approve),
            scored("d", 0.1, 0, card: 4, action: .approve),
        ]
        let r = BacktestReport.compute(fixture, costs: costs, topK: 2)
        #expect(abs(r.aucROC - 0.75) < 1e-12)  // positives ranked 1st and 3rd of 4
        #expect(abs(r.averagePrecision - (1 + 2.0 / 3) / 2) < 1e-12)
        // FPR 0 reached with recall 1/2 (only "a" above the first negative).
        #expect(r.recallAtFPR["0.1%"] == 0.5 && r.recallAtFPR["1%"] == 0.5)
        // Top 2 cards of the day: cards 1 (fraud) and 2 (legit) → 1/2.
        #expect(r.precisionAtTopKPerDay == 0.5)
        // Realised costs: block on fraud 0, review on legit 5, approve on fraud 100, approve on legit 0.
        #expect(abs(r.expectedCostPerTransaction - 105.0 / 4) < 1e-12)
        #expect(abs(r.costApproveAll - 200.0 / 4) < 1e-12)
        #expect(r.verdictMix == ["block": 1, "review": 1, "approve": 2])
        #expect(r.fraudCaught == ["block": 1, "approve": 1])
        // Block above 0.75: blocks a (fraud, 0) and b (legit, 20); approves c (100) and d (0) → 30.
        let at = r.costByThreshold.first { abs($0.x - 0.75) < 1e-9 }!
        #expect(abs(at.y - 120.0 / 4) < 1e-12)
    }

    /// Card precision: per day, the k highest-scored cards out of k; a card already found
    /// fraudulent on an earlier day is not alerted again.
    @Test func cardPrecisionLeavesOutCardsFoundEarlier() {
        let fixture = [
            scored("a", 0.9, 1, day: 0, card: 1), scored("b", 0.8, 0, day: 0, card: 2), scored("c", 0.3, 1, day: 0, card: 3),
            scored("d", 0.1, 1, day: 0, card: 1),  // the card's second transaction: one card, its highest score
            scored("e", 0.95, 1, day: 1, card: 1), scored("f", 0.5, 0, day: 1, card: 4), scored("g", 0.1, 0, day: 1, card: 3),
        ]
        // Day 0: cards 1 (fraud) and 2 → 1/2. Day 1: card 1 was found on day 0; cards 4 and 3 → 0/2.
        #expect(BacktestReport.compute(fixture, costs: costs, topK: 2).precisionAtTopKPerDay == 0.25)
        // A day with fewer cards than k still counts out of k.
        #expect(BacktestReport.compute(Array(fixture.prefix(3)), costs: costs, topK: 4).precisionAtTopKPerDay == 0.5)
    }

    /// Two models on the same 20 days: B blocks the fraud A approves.
    @Test func compareTellsTheBetterModel() throws {
        var a: [ScoredTransaction] = [], b: [ScoredTransaction] = []
        for day in 0..<20 {
            for k in 0..<30 {
                let fraud: Int8 = k < 3 ? 1 : 0
                let id = "d\(day)-\(k)"
                // A ranks half of each day's fraud below legitimate transactions and approves it; B ranks it all on top.
                a.append(scored(id, fraud == 1 && k == 0 ? 0.05 : (fraud == 1 ? 0.9 : 0.1 + Double(k) / 100), fraud, day: Int64(day), card: UInt64(k + 1),
                                action: fraud == 1 && k != 0 ? .block : .approve))
                b.append(scored(id, fraud == 1 ? 0.95 : 0.1 + Double(k) / 100, fraud, day: Int64(day), card: UInt64(k + 1), action: fraud == 1 ? .block : .approve))
            }
        }
        let c = try Comparison.compare(a, b, names: ("A", "B"), costs: costs, resamples: 200)
        #expect(c.transactions == 600 && c.days == 20)
        #expect(c.cost.value < 0 && c.cost.significant && c.averagePrecision.value > 0 && c.averagePrecision.significant)
        #expect(c.verdict == "B costs less per transaction; B ranks fraud better (AP)")
        let same = try Comparison.compare(a, a, names: ("A", "A"), costs: costs, resamples: 200)
        #expect(!same.cost.significant && !same.averagePrecision.significant && same.cost.value == 0)
        #expect(throws: BacktestError.self) { try Comparison.compare(a, [], names: ("A", "none"), costs: costs) }
    }

    @Test func tuningPicksTheCheapestPolicy() {
        var fixture: [ScoredTransaction] = []
        for i in 0..<200 { fixture.append(scored("l\(i)", Double(i % 50) / 1000, 0, day: Int64(i % 2), card: UInt64(i + 10))) }
        for i in 0..<10 { fixture.append(scored("f\(i)", 0.6 + Double(i) / 40, 1, day: Int64(i % 2), card: UInt64(i + 1000))) }
        let (results, chosen) = Tuning.compare(fixture, costs: costs, reviewCapacity: nil)
        #expect(results.count == 3)
        #expect(results.allSatisfy { results[chosen].costPerTransaction <= $0.costPerTransaction })
        // Perfectly separated scores: some policy stops every fraud at no friction.
        #expect(results[chosen].fraudStopped == 1 && results[chosen].friction == 0)
        let capped = Tuning.compare(fixture, costs: costs, reviewCapacity: 0.01)
        #expect(capped.results.count == 4 && capped.results[capped.chosen].peakReviewRate <= 0.01)
    }
}

@Suite(.serialized) struct BacktestRunTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    func scorer() throws -> Scorer { try Scorer(configuration: ScorerConfiguration(modelDirectory: Self.root + "/models/default")) }

    @Test func aDayReplayedTwiceGivesIdenticalOutputs() throws {
        var o = Simulator.Options(transactions: 12_000, days: 2, seed: 21)
        o.start = 1_767_225_600_000
        let stream = Simulator(options: o).generate()
        var options = Backtest.Options()
        options.from = o.start + 86_400_000
        options.labelDelay = 3_600_000
        let a = try Backtest.run(stream, scorer: scorer(), options: options)
        let b = try Backtest.run(stream, scorer: scorer(), options: options)
        #expect(a.count > 4000)
        #expect(a.map(\.id) == b.map(\.id) && a.map(\.score) == b.map(\.score) && a.map(\.action) == b.map(\.action))
        let costs = CostMatrix.default
        let dirs = [NSTemporaryDirectory() + "bt-\(UUID())", NSTemporaryDirectory() + "bt-\(UUID())"]
        for (d, s) in zip(dirs, [a, b]) {
            var stable = s
            for i in stable.indices { stable[i].latency = 0 }  // the only field that is measured, not computed
            try Backtest.write(stable, report: BacktestReport.compute(stable, costs: costs), to: d)
        }
        for f in ["scores.jsonl", "report.json", "report.html"] {
            #expect(FileManager.default.contents(atPath: dirs[0] + "/" + f) == FileManager.default.contents(atPath: dirs[1] + "/" + f), "\(f)")
        }
        let html = String(decoding: FileManager.default.contents(atPath: dirs[0] + "/report.html")!, as: UTF8.self)
        #expect(html.components(separatedBy: "<svg").count - 1 == 7)
        #expect(!html.contains("http"))  // self-contained
        let back = try Backtest.readScores(directory: dirs[0])
        #expect(back.map(\.id) == a.map(\.id) && back.map(\.score) == a.map(\.score))
    }

    @Test func unwritableReportDirectoryIsAClearError() throws {
        let d = NSTemporaryDirectory() + "bt-ro-\(UUID())"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        try "x".write(toFile: d + "/scores.jsonl", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o500], ofItemAtPath: d)
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: d) }
        // Root ignores directory permissions; then use a path under a regular file instead.
        let target = getuid() == 0 ? d + "/scores.jsonl/sub" : d
        #expect { try Backtest.write([], report: BacktestReport.compute([], costs: .default), to: target) } throws: { e in
            "\(e)".hasPrefix("cannot") && "\(e)".contains(target)
        }
    }
}

@Suite struct SimulatorPatternTests {
    @Test func everyPatternAppearsAtItsRate() {
        let g = Simulator(options: .init(transactions: 60_000, days: 10, seed: 3)).generateLabelled()
        var counts: [FraudPattern: Int] = [:]
        for x in g { if let p = x.pattern { counts[p, default: 0] += 1 } }
        let fraud = g.filter { $0.transaction.label == 1 }.count
        #expect(g.filter { $0.pattern != nil }.allSatisfy { $0.transaction.label == 1 })
        #expect(fraud == counts.values.reduce(0, +))
        let rate = Double(fraud) / Double(g.count)
        #expect(rate > 0.01 && rate < 0.02, "\(rate)")
        for p in FraudPattern.allCases { #expect((counts[p] ?? 0) >= 25, "\(p): \(counts[p] ?? 0)") }
        // Card testing: bursts of sub-5 amounts followed by a large one on the same card.
        let testing = g.filter { $0.pattern == .cardTesting }.map(\.transaction)
        #expect(Double(testing.filter { $0.amount < 5 }.count) / Double(testing.count) > 0.7)
        // Impossible travel lands far from the home cities.
        #expect(g.filter { $0.pattern == .impossibleTravel }.allSatisfy { ["NG", "PH", "BR", "ID"].contains($0.transaction.country!) })
        // Account takeover always comes from a device never used by the customer.
        #expect(g.filter { $0.pattern == .accountTakeover }.allSatisfy { $0.transaction.deviceID!.hasPrefix("dev_ato_") })
    }
}
