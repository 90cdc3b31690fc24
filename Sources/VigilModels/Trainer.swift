import CXGBoost
import Foundation

/// Trains XGBoost boosters through the C API.
public enum Trainer {
    /// A labelled dense matrix (row-major, NaN = missing).
    public struct Dataset: Sendable {
        public var values: [Float]
        public var rows: Int
        public var columns: Int
        public var labels: [Float]
        public init(values: [Float], rows: Int, columns: Int, labels: [Float]) {
            self.values = values
            self.rows = rows
            self.columns = columns
            self.labels = labels
        }
    }

    public struct Result: Sendable {
        public var booster: Booster
        /// Rounds kept (the best validation round + 1).
        public var rounds: Int
        /// Validation metric at the best round.
        public var bestScore: Double
    }

    /// Trains a `binary:logistic` booster, evaluating `validation` each round (metric `aucpr`,
    /// average precision) and, with `earlyStopping`, keeping only the rounds up to the best one.
    ///
    /// - Parameters:
    ///   - params: XGBoost parameters; `scale_pos_weight` defaults to negatives/positives.
    ///   - earlyStopping: stop after this many rounds without improvement; nil trains every round
    ///     and keeps them all (a linear booster cannot be sliced).
    ///   - progress: called after each round with (round, validation metric).
    public static func train(
        train: Dataset, validation: Dataset, params: [String: String], rounds: Int, earlyStopping: Int? = 30,
        progress: (Int, Double) -> Void = { _, _ in }
    ) throws(XGBoostError) -> Result {
        let dtrain = try matrix(train)
        defer { XGDMatrixFree(dtrain) }
        let dvalid = try matrix(validation)
        defer { XGDMatrixFree(dvalid) }
        var h: BoosterHandle?
        var dmats: [DMatrixHandle?] = [dtrain, dvalid]
        try XGBoostError.check(XGBoosterCreate(&dmats, 2, &h), "create")
        let owner = Booster(handle: h)  // frees the training handle when done
        defer { withExtendedLifetime(owner) {} }
        let positives = train.labels.reduce(0, +)
        var all: [String: String] = [
            "objective": "binary:logistic", "eval_metric": "aucpr", "tree_method": "hist", "nthread": "2",
            "seed": "7", "scale_pos_weight": String(max(1, (Float(train.rows) - positives) / max(positives, 1))),
        ]
        all.merge(params) { _, new in new }
        for (k, v) in all.sorted(by: { $0.key < $1.key }) {
            try XGBoostError.check(XGBoosterSetParam(h, k, v), "set \(k)")
        }
        var best = -Double.infinity
        var bestRound = 0
        let names = ["train", "valid"]
        for round in 0..<rounds {
            try XGBoostError.check(XGBoosterUpdateOneIter(h, Int32(round), dtrain), "update")
            var out: UnsafePointer<CChar>?
            try names.withCStringArray { cnames throws(XGBoostError) in
                try XGBoostError.check(XGBoosterEvalOneIter(h, Int32(round), &dmats, cnames, 2, &out), "eval")
            }
            // "[3]\ttrain-aucpr:0.91\tvalid-aucpr:0.87"
            let text = out.map { String(cString: $0) } ?? ""
            let score = text.split(separator: "\t").last.flatMap { $0.split(separator: ":").last }.flatMap { Double($0) } ?? .nan
            progress(round, score)
            guard let earlyStopping else {
                (best, bestRound) = (score, round)
                continue
            }
            if score > best {
                best = score
                bestRound = round
            } else if round - bestRound >= earlyStopping {
                break
            }
        }
        if earlyStopping == nil { return Result(booster: try Booster.copy(of: h), rounds: bestRound + 1, bestScore: best) }
        // Keep only the rounds up to the best one.
        var sliced: BoosterHandle?
        try XGBoostError.check(XGBoosterSlice(h, 0, Int32(bestRound + 1), 1, &sliced), "slice")
        return Result(booster: Booster(handle: sliced), rounds: bestRound + 1, bestScore: best)
    }

    static func matrix(_ d: Dataset) throws(XGBoostError) -> DMatrixHandle? {
        var m: DMatrixHandle?
        try XGBoostError.check(XGDMatrixCreateFromMat(d.values, bst_ulong(d.rows), bst_ulong(d.columns), .nan, &m), "DMatrix")
        try XGBoostError.check(XGDMatrixSetFloatInfo(m, "label", d.labels, bst_ulong(d.rows)), "labels")
        return m
    }
}

extension Array where Element == String {
    func withCStringArray<R>(_ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>) throws(XGBoostError) -> R) throws(XGBoostError) -> R {
        let dup = map { strdup($0) }
        defer { dup.forEach { free($0) } }
        var ptrs = dup.map { UnsafePointer<CChar>($0) }
        return try ptrs.withUnsafeMutableBufferPointer { p throws(XGBoostError) in try body(p.baseAddress!) }
    }
}
