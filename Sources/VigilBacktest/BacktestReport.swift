import Foundation
import Vigil

/// Everything a backtest measured: `report.json`, and the data behind `report.html`'s plots.
public struct BacktestReport: Codable, Sendable {
    public struct Point: Codable, Sendable, Hashable {
        public var x: Double
        public var y: Double
    }
    public struct DayMix: Codable, Sendable, Hashable {
        public var day: String
        public var approve: Int
        public var challenge: Int
        public var review: Int
        public var block: Int
        public var fraud: Int
    }
    public struct Histogram: Codable, Sendable, Hashable {
        /// Bin lower edges.
        public var edges: [Double]
        public var counts: [Int]
    }

    public var transactions: Int
    public var labelled: Int
    public var fraud: Int
    public var period: [String]
    public var aucROC: Double
    public var averagePrecision: Double
    /// Recall at 0.1%, 0.5%, 1% false-positive rate.
    public var recallAtFPR: [String: Double]
    /// Cards alerted per day (the k highest-scored cards).
    public var topK: Int
    /// Card precision: mean over days of the share of the day's k highest-scored cards that had
    /// fraud that day (out of k), leaving out cards found fraudulent on an earlier day.
    public var precisionAtTopKPerDay: Double
    /// The same for a perfect ranking: the day's fraudulent cards (not found earlier), at most
    /// k, out of k. Card precision cannot exceed it.
    public var precisionAtTopKCeiling: Double
    /// Mean realised cost per transaction of the actions taken, under the cost matrix.
    public var expectedCostPerTransaction: Double
    /// The same with every transaction approved: the cost of having no engine.
    public var costApproveAll: Double
    public var verdictMix: [String: Int]
    public var fraudCaught: [String: Int]
    public var degraded: Int
    public var roc: [Point]
    public var precisionRecall: [Point]
    /// Mean predicted probability → observed fraud rate, per tenth of the probability range.
    public var calibration: [Point]
    /// Block-above-threshold policy: threshold → cost per transaction.
    public var costByThreshold: [Point]
    public var mixByDay: [DayMix]
    public var scoresLegit: Histogram
    public var scoresFraud: Histogram
    public var latency: Histogram
    public var latencyPercentiles: [String: Double]

