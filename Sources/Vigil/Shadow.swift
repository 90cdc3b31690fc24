import Foundation

/// A challenger's decision on one transaction, beside the champion's.
public struct ShadowVerdict: Sendable, Hashable, JSONLine {
    public var transactionID: String
    public var timestamp: Int64
    public var champion: Model
    public var challenger: Model

    public struct Model: Sendable, Hashable {
        /// `name@version` of the bundle.
        public var version: String
        public var action: Action
        public var probability: Double
    }

    public var agrees: Bool { champion.action == challenger.action }

    /// One line of the shadow topic, appended to `buffer` (one buffer for a batch's lines):
    /// `{"id","timestamp","champion":{"model","action","probability"},"challenger":{…},"agree"}`.
    public func encodeJSON(into buffer: inout [UInt8]) {
        JSONWriter.append(to: &buffer) { w in
            w.object { w in
                w.field("id", transactionID)
                w.field("timestamp", Timestamp.formatISO8601(timestamp))
                for (key, m) in [("champion", champion), ("challenger", challenger)] {
                    w.key(key)
                    w.object { w in
                        w.field("model", m.version)
                        w.field("action", m.action.rawValue)
                        w.field("probability", m.probability)
                    }
                }
                w.field("agree", agrees)
            }
        }
    }
}

/// One challenger's pass over a batch.
public struct ShadowResult: Sendable {
    public var challenger: String
    /// One per transaction, in batch order; empty when skipped.
    public var verdicts: [ShadowVerdict]
    /// Why the batch was skipped (`over_budget`, `failed`), or nil.
    public var skipped: String?
    public var micros: Double
}

extension Scorer {
    /// Scores a decided batch with every challenger: the same feature matrix (computed once),
    /// the same rule outcomes and costs, each challenger's own model. A challenger whose member
    /// takes longer than ``ScorerConfiguration/challengerBudget`` or fails skips the batch. The
    /// champion's verdicts are not touched: call this after they are on their way.
    public func shadow(_ batch: [Transaction], decided: Result) -> [ShadowResult] {
        guard let c = decided.components, !c.challengers.isEmpty, !batch.isEmpty else { return [] }
        precondition(decided.verdicts.count == batch.count, "shadow: \(decided.verdicts.count) verdicts for a batch of \(batch.count)")
        let clock = ContinuousClock()
        return c.challengers.map { challenger in
            let start = clock.now
            let scores = challenger.score(decided.features.values, rows: batch.count, budget: c.configuration.challengerBudget)
            guard !scores.degraded else {
                let over = scores.failures.contains { $0.error.contains("budget") }
                return ShadowResult(challenger: challenger.version, verdicts: [], skipped: over ? "over_budget" : "failed",
                                    micros: (clock.now - start).microseconds)
            }
            var verdicts: [ShadowVerdict] = []
            verdicts.reserveCapacity(batch.count)
            for i in batch.indices {
                let outcome = decided.ruleOutcomes.isEmpty ? RuleOutcome() : decided.ruleOutcomes[i]
                var d = c.decider.decide(probability: scores.probabilities[i], transaction: batch[i], forced: outcome.forced, floor: outcome.floor)
                if decided.storeError != nil, c.configuration.degradation == .failClosed, outcome.forced == nil {
                    d.action = max(d.action, .review)
                }
                let champion = decided.verdicts[i]
                verdicts.append(ShadowVerdict(
                    transactionID: batch[i].id, timestamp: batch[i].timestamp,
                    champion: .init(version: champion.modelVersion, action: champion.action, probability: champion.probability),
                    challenger: .init(version: challenger.version, action: d.action, probability: scores.probabilities[i])))
            }
            return ShadowResult(challenger: challenger.version, verdicts: verdicts, skipped: nil, micros: (clock.now - start).microseconds)
        }
    }
}

/// Exponentially time-decayed sums: each value counts half as much `halfLife` later.
struct DecayedSums: Sendable {
    var values: [Double]
    var at: Int64?
    let halfLife: Double

    init(count: Int, halfLife: Int64) {
        values = Array(repeating: 0, count: count)
        self.halfLife = Double(max(1, halfLife))
    }

    mutating func advance(to now: Int64) {
        if let at, now > at {
            let f = pow(0.5, Double(now - at) / halfLife)
            for i in values.indices { values[i] *= f }
        }
        if at.map({ now > $0 }) ?? true { at = now }
    }
}

/// Pearson correlation of the champion's and a challenger's scores over recent traffic
/// (time-decayed, half-life `halfLife`).
public struct ScoreCorrelation: Sendable {
    private var sums: DecayedSums

    public init(halfLife: Int64 = 3_600_000) { sums = DecayedSums(count: 6, halfLife: halfLife) }

    public mutating func add(_ verdicts: [ShadowVerdict], at now: Int64) {
        sums.advance(to: now)
        for v in verdicts where v.champion.probability.isFinite && v.challenger.probability.isFinite {
            let x = v.champion.probability, y = v.challenger.probability
            sums.values[0] += 1
            sums.values[1] += x
            sums.values[2] += y
            sums.values[3] += x * x
            sums.values[4] += y * y
            sums.values[5] += x * y
        }
    }

