import Foundation
import VigilCore
import VigilFeatures
import VigilModels

/// Builds point-in-time training sets and trains a model bundle.
public enum ModelTraining {
    public struct Options: Sendable {
        /// Train on transactions in [from, to); earlier ones only warm the windows.
        public var from: Int64 = .min
        public var to: Int64 = .max
        /// Labels count in risk features only this long after their transaction. Default: 7 days.
        public var labelDelay: Int64 = 7 * 86_400_000
        public var name: String = "default"
        public var version: String = "1"
        public var rounds: Int = 400
        public var hasher: KeyedHasher = .insecureDevelopmentKey
        public init() {}
    }

    /// A point-in-time feature matrix with labels, for training or evaluation.
    public struct LabelledFeatures: Sendable {
        public var values: [Float]
        public var labels: [Float]
        public var times: [Int64]
        public var columns: Int
        public var rows: Int { labels.count }
    }

    /// Replays `transactions` (time-ordered) through the feature engine and an in-memory store,
    /// releasing labels `labelDelay` after each transaction, and keeps the labelled rows in
    /// [from, to). The same path as the daemon: one batch at a time, store updated in order.
    public static func features(
        _ transactions: [Transaction], spec: FeatureSpec, options: Options, batchSize: Int = 256,
        progress: (Double) -> Void = { _ in }
    ) throws -> LabelledFeatures {
        let plan = try FeaturePlan(spec: spec)
        let engine = FeatureEngine(plan: plan, hasher: options.hasher)
        let store = InMemoryVelocityStore(plan: plan)
        var out = LabelledFeatures(values: [], labels: [], times: [], columns: plan.schema.count)
        var done = 0
        try Replay.batches(transactions, size: batchSize, labelDelay: options.labelDelay,
                           apply: { labels in _ = try? store.apply(labels: labels.map { (engine.idHash($0.transactionID), $0.isFraud) }) }) { batch in
            let txs = Array(batch)
            let m = try engine.features(txs, store: store)
            for (i, tx) in txs.enumerated() where tx.timestamp >= options.from && tx.timestamp < options.to {
                guard let l = tx.label else { continue }
                out.values.append(contentsOf: m.row(i))
                out.labels.append(Float(l))
                out.times.append(tx.timestamp)
            }
            done += txs.count
            if done % (batchSize * 200) == 0 { progress(Double(done) / Double(transactions.count)) }
        }
        progress(1)
        return out
    }

