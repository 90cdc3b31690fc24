import Foundation
import Vigil

/// Compares decision policies on a backtest's scores (`vigil tune`).
public enum Tuning {
    public struct Result: Sendable {
        public var name: String
        public var thresholds: CostMatrix.Thresholds?
        public var costPerTransaction: Double
        /// Share of transactions per action.
        public var rates: [Action: Double]
        /// Share of fraud not approved, by count and by amount.
        public var fraudStopped: Double
        public var fraudAmountStopped: Double
        /// Share of legitimate transactions not approved.
        public var friction: Double
        /// Largest share of a day's transactions sent to review.
        public var peakReviewRate: Double
    }

    /// Evaluates, on the labelled scored transactions:
    /// - the cost matrix (least expected cost at each score, rules not re-applied);
    /// - fixed thresholds (block ≥ 0.9, challenge ≥ 0.7, review ≥ 0.5) as a common baseline;
    /// - the best thresholds found by grid search (prefix sums over the ranking, so every
    ///   combination costs O(1));
    /// - with `reviewCapacity`, the cost matrix with at most that share of each day's
    ///   transactions reviewed (the highest scores keep review, the rest their next-best action).
    /// Policies whose peak daily review rate exceeds the capacity are marked and never chosen.
    public static func compare(_ all: [ScoredTransaction], costs: CostMatrix, reviewCapacity: Double?) -> (results: [Result], chosen: Int) {
        let scored = all.filter { $0.label != nil }.sorted { $0.score < $1.score }
        let n = scored.count
        guard n > 0 else { return ([], 0) }
        let views = scored.map(\.costView)
        let fraud = scored.map { $0.label == 1 }
        // costTable[a][i]: realised cost of action a on transaction i.
        let costTable = Action.allCases.map { a in (0..<n).map { costs.cost(of: a, fraud: fraud[$0], transaction: views[$0]) } }

        func evaluate(_ name: String, thresholds: CostMatrix.Thresholds?, _ actions: [Action]) -> Result {
            var total = 0.0, stopped = 0, fraudCount = 0, stoppedAmount = 0.0, fraudAmount = 0.0, friction = 0, legit = 0
            var counts = [Action: Int]()
            var reviewsByDay: [Int64: (Int, Int)] = [:]
            for i in 0..<n {
                let a = actions[i]
                total += costTable[a.severity][i]
                counts[a, default: 0] += 1
                let day = Timestamp.calendar(scored[i].timestamp).day
                let d = reviewsByDay[day] ?? (0, 0)
                reviewsByDay[day] = (d.0 + (a == .review ? 1 : 0), d.1 + 1)
                if fraud[i] {
                    fraudCount += 1
                    fraudAmount += scored[i].amount
                    if a != .approve {
                        stopped += 1
                        stoppedAmount += scored[i].amount
                    }
                } else {
                    legit += 1
                    if a != .approve { friction += 1 }
                }
            }
            return Result(
                name: name, thresholds: thresholds, costPerTransaction: total / Double(n),
                rates: counts.mapValues { Double($0) / Double(n) }, fraudStopped: Double(stopped) / Double(max(fraudCount, 1)),
                fraudAmountStopped: stoppedAmount / max(fraudAmount, 1e-9), friction: Double(friction) / Double(max(legit, 1)),
                peakReviewRate: reviewsByDay.values.map { Double($0.0) / Double($0.1) }.max() ?? 0)
        }

        let decider = Decider(costs: CostMatrix.parseUnchecked(costs, thresholds: nil))
        let costActions = (0..<n).map { decider.decide(probability: scored[$0].score, transaction: views[$0]).action }
        var results = [evaluate("cost matrix", thresholds: nil, costActions)]

        let fixed = CostMatrix.Thresholds([(.block, 0.9), (.challenge, 0.7), (.review, 0.5)])
        results.append(evaluate("fixed thresholds: \(fixed.description)", thresholds: fixed, scored.map { fixed.action(for: $0.score) }))

        // Grid search over challenge ≤ review ≤ block thresholds with prefix sums.
        var prefix = costTable.map { row -> [Double] in
            var p = [0.0]
            p.reserveCapacity(n + 1)
            for v in row { p.append(p.last! + v) }
            return p
        }
        let grid = [0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01]
        let scores = scored.map(\.score)
        func below(_ t: Double) -> Int {  // transactions with score < t
            var lo = 0, hi = n
            while lo < hi {
                let mid = (lo + hi) / 2
                if scores[mid] < t { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
        let idx = grid.map(below)
        var best = (cost: Double.infinity, c: 0, r: 0, b: 0)
        for b in grid.indices {
            for r in 0...b {
                for c in 0...r {
                    let ic = idx[c], ir = idx[r], ib = idx[b]
                    let total = prefix[0][ic] + (prefix[1][ir] - prefix[1][ic]) + (prefix[2][ib] - prefix[2][ir]) + (prefix[3][n] - prefix[3][ib])
                    if total < best.cost { best = (total, c, r, b) }
                }
            }
        }
        prefix = []
        // Drop what can never apply: thresholds above 1, and a band of zero width.
        var bands: [(action: Action, min: Double)] = [(.block, grid[best.b])]
        if best.r < best.b { bands.append((.review, grid[best.r])) }
        if best.c < best.r { bands.append((.challenge, grid[best.c])) }
        let tuned = CostMatrix.Thresholds(bands.filter { $0.min <= 1 })
        results.append(evaluate("tuned thresholds: \(tuned.description)", thresholds: tuned, scores.map(tuned.action(for:))))

        if let cap = reviewCapacity {
            // Per day, keep review for the highest scores up to the cap.
            var capped = costActions
            var byDay: [Int64: [Int]] = [:]
            for i in 0..<n where capped[i] == .review { byDay[Timestamp.calendar(scored[i].timestamp).day, default: []].append(i) }
            var perDay: [Int64: Int] = [:]
            for i in 0..<n { perDay[Timestamp.calendar(scored[i].timestamp).day, default: 0] += 1 }
            for (day, reviews) in byDay {
                let allowed = Int(cap * Double(perDay[day] ?? 0))
                for i in reviews.sorted(by: { scores[$0] > scores[$1] }).dropFirst(allowed) {
                    var expected = costs.expectedCosts(probability: scores[i], transaction: views[i])
                    expected[Action.review.severity] = .infinity
                    capped[i] = Action.allCases[expected.indices.min { expected[$0] < expected[$1] }!]
                }
            }
            results.append(evaluate("cost matrix, review ≤ \(fmt(cap * 100))% per day", thresholds: nil, capped))
        }
        let eligible = results.indices.filter { reviewCapacity == nil || results[$0].peakReviewRate <= reviewCapacity! + 1e-12 }
        let chosen = eligible.min { results[$0].costPerTransaction < results[$1].costPerTransaction } ?? 0
        return (results, chosen)
    }

    static func fmt(_ v: Double) -> String {
        var s = String(format: "%.3f", v)
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
        return s
    }
}

extension CostMatrix {
    /// The same costs with another policy (the prices never change, so this cannot fail).
    static func parseUnchecked(_ c: CostMatrix, thresholds: Thresholds?) -> CostMatrix {
        try! CostMatrix.parse(c.yaml(version: c.version, thresholds: thresholds), file: nil)
    }
}
