import Foundation
import Vigil

/// `vigil compare`: which of two bundles did better on the same labelled period, by realised
/// cost and by average precision, with 95% confidence intervals from a bootstrap over days
/// (days, not transactions, are resampled: fraud clusters within days).
public struct Comparison: Codable, Sendable {
    public struct Side: Codable, Sendable {
        public var report: String
        public var costPerTransaction: Double
        public var averagePrecision: Double
    }

    public struct Difference: Codable, Sendable {
        /// B − A on the whole period.
        public var value: Double
        public var low: Double
        public var high: Double
        /// True when the interval excludes 0.
        public var significant: Bool { low > 0 || high < 0 }
    }

    public var a: Side
    public var b: Side
    /// Labelled transactions both reports scored, and the days they span.
    public var transactions: Int
    public var days: Int
    public var resamples: Int
    public var cost: Difference
    public var averagePrecision: Difference

    /// The plain-language conclusion.
    public var verdict: String {
        var parts: [String] = []
        if cost.significant {
            parts.append(cost.value < 0 ? "B costs less per transaction" : "A costs less per transaction")
        } else {
            parts.append("no significant difference in cost")
        }
        if averagePrecision.significant {
            parts.append(averagePrecision.value > 0 ? "B ranks fraud better (AP)" : "A ranks fraud better (AP)")
        } else {
            parts.append("no significant difference in AP")
        }
        return parts.joined(separator: "; ")
    }

    public static func compare(
        _ a: [ScoredTransaction], _ b: [ScoredTransaction], names: (String, String), costs: CostMatrix, resamples: Int = 1000, seed: UInt64 = 1
    ) throws -> Comparison {
        let byID = Dictionary(b.filter { $0.label != nil }.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let pairs = a.filter { $0.label != nil }.compactMap { x in byID[x.id].map { (x, $0) } }
        guard pairs.count >= 10 else {
            throw BacktestError("the two reports share \(pairs.count) labelled transactions: compare backtests of the same period")
        }
        let dayOf = pairs.map { Timestamp.calendar($0.0.timestamp).day }
        let dayKeys = Array(Set(dayOf)).sorted()
        let dayIndex = Dictionary(uniqueKeysWithValues: dayKeys.enumerated().map { ($1, $0) })
        let day = dayOf.map { dayIndex[$0]! }
        let labels = pairs.map { $0.0.label == 1 }
        func realised(_ s: ScoredTransaction) -> Double { costs.cost(of: s.action, fraud: s.label == 1, transaction: s.costView) }
        let costA = pairs.map { realised($0.0) }, costB = pairs.map { realised($0.1) }
        // Rows by descending score, once per side: a resample only reweights them.
        let orderA = pairs.indices.sorted { pairs[$0].0.score > pairs[$1].0.score }
        let orderB = pairs.indices.sorted { pairs[$0].1.score > pairs[$1].1.score }
        func ap(_ order: [Int], _ weight: [Double]) -> Double {
            var tp = 0.0, seen = 0.0, sum = 0.0, positives = 0.0
            for i in order where weight[day[i]] > 0 {
                let w = weight[day[i]]
                seen += w
                if labels[i] {
                    tp += w
                    sum += w * tp / seen
                    positives += w
                }
            }
            return positives > 0 ? sum / positives : .nan
        }
        func costDifference(_ weight: [Double]) -> Double {
            var total = 0.0, n = 0.0
            for i in pairs.indices {
                total += weight[day[i]] * (costB[i] - costA[i])
                n += weight[day[i]]
            }
            return total / max(n, 1)
        }
        let ones = [Double](repeating: 1, count: dayKeys.count)
        var rng = SplitMix64(seed: seed)
        var costs: [Double] = [], aps: [Double] = []
        for _ in 0..<max(1, resamples) {
            var w = [Double](repeating: 0, count: dayKeys.count)
            for _ in dayKeys.indices { w[Int(rng.next() % UInt64(dayKeys.count))] += 1 }
            costs.append(costDifference(w))
            let d = ap(orderB, w) - ap(orderA, w)
            if d.isFinite { aps.append(d) }
        }
        func interval(_ v: Double, _ samples: [Double]) -> Difference {
            let s = samples.sorted()
            guard !s.isEmpty else { return Difference(value: v, low: .nan, high: .nan) }
            return Difference(value: v, low: s[Int(Double(s.count - 1) * 0.025)], high: s[Int(Double(s.count - 1) * 0.975)])
        }
        let n = Double(pairs.count)
        let sideA = Side(report: names.0, costPerTransaction: costA.reduce(0, +) / n, averagePrecision: ap(orderA, ones))
        let sideB = Side(report: names.1, costPerTransaction: costB.reduce(0, +) / n, averagePrecision: ap(orderB, ones))
        return Comparison(a: sideA, b: sideB, transactions: pairs.count, days: dayKeys.count, resamples: resamples,
                          cost: interval(costDifference(ones), costs),
                          averagePrecision: interval(sideB.averagePrecision - sideA.averagePrecision, aps))
    }
}