    /// NaN until there is variance on both sides.
    public var value: Double {
        let s = sums.values
        let n = s[0], cov = n * s[5] - s[1] * s[2]
        let vx = n * s[3] - s[1] * s[1], vy = n * s[4] - s[2] * s[2]
        return vx > 0 && vy > 0 ? cov / (vx * vy).squareRoot() : .nan
    }
}

/// Outcomes of the champion and each challenger on the transactions whose labels have arrived:
/// decisions are remembered (bounded, oldest forgotten first) until their label comes on the
/// labels topic, then counted into time-decayed figures per model.
public struct ModelOutcomes: Sendable {
    /// One model's figures over recent labels (time-decayed, half-life ``halfLife``).
    public struct Figures: Sendable, Hashable {
        public var labelled: Double
        public var fraud: Double
        /// Mean realised cost per labelled transaction under the cost matrix.
        public var costPerTransaction: Double
        /// Of the transactions it did not approve, the share that were fraud.
        public var precision: Double
        /// Of the fraud, the share it did not approve.
        public var recall: Double
    }

    struct Decision: Sendable {
        var model: Int
        var flagged: Bool
        var costIfFraud: Float
        var costIfLegit: Float
    }

    /// One transaction's decisions: the champion's held inline, so that remembering a
    /// transaction allocates nothing when no challenger runs.
    struct Decisions: Sendable {
        var champion: Decision
        var challengers: [Decision]
    }

    public let capacity: Int
    public let halfLife: Int64
    private var models: [String] = []
    private var pending: [UInt64: Decisions] = [:]
    private var order: [UInt64] = []
    private var head = 0
    /// Per model: labelled, fraud, flagged fraud (TP), flagged legit (FP), cost.
    private var sums: [DecayedSums] = []

    public init(capacity: Int = 100_000, halfLife: Int64 = 86_400_000) {
        self.capacity = max(1, capacity)
        self.halfLife = halfLife
    }

    private mutating func index(of model: String) -> Int {
        if let i = models.firstIndex(of: model) { return i }
        models.append(model)
        sums.append(DecayedSums(count: 5, halfLife: halfLife))
        return models.count - 1
    }

    /// Remembers the decisions on a batch: the champion's (from any one challenger's shadow
    /// verdicts, or `champion` when there are none) and every challenger's. `key` is the
    /// transaction id's keyed hash, as labels are matched.
    public mutating func record(
        _ transactions: [Transaction], keys: [UInt64], champion: [Verdict], shadows: [[ShadowVerdict]], costs: CostMatrix
    ) {
        // Transactions read in place: binding one to a local, or reading it from a closure or a
        // nested function, copies it (a retain and release of each of its strings). Each one's
        // costs are priced once, for every action, whatever the number of models.
        transactions.withUnsafeBufferPointer { t in
            for i in t.indices {
                let c = costs.costs(transaction: t.baseAddress! + i)
                func decision(_ model: Int, _ action: Action) -> Decision {
                    Decision(model: model, flagged: action != .approve,
                             costIfFraud: Float(c.fraud[action.severity]), costIfLegit: Float(c.legit[action.severity]))
                }
                var decisions = Decisions(champion: decision(index(of: champion[i].modelVersion), champion[i].action), challengers: [])
                for s in shadows where i < s.count {
                    decisions.challengers.append(decision(index(of: s[i].challenger.version), s[i].challenger.action))
                }
                if pending.updateValue(decisions, forKey: keys[i]) == nil { order.append(keys[i]) }
            }
        }
        while pending.count > capacity, head < order.count {
            pending.removeValue(forKey: order[head])
            head += 1
        }
        if head > 65_536, head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }

    /// Counts a label if its transaction's decisions are remembered; returns whether they were.
    @discardableResult
    public mutating func label(_ key: UInt64, fraud: Bool, at now: Int64) -> Bool {
        guard let decisions = pending.removeValue(forKey: key) else { return false }
        func count(_ d: Decision) {
            sums[d.model].advance(to: now)
            sums[d.model].values[0] += 1
            if fraud { sums[d.model].values[1] += 1 }
            if d.flagged { sums[d.model].values[fraud ? 2 : 3] += 1 }
            sums[d.model].values[4] += Double(fraud ? d.costIfFraud : d.costIfLegit)
        }
        count(decisions.champion)
        decisions.challengers.forEach(count)
        return true
    }

    /// Figures per model (`name@version`), decayed to `now`.
    public func figures(at now: Int64) -> [String: Figures] {
        var out: [String: Figures] = [:]
        for (i, model) in models.enumerated() {
            var s = sums[i]
            s.advance(to: now)
            let v = s.values
            guard v[0] > 0 else { continue }
            out[model] = Figures(labelled: v[0], fraud: v[1], costPerTransaction: v[4] / v[0],
                                 precision: v[2] + v[3] > 0 ? v[2] / (v[2] + v[3]) : .nan,
                                 recall: v[1] > 0 ? v[2] / v[1] : .nan)
        }
        return out
    }

    /// Decisions waiting for their label.
    public var remembered: Int { pending.count }
}