    /// Computes the report. `costs` prices each action for each transaction (for the realised
    /// cost and the threshold curve).
    public static func compute(_ scored: [ScoredTransaction], costs: CostMatrix, topK: Int = 100) -> BacktestReport {
        let labelled = scored.filter { $0.label != nil }
        let scores = labelled.map(\.score)
        let labels = labelled.map { $0.label == 1 }
        let positives = labels.filter { $0 }.count, negatives = labels.count - positives

        // ROC and PR from one sweep down the ranking.
        let order = labelled.indices.sorted { labelled[$0].score > labelled[$1].score }
        var roc: [Point] = [Point(x: 0, y: 0)], pr: [Point] = []
        var tp = 0, fp = 0
        var recallAt: [Double: Double] = [0.001: 0, 0.005: 0, 0.01: 0]
        var k = 0
        while k < order.count {
            let s = labelled[order[k]].score
            while k < order.count, labelled[order[k]].score == s {
                if labels[order[k]] { tp += 1 } else { fp += 1 }
                k += 1
            }
            let tpr = positives > 0 ? Double(tp) / Double(positives) : 0
            let fpr = negatives > 0 ? Double(fp) / Double(negatives) : 0
            roc.append(Point(x: fpr, y: tpr))
            pr.append(Point(x: tpr, y: Double(tp) / Double(tp + fp)))
            for (limit, best) in recallAt where fpr <= limit && tpr > best { recallAt[limit] = tpr }
        }

        // Calibration: ten equal-width bins of the predicted probability (empty bins skipped).
        var calibration: [Point] = []
        var binSum = [Double](repeating: 0, count: 10), binFraud = [Int](repeating: 0, count: 10), binCount = [Int](repeating: 0, count: 10)
        for (s, fraud) in zip(scores, labels) where s.isFinite {
            let b = min(9, max(0, Int(s * 10)))
            binSum[b] += s
            binCount[b] += 1
            if fraud { binFraud[b] += 1 }
        }
        for b in 0..<10 where binCount[b] > 0 {
            calibration.append(Point(x: binSum[b] / Double(binCount[b]), y: Double(binFraud[b]) / Double(binCount[b])))
        }

        // Realised costs.
        func cost(_ s: ScoredTransaction, _ a: Action) -> Double {
            costs.cost(of: a, fraud: s.label == 1, transaction: s.costView)
        }
        let n = Double(max(labelled.count, 1))
        let realised = labelled.reduce(0) { $0 + cost($1, $1.action) } / n
        // Each transaction priced once per action; the threshold curve then sums over the ranking.
        let approveCost = labelled.map { cost($0, .approve) }, blockCost = labelled.map { cost($0, .block) }
        let approveAll = approveCost.reduce(0, +) / n
        let ascending = labelled.indices.sorted { labelled[$0].score < labelled[$1].score }
        var approveBelow = [0.0]  // cost of approving the i lowest scores
        approveBelow.reserveCapacity(ascending.count + 1)
        for i in ascending { approveBelow.append(approveBelow.last! + approveCost[i]) }
        var blockAbove = [Double](repeating: 0, count: ascending.count + 1)  // cost of blocking from position i up
        for k in stride(from: ascending.count - 1, through: 0, by: -1) { blockAbove[k] = blockAbove[k + 1] + blockCost[ascending[k]] }
        var byThreshold: [Point] = []
        var position = 0
        for step in 0...100 {
            let t = Double(step) / 100
            while position < ascending.count, labelled[ascending[position]].score < t { position += 1 }
            byThreshold.append(Point(x: t, y: (approveBelow[position] + blockAbove[position]) / n))
        }

        // Card precision of the top k per day: each day, the k cards with the highest score
        // that day; a hit is a card with fraud that day. Cards found fraudulent on an earlier day
        // are left out (a review team has blocked them), as in the usual definition.
        var days: [Int64: [UInt64: (score: Double, fraud: Bool)]] = [:]
        for s in labelled where s.card != 0 {
            let day = Timestamp.calendar(s.timestamp).day
            let prev = days[day]?[s.card]
            days[day, default: [:]][s.card] = (max(prev?.score ?? 0, s.score), (prev?.fraud ?? false) || s.label == 1)
        }
        var precisions: [Double] = [], ceilings: [Double] = []
        var detected: Set<UInt64> = [], detectedByPerfect: Set<UInt64> = []
        for day in days.keys.sorted() {
            let cards = days[day]!
            let top = cards.filter { !detected.contains($0.key) }.sorted { $0.value.score > $1.value.score }.prefix(topK)
            guard !top.isEmpty else { continue }
            let hits = top.filter(\.value.fraud)
            precisions.append(Double(hits.count) / Double(topK))
            detected.formUnion(hits.map(\.key))
            let perfect = cards.filter { $0.value.fraud && !detectedByPerfect.contains($0.key) }.keys.prefix(topK)
            ceilings.append(Double(perfect.count) / Double(topK))
            detectedByPerfect.formUnion(perfect)
        }

        // Mix by day.
        var mix: [Int64: DayMix] = [:]
        for s in scored {
            let day = Timestamp.calendar(s.timestamp).day
            var m = mix[day] ?? DayMix(day: String(Timestamp.formatISO8601(day * 86_400_000).prefix(10)), approve: 0, challenge: 0, review: 0, block: 0, fraud: 0)
            switch s.action {
            case .approve: m.approve += 1
            case .challenge: m.challenge += 1
            case .review: m.review += 1
            case .block: m.block += 1
            }
            if s.label == 1 { m.fraud += 1 }
            mix[day] = m
        }

        func histogram(_ values: [Double], edges: [Double]) -> Histogram {
            var counts = [Int](repeating: 0, count: edges.count)
            for v in values {
                var i = edges.count - 1
                while i > 0 && v < edges[i] { i -= 1 }
                counts[i] += 1
            }
            return Histogram(edges: edges, counts: counts)
        }
        let scoreEdges = (0..<20).map { Double($0) / 20 }
        let latencies = scored.map(\.latency).sorted()
        let maxLatency = max(latencies.last ?? 1, 1)
        let latencyEdges = (0..<30).map { maxLatency * Double($0) / 30 }
        func percentile(_ p: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }

        var verdictMix: [String: Int] = [:]
        var caught: [String: Int] = [:]
        for s in scored {
            verdictMix[s.action.rawValue, default: 0] += 1
            if s.label == 1 { caught[s.action.rawValue, default: 0] += 1 }
        }
        let times = scored.map(\.timestamp)
        return BacktestReport(
            transactions: scored.count, labelled: labelled.count, fraud: positives,
            period: [times.min(), times.max()].map { $0.map(Timestamp.formatISO8601) ?? "" },
            aucROC: Metrics.auc(scores: scores, labels: labels),
            averagePrecision: Metrics.averagePrecision(scores: scores, labels: labels),
            recallAtFPR: ["0.1%": recallAt[0.001]!, "0.5%": recallAt[0.005]!, "1%": recallAt[0.01]!],
            topK: topK, precisionAtTopKPerDay: precisions.isEmpty ? .nan : precisions.reduce(0, +) / Double(precisions.count),
            precisionAtTopKCeiling: ceilings.isEmpty ? .nan : ceilings.reduce(0, +) / Double(ceilings.count),
            expectedCostPerTransaction: realised, costApproveAll: approveAll, verdictMix: verdictMix, fraudCaught: caught,
            degraded: scored.filter(\.degraded).count,
            roc: thin(roc), precisionRecall: thin(pr), calibration: calibration, costByThreshold: byThreshold,
            mixByDay: mix.keys.sorted().map { mix[$0]! },
            scoresLegit: histogram(labelled.filter { $0.label != 1 }.map(\.score), edges: scoreEdges),
            scoresFraud: histogram(labelled.filter { $0.label == 1 }.map(\.score), edges: scoreEdges),
            latency: histogram(latencies, edges: latencyEdges),
            latencyPercentiles: ["p50": percentile(0.5), "p99": percentile(0.99), "p99.9": percentile(0.999), "max": latencies.last ?? 0])
    }

    /// At most ~400 points, keeping the ends: enough for a plot.
    static func thin(_ points: [Point]) -> [Point] {
        guard points.count > 400 else { return points }
        let step = Double(points.count - 1) / 399
        return (0..<400).map { points[Int((Double($0) * step).rounded())] }
    }
}
