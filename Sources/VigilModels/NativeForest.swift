import Foundation
import VigilCore

/// A native evaluator for an XGBoost `gbtree` model, read from the model's own JSON.
///
/// Trees are flattened into one node array, each node 16 bytes (threshold or leaf value, feature
/// with the default direction in its sign, left and right child), renumbered so that every tree
/// is contiguous and its root comes first. A batch is evaluated tree by tree (the tree stays in
/// L1 while every row walks it), four rows at a time with independent, branch-free steps so the
/// CPU overlaps their loads.
///
/// Exactness: XGBoost's CPU predictor accumulates `Float` leaf values in tree order onto the
/// `Float` base margin and compares `Float` feature values with `<`, sending NaN the default way.
/// This does the same operations in the same order, so margins are equal to the C API's (the
/// tests and `vigil model check` hold them to 1e-6).
public struct NativeForest: Sendable {
    struct Node {
        /// Split threshold, or the leaf value.
        var value: Float
        /// Feature index; -1 for a leaf. Bit 30 set: missing values go left.
        var feature: Int32
        var left: Int32
        var right: Int32
    }

    let nodes: [Node]
    /// Index of each tree's root in `nodes`.
    let roots: [Int32]
    public let featureCount: Int
    /// The margin every row starts from (logit of `base_score` for `binary:logistic`).
    public let baseMargin: Float
    public let objective: String
    public var treeCount: Int { roots.count }

    static let defaultLeftBit: Int32 = 1 << 30

    /// Parses XGBoost's JSON model format (1.x).
    /// - Throws: a message naming what is missing or unsupported (categorical splits, multi-class,
    ///   linear boosters, objectives other than `binary:logistic` and `reg:*`).
    public init(json data: Data) throws(XGBoostError) {
        func fail(_ m: String) -> XGBoostError { XGBoostError(operation: "native model", message: m) }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let learner = root["learner"] as? [String: Any],
            let params = learner["learner_model_param"] as? [String: Any],
            let booster = learner["gradient_booster"] as? [String: Any],
            let objective = (learner["objective"] as? [String: Any])?["name"] as? String
        else { throw fail("not an XGBoost JSON model") }
        guard booster["name"] as? String == "gbtree", let model = booster["model"] as? [String: Any],
            let trees = model["trees"] as? [[String: Any]]
        else { throw fail("only gbtree boosters are supported (got \(booster["name"] ?? "?"))") }
        guard (params["num_class"] as? String).flatMap(Int.init) ?? 0 <= 1 else { throw fail("multi-class models are not supported") }
        guard let nf = (params["num_feature"] as? String).flatMap(Int.init),
            let baseScore = (params["base_score"] as? String).flatMap(Float.init)
        else { throw fail("learner_model_param lacks num_feature or base_score") }
        switch objective {
        case "binary:logistic", "binary:logitraw":
            // XGBoost's ProbToMargin, in Float as XGBoost does it.
            baseMargin = objective == "binary:logistic" ? -logf(1 / baseScore - 1) : baseScore
        case let o where o.hasPrefix("reg:squarederror") || o == "reg:linear":
            baseMargin = baseScore
        default:
            throw fail("objective \(objective) is not supported natively")
        }
        self.objective = objective
        featureCount = nf

        var nodes: [Node] = []
        var roots: [Int32] = []
        for (t, tree) in trees.enumerated() {
            guard let left = tree["left_children"] as? [Int], let right = tree["right_children"] as? [Int],
                let split = tree["split_indices"] as? [Int], let cond = tree["split_conditions"] as? [Double],
                let defaultLeft = tree["default_left"] as? [Int], left.count == right.count, left.count == split.count,
                left.count == cond.count, left.count == defaultLeft.count, !left.isEmpty
            else { throw fail("tree \(t) is malformed") }
            if let types = tree["split_type"] as? [Int], types.contains(where: { $0 != 0 }) {
                throw fail("tree \(t) has categorical splits")
            }
            let offset = Int32(nodes.count)
            roots.append(offset)
            for i in left.indices {
                if left[i] == -1 {
                    nodes.append(Node(value: Float(cond[i]), feature: -1, left: 0, right: 0))
                } else {
                    guard left[i] > 0, left[i] < left.count, right[i] > 0, right[i] < left.count, split[i] >= 0, split[i] < nf else {
                        throw fail("tree \(t) node \(i) points outside the tree")
                    }
                    nodes.append(Node(
                        value: Float(cond[i]), feature: Int32(split[i]) | (defaultLeft[i] != 0 ? NativeForest.defaultLeftBit : 0),
                        left: offset + Int32(left[i]), right: offset + Int32(right[i])))
                }
            }
        }
        self.nodes = nodes
        self.roots = roots
    }

    /// Raw margins of `rows` rows of a row-major matrix with `featureCount` columns.
    public func margins(_ values: UnsafeBufferPointer<Float>, rows: Int) -> [Float] {
        var out = [Float](repeating: baseMargin, count: rows)
        let stride = featureCount
        nodes.withUnsafeBufferPointer { nodeBuffer in
            out.withUnsafeMutableBufferPointer { outBuffer in
                let n = nodeBuffer.baseAddress!, x = values.baseAddress!, o = outBuffer.baseAddress!
                for root in roots {
                    var r = 0
                    // Four rows at a time: independent walks the CPU can overlap.
                    while r + 4 <= rows {
                        let leaf0 = NativeForest.walk(n, root, x + r * stride)
                        let leaf1 = NativeForest.walk(n, root, x + (r + 1) * stride)
                        let leaf2 = NativeForest.walk(n, root, x + (r + 2) * stride)
                        let leaf3 = NativeForest.walk(n, root, x + (r + 3) * stride)
                        o[r] += leaf0
                        o[r + 1] += leaf1
                        o[r + 2] += leaf2
                        o[r + 3] += leaf3
                        r += 4
                    }
                    while r < rows {
                        o[r] += NativeForest.walk(n, root, x + r * stride)
                        r += 1
                    }
                }
            }
        }
        return out
    }

    @inline(__always)
    static func walk(_ nodes: UnsafePointer<Node>, _ root: Int32, _ row: UnsafePointer<Float>) -> Float {
        var i = Int(root)
        while true {
            let node = nodes[i]
            if node.feature < 0 { return node.value }
            let f = node.feature & ~defaultLeftBit
            let v = row[Int(f)]
            // NaN: both comparisons false → take the default direction.
            let goLeft = v.isNaN ? (node.feature & defaultLeftBit) != 0 : v < node.value
            i = Int(goLeft ? node.left : node.right)
        }
    }

    /// Probabilities (the objective's transform of the margins).
    public func predictions(_ values: UnsafeBufferPointer<Float>, rows: Int) -> [Float] {
        let m = margins(values, rows: rows)
        guard objective == "binary:logistic" else { return m }
        return m.map { 1 / (1 + expf(-$0)) }
    }
}

extension NativeForest {
    /// Loads from a model file; JSON directly, anything else through the C API's serialiser.
    public init(booster: Booster) throws(XGBoostError) {
        try self.init(json: Data(booster.json().utf8))
    }
}
