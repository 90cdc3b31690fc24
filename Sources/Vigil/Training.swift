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
        /// Time the search may take; it tries at least two candidates.
        public var searchSeconds: Double = 120
        /// Fit a baseline instead of searching.
        public var baseline: Baseline?
        /// Train the chosen configuration again on train + validation before calibrating.
        public var refit = true
        /// Members of the bundle: nil selects forward (up to three, while validation AP rises);
        /// n takes the best n.
        public var members: Int?
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
        // Nothing after the period can reach a row in it: stop there.
        let transactions = transactions.prefix { $0.timestamp < options.to }
        try Replay.batches(Array(transactions), size: batchSize, labelDelay: options.labelDelay,
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

    /// What `vigil train --baseline` fits instead of the searched ensemble: the yardsticks a
    /// model is measured against, on the same features and the same split.
    public enum Baseline: String, Sendable, CaseIterable {
        /// Plain L2-regularised logistic regression (XGBoost's linear booster, coordinate descent;
        /// a missing value contributes 0).
        case logistic
        /// XGBoost with its default parameters: 100 rounds, depth 6, eta 0.3, no class weight.
        case xgboost
    }

    /// One configuration tried by the search.
    public struct Candidate: Sendable {
        public var name: String
        public var params: [String: String]
        public var rounds: Int
        public var earlyStopping: Int?
    }

    /// One trained candidate, scored on the validation slice.
    public struct Tried: Sendable {
        public var candidate: Candidate
        public var booster: Booster
        public var rounds: Int
        /// Average precision on the validation slice.
        public var validationAP: Double
        public var seconds: Double
        var validationMargins: [Double]
    }

    /// The search space, in the order it is tried (the first two always are): depth, learning
    /// rate, sampling, and class weight (none, √(negatives/positives), negatives/positives).
    static func searchSpace(imbalance r: Double, rounds: Int) -> [Candidate] {
        let sqrtR = String(format: "%.3f", r.squareRoot()), fullR = String(format: "%.3f", r)
        let grid: [(String, [String: String])] = [
            ("depth3", ["max_depth": "3", "eta": "0.1", "subsample": "0.8", "colsample_bytree": "0.8", "scale_pos_weight": "1"]),
            ("depth6", ["max_depth": "6", "eta": "0.08", "subsample": "0.8", "colsample_bytree": "0.8", "min_child_weight": "2", "scale_pos_weight": "1"]),
            ("depth4-sqrtweight", ["max_depth": "4", "eta": "0.1", "subsample": "0.8", "colsample_bytree": "0.8", "scale_pos_weight": sqrtR]),
            ("depth6-fullweight", ["max_depth": "6", "eta": "0.05", "subsample": "0.8", "colsample_bytree": "0.6", "min_child_weight": "2", "scale_pos_weight": fullR]),
            ("depth8", ["max_depth": "8", "eta": "0.05", "subsample": "0.7", "colsample_bytree": "0.5", "min_child_weight": "5", "scale_pos_weight": "1"]),
            ("depth2", ["max_depth": "2", "eta": "0.2", "subsample": "0.9", "scale_pos_weight": "1"]),
            ("depth5-sqrtweight-l2", ["max_depth": "5", "eta": "0.05", "subsample": "0.9", "colsample_bytree": "0.7", "lambda": "5", "scale_pos_weight": sqrtR]),
            ("depth4-slow", ["max_depth": "4", "eta": "0.05", "subsample": "0.8", "colsample_bytree": "0.8", "scale_pos_weight": "1"]),
            ("depth5-narrow", ["max_depth": "5", "eta": "0.1", "colsample_bytree": "0.5", "min_child_weight": "3", "scale_pos_weight": "1"]),
            ("depth6-slow", ["max_depth": "6", "eta": "0.03", "subsample": "0.7", "colsample_bytree": "0.7", "scale_pos_weight": "1"]),
            ("depth7-l2", ["max_depth": "7", "eta": "0.05", "subsample": "0.8", "colsample_bytree": "0.6", "lambda": "10", "scale_pos_weight": "1"]),
            ("depth3-sqrtweight", ["max_depth": "3", "eta": "0.05", "subsample": "0.9", "scale_pos_weight": sqrtR]),
        ]
        return grid.enumerated().map { i, g in
            var p = g.1
            p["seed"] = String(7 + i)
            return Candidate(name: g.0, params: p, rounds: rounds, earlyStopping: 30)
        }
    }

    static func candidates(baseline: Baseline) -> [Candidate] {
        switch baseline {
        case .logistic:
            [Candidate(name: "logistic", params: ["booster": "gblinear", "updater": "coord_descent", "feature_selector": "cyclic",
                                                  "lambda": "1", "alpha": "0", "scale_pos_weight": "1"], rounds: 200, earlyStopping: nil)]
        case .xgboost:
            [Candidate(name: "xgboost-default", params: ["scale_pos_weight": "1"], rounds: 100, earlyStopping: nil)]
        }
    }

    /// The spec to train with: `specText` when given (with a warning for each entity most rows
    /// lack), otherwise one derived from the fields the transactions carry.
    public static func spec(
        for transactions: [Transaction], given specText: String?, labelDelay: Int64, log: (String) -> Void = { _ in }
    ) throws -> (text: String, spec: FeatureSpec, derived: Bool) {
        let coverage = FieldCoverage(transactions)
        guard let specText else {
            let text = FeatureSpec.derivedYAML(for: coverage, labelDelay: labelDelay)
            return (text, try FeatureSpec.parse(text, file: "<derived feature spec>"), true)
        }
        let spec = try FeatureSpec.parse(specText, file: "features.yaml")
        for s in spec.sparseEntities(in: coverage) { log("warning: \(s); its features will be missing there") }
        return (specText, spec, false)
    }

    /// Trains a bundle and writes it to `output`.
    ///
    /// Time-ordered split of the labelled rows: 70% train, 15% validation (early stopping on
    /// average precision and the choice of model), 15% calibration and held-out metrics. Without
    /// a baseline, a small search over depth, learning rate, sampling and class weight runs
    /// within `options.searchSeconds`; candidates join the best one in rank order while
    /// averaging them in log-odds raises validation AP (at most three), and those are trained
    /// again on train + validation before calibration.
    /// - Parameter specText: the feature spec; nil derives one from the data's fields.
    @discardableResult
    public static func train(
        _ transactions: [Transaction], specText: String?, options: Options, output: String,
        log: (String) -> Void = { _ in }
    ) throws -> Manifest {
        let (text, spec, derived) = try self.spec(for: transactions, given: specText, labelDelay: options.labelDelay, log: log)
        let plan = try FeaturePlan(spec: spec)
        if derived { log("no --features: derived this spec (\(plan.schema.count) features) from the data's fields:\n" + text) }
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
        let validLabels = valid.labels.map { $0 == 1 }

        // Search (or the baseline), each candidate scored by validation average precision.
        let trainPositives = Double(train.labels.reduce(0, +))
        let imbalance = max(1, (Double(train.rows) - trainPositives) / max(trainPositives, 1))
        let space = options.baseline.map { candidates(baseline: $0) } ?? searchSpace(imbalance: imbalance, rounds: options.rounds)
        let started = Date()
        var tried: [Tried] = []
        for candidate in space {
            if tried.count >= 2, Date().timeIntervalSince(started) > options.searchSeconds {
                log("search: time budget of \(Int(options.searchSeconds)) s reached after \(tried.count) of \(space.count) candidates")
                break
            }
            let t0 = Date()
            let result = try Trainer.train(train: train, validation: valid, params: candidate.params, rounds: candidate.rounds,
                                           earlyStopping: candidate.earlyStopping)
            let m = try valid.values.withUnsafeBufferPointer { try result.booster.margins($0, rows: valid.rows, columns: c) }.map { Double($0) }
            let ap = Metrics.averagePrecision(scores: m, labels: validLabels)
            tried.append(Tried(candidate: candidate, booster: result.booster, rounds: result.rounds, validationAP: ap,
                               seconds: Date().timeIntervalSince(t0), validationMargins: m))
            log(String(format: "%@: %d rounds, validation AP %.4f (%.1f s)", candidate.name, result.rounds, ap, tried.last!.seconds))
        }
        tried.sort { $0.validationAP > $1.validationAP }
        var chosen = [tried[0]]
        if let n = options.members {
            chosen = Array(tried.prefix(n))
        } else {
            // Greedy: the next-ranked candidate joins while averaging it in raises validation AP (at most 3).
            var best = tried[0].validationAP
            for t in tried.dropFirst() where chosen.count < 3 {
                let together = (0..<valid.rows).map { r in (chosen.reduce(0) { $0 + $1.validationMargins[r] } + t.validationMargins[r]) / Double(chosen.count + 1) }
                let ap = Metrics.averagePrecision(scores: together, labels: validLabels)
                if ap > best {
                    chosen.append(t)
                    best = ap
                }
            }
        }
        if chosen.count > 1 {
            let together = (0..<valid.rows).map { r in chosen.reduce(0) { $0 + $1.validationMargins[r] } / Double(chosen.count) }
            log(String(format: "chose %@ (validation AP %.4f together)", chosen.map(\.candidate.name).joined(separator: " + "),
                       Metrics.averagePrecision(scores: together, labels: validLabels)))
        } else {
            log("chose \(chosen[0].candidate.name)")
        }

        // The chosen configurations learn again from train + validation: 21% more rows (and
        // frauds) than the search saw, with the boosted ones' rounds scaled to match.
        if options.refit {
            let both = slice(0..<b)
            for i in chosen.indices {
                let t = chosen[i]
                let rounds = t.candidate.earlyStopping == nil ? t.rounds : Int((Double(t.rounds) * Double(b) / Double(a)).rounded())
                let result = try Trainer.train(train: both, validation: holdout, params: t.candidate.params, rounds: rounds, earlyStopping: nil)
                chosen[i].booster = result.booster
                chosen[i].rounds = rounds
            }
            log("refitted on train + validation (\(both.rows) rows)")
        }

        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        let weight = 1 / Double(chosen.count)
        var manifestMembers: [Manifest.Member] = []
        // Every labelled row's combined margin, once: the calibration slice is its tail, and drift's
        // reference is all of it.
        var margins = [Double](repeating: 0, count: data.rows)
        var importance = [Double](repeating: 0, count: c)
        for t in chosen {
            let name = t.candidate.name
            try t.booster.save(path: "\(output)/\(name).json")
            let m = try data.values.withUnsafeBufferPointer { try t.booster.margins($0, rows: data.rows, columns: c) }
            for r in 0..<data.rows { margins[r] += weight * Double(m[r]) }
            let linear = t.candidate.params["booster"] == "gblinear"
            let scores = try t.booster.importance(type: linear ? "weight" : "total_gain")
            let total = scores.values.reduce(0, +)
            for (i, v) in scores where i < c && total > 0 { importance[i] += weight * v / total }
            var p = t.candidate.params
            p["rounds"] = String(t.rounds)
            manifestMembers.append(.init(name: name, file: "\(name).json", weight: weight, params: p))
        }
        let labels = holdout.labels.map { $0 == 1 }
        let holdoutMargins = Array(margins[b...])
        let calibration = Calibration.fitPlatt(margins: holdoutMargins, labels: labels)
        let reference = DriftReference.fit(names: plan.schema.names, values: data.values,
                                           scores: margins.map { calibration.probability(margin: $0) })
        let probabilities = holdoutMargins.map { calibration.probability(margin: $0) }
        let metrics: [String: Double] = [
            "holdout_auc": Metrics.auc(scores: probabilities, labels: labels),
            "holdout_average_precision": Metrics.averagePrecision(scores: probabilities, labels: labels),
            "holdout_rows": Double(holdout.rows), "holdout_fraud": Double(labels.filter { $0 }.count),
            "holdout_brier": zip(probabilities, labels).reduce(0) { $0 + pow($1.0 - ($1.1 ? 1 : 0), 2) } / Double(max(1, labels.count)),
            "validation_average_precision": tried[0].validationAP,
        ]
        try text.write(toFile: "\(output)/features.yaml", atomically: true, encoding: .utf8)
        let iso = { (t: Int64) in t == .min || t == .max ? "open" : Timestamp.formatISO8601(t) }
        var provenance = [
            "transactions": String(transactions.count), "labelled_rows": String(data.rows), "from": iso(options.from),
            "to": iso(options.to), "label_delay": DurationText.format(options.labelDelay),
            "split": "time-ordered 70/15/15 train/validation/calibration", "xgboost": "1.7 C API",
            "features": derived ? "derived from the data's fields" : "given spec",
        ]
        provenance["model"] = options.baseline.map { "baseline: \($0.rawValue)" } ?? "search over \(tried.count) candidates"
        let manifest = Manifest(
            name: options.name, version: options.version, created: Timestamp.formatISO8601(data.times.last ?? 0),
            features: .init(names: plan.schema.names, hash: plan.schema.hash, spec: "features.yaml"),
            members: manifestMembers, calibration: calibration, provenance: provenance, metrics: metrics, reference: reference)
        try manifest.write(directory: output)
        let card = modelCard(manifest, tried: tried, refit: options.refit, importance: Array(zip(plan.schema.names, importance)), specText: text)
        try card.write(toFile: "\(output)/MODEL_CARD.md", atomically: true, encoding: .utf8)
        return manifest
    }

    static func modelCard(_ m: Manifest, tried: [Tried], refit: Bool, importance: [(String, Double)], specText: String) -> String {
        var s = "# Model card: \(m.name) \(m.version)\n\n"
        s += "Binary fraud classifier: \(m.members.count == 1 ? "one XGBoost model" : "\(m.members.count) XGBoost models averaged in log-odds"), "
        s += "then calibrated (\(m.calibration)) on the latest slice of the training period.\n\n## Data\n\n"
        for (k, v) in m.provenance.sorted(by: { $0.key < $1.key }) { s += "- \(k): \(v)\n" }
        s += "\n## Members\n\n| member | weight | parameters |\n|---|---|---|\n"
        for mem in m.members {
            s += "| \(mem.name) | \(mem.weight) | \((mem.params ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")) |\n"
        }
        s += "\n## Candidates (validation slice, ranked)\n\nRounds found by early stopping on the training slice"
        s += refit ? "; the members above were trained again on training + validation with their rounds scaled to the rows.\n\n" : ".\n\n"
        s += "| candidate | rounds | validation AP | seconds |\n|---|---|---|---|\n"
        for t in tried { s += "| \(t.candidate.name) | \(t.rounds) | \(String(format: "%.4f", t.validationAP)) | \(String(format: "%.1f", t.seconds)) |\n" }
        s += "\n## Held-out metrics (calibration slice)\n\n"
        for (k, v) in m.metrics.sorted(by: { $0.key < $1.key }) { s += "- \(k): \(String(format: "%.4f", v))\n" }
        s += "\n## Feature importance\n\nShare of the total gain of the members' splits (a linear model: of the absolute coefficients), top 20.\n\n"
        s += "| feature | share |\n|---|---|\n"
        for (name, v) in importance.sorted(by: { $0.1 > $1.1 }).prefix(20) where v > 0 { s += "| \(name) | \(String(format: "%.3f", v)) |\n" }
        s += "\n## Features\n\n\(m.features.names.count) features, schema \(m.features.hash). The spec (`features.yaml`):\n\n"
        s += "```yaml\n\(specText.hasSuffix("\n") ? specText : specText + "\n")```\n\n"
        s += "## Limits\n\nValid for data like the training period above: point-in-time features, labels used only after "
        s += "their delay. Retrain when fraud or traffic shifts; backtest on a later period before promoting.\n"
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