    /// Trains the two-member ensemble, calibrates it on the latest slice and writes the bundle.
    ///
    /// Time-ordered split of the labelled rows: 70% train, 15% validation (early stopping),
    /// 15% calibration and held-out metrics.
    @discardableResult
    public static func train(
        _ transactions: [Transaction], specText: String, options: Options, output: String,
        log: (String) -> Void = { _ in }
    ) throws -> Manifest {
        let spec = try FeatureSpec.parse(specText, file: "features.yaml")
        let plan = try FeaturePlan(spec: spec)
        log("building point-in-time features for \(transactions.count) transactions")
        let data = try features(transactions, spec: spec, options: options) { p in log(String(format: "features %3.0f%%", p * 100)) }
        guard data.rows >= 100 else { throw ConfigurationError(file: nil, line: nil, message: "only \(data.rows) labelled transactions in the training period (need ≥ 100)") }
        let positives = data.labels.reduce(0, +)
        guard positives >= 5 else { throw ConfigurationError(file: nil, line: nil, message: "only \(Int(positives)) fraud labels in the training period (need ≥ 5)") }
        let c = data.columns
        func slice(_ r: Range<Int>) -> Trainer.Dataset {
            Trainer.Dataset(values: Array(data.values[(r.lowerBound * c)..<(r.upperBound * c)]), rows: r.count, columns: c,
                            labels: Array(data.labels[r]))
        }
        let a = data.rows * 70 / 100, b = data.rows * 85 / 100
        let train = slice(0..<a), valid = slice(a..<b), holdout = slice(b..<data.rows)
        log("train \(train.rows) rows, validation \(valid.rows), calibration \(holdout.rows); \(Int(positives)) fraud")

        let members: [(String, Double, [String: String])] = [
            ("gbm_deep", 0.6, ["max_depth": "6", "eta": "0.08", "subsample": "0.8", "colsample_bytree": "0.8", "min_child_weight": "2"]),
            ("gbm_shallow", 0.4, ["max_depth": "3", "eta": "0.15", "subsample": "0.9", "colsample_bytree": "0.6", "seed": "11"]),
        ]
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        var manifestMembers: [Manifest.Member] = []
        var holdoutMargins = [Double](repeating: 0, count: holdout.rows)
        for (name, weight, params) in members {
            let result = try Trainer.train(train: train, validation: valid, params: params, rounds: options.rounds) { round, score in
                if round % 50 == 0 { log(String(format: "%@ round %d valid-aucpr %.4f", name, round, score)) }
            }
            log(String(format: "%@: %d rounds, best valid-aucpr %.4f", name, result.rounds, result.bestScore))
            try result.booster.save(path: "\(output)/\(name).json")
            let m = try holdout.values.withUnsafeBufferPointer { try result.booster.margins($0, rows: holdout.rows, columns: c) }
            for r in 0..<holdout.rows { holdoutMargins[r] += weight * Double(m[r]) }
            var p = params
            p["rounds"] = String(result.rounds)
            manifestMembers.append(.init(name: name, file: "\(name).json", weight: weight, params: p))
        }
        let totalWeight = members.reduce(0) { $0 + $1.1 }
        holdoutMargins = holdoutMargins.map { $0 / totalWeight }
        let labels = holdout.labels.map { $0 == 1 }
        let calibration = Calibration.fitPlatt(margins: holdoutMargins, labels: labels)
        let probabilities = holdoutMargins.map { calibration.probability(margin: $0) }
        let metrics: [String: Double] = [
            "holdout_auc": Metrics.auc(scores: probabilities, labels: labels),
            "holdout_average_precision": Metrics.averagePrecision(scores: probabilities, labels: labels),
            "holdout_rows": Double(holdout.rows), "holdout_fraud": Double(labels.filter { $0 }.count),
            "holdout_brier": zip(probabilities, labels).reduce(0) { $0 + pow($1.0 - ($1.1 ? 1 : 0), 2) } / Double(max(1, labels.count)),
        ]
        try specText.write(toFile: "\(output)/features.yaml", atomically: true, encoding: .utf8)
        let iso = { (t: Int64) in t == .min || t == .max ? "open" : Timestamp.formatISO8601(t) }
        let manifest = Manifest(
            name: options.name, version: options.version, created: Timestamp.formatISO8601(data.times.last ?? 0),
            features: .init(names: plan.schema.names, hash: plan.schema.hash, spec: "features.yaml"),
            members: manifestMembers, calibration: calibration,
            provenance: ["transactions": String(transactions.count), "labelled_rows": String(data.rows), "from": iso(options.from),
                         "to": iso(options.to), "label_delay": DurationText.format(options.labelDelay),
                         "split": "time-ordered 70/15/15 train/validation/calibration", "xgboost": "1.7 C API"],
            metrics: metrics)
        try manifest.write(directory: output)
        try modelCard(manifest).write(toFile: "\(output)/MODEL_CARD.md", atomically: true, encoding: .utf8)
        return manifest
    }

    static func modelCard(_ m: Manifest) -> String {
        var s = "# Model card: \(m.name) \(m.version)\n\n"
        s += "Binary fraud classifier: an ensemble of \(m.members.count) XGBoost members combined by weighted log-odds, "
        s += "then calibrated (\(m.calibration)).\n\n## Data\n\n"
        for (k, v) in m.provenance.sorted(by: { $0.key < $1.key }) { s += "- \(k): \(v)\n" }
        s += "\n## Members\n\n| member | weight | parameters |\n|---|---|---|\n"
        for mem in m.members {
            s += "| \(mem.name) | \(mem.weight) | \((mem.params ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")) |\n"
        }
        s += "\n## Held-out metrics (calibration slice)\n\n"
        for (k, v) in m.metrics.sorted(by: { $0.key < $1.key }) { s += "- \(k): \(String(format: "%.4f", v))\n" }
        s += "\n## Features\n\n\(m.features.names.count) features, schema \(m.features.hash): "
        s += m.features.names.joined(separator: ", ") + "\n\n"
        s += "## Limits\n\nTrained on simulated data (`vigil simulate`); retrain on your own history before production use.\n"
        return s
    }
}

/// Ranking metrics for held-out evaluation.
public enum Metrics {
    /// Area under the ROC curve (ties count half).
    public static func auc(scores: [Double], labels: [Bool]) -> Double {
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var rankSum = 0.0
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count, scores[order[j + 1]] == scores[order[i]] { j += 1 }
            let rank = Double(i + j) / 2 + 1
            for k in i...j where labels[order[k]] { rankSum += rank }
            i = j + 1
        }
        let pos = Double(labels.filter { $0 }.count), neg = Double(labels.count) - pos
        guard pos > 0, neg > 0 else { return .nan }
        return (rankSum - pos * (pos + 1) / 2) / (pos * neg)
    }

    /// Average precision: mean of precision at each positive, ranked by descending score.
    public static func averagePrecision(scores: [Double], labels: [Bool]) -> Double {
        let order = scores.indices.sorted { scores[$0] > scores[$1] }
        var tp = 0.0, sum = 0.0
        for (k, i) in order.enumerated() where labels[i] {
            tp += 1
            sum += tp / Double(k + 1)
        }
        return tp > 0 ? sum / tp : .nan
    }
}
