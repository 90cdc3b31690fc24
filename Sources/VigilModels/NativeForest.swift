internal import CForest
import Foundation
import VigilCore

/// A native evaluator for an XGBoost `gbtree` model, read from the model's own JSON.
///
/// Layout: when every tree is at most ``maxCompleteDepth`` deep, each tree is stored *complete*:
/// its splits as an implicit binary heap (children of `i` at `2i+1`, `2i+2`; 8 bytes each:
/// threshold, feature with the default direction in bit 30) and its `2^depth` leaf values, a
/// shallower leaf copied into every bottom slot below it. Every row then takes exactly `depth`
/// steps with no data-dependent branch — no mispredictions, which dominate a pointer walk. A batch
/// is evaluated tree by tree (the tree stays in L1 while every row walks it), four rows at a time
/// so their independent loads overlap. Deeper forests use a pointer walk over 16-byte nodes.
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
    /// Each node's mean value over the training data (its leaves weighted by their cover), for
    /// ``contributions(_:rows:)``; empty when the model does not record covers.
    let means: [Float]

    /// 8 bytes, as `vigil_forest_wide` reads it (a test holds the layout).
    struct Split {
        var threshold: Float
        /// Where the split reads its value in a row's *missing-resolved* form (see
        /// ``resolveMissing(_:into:)``): the feature's index when missing values go right,
        /// `featureCount` + it when they go left.
        var column: Int32
    }
    struct CompleteTree {
        var depth: Int
        /// Offset of the tree's `2^depth - 1` splits in `splits`.
        var splitBase: Int
        /// Offset of its `2^depth` leaves in `leaves`.
        var leafBase: Int
    }
    /// The complete layout, when the forest is shallow enough (else empty).
    let complete: [CompleteTree]
    let splits: [Split]
    let leaves: [Float]
    /// The complete trees as the vector walk reads them (``completeMargins(_:rows:wide:)``).
    let wideTrees: [vigil_tree]

    /// What one root-to-leaf path credits one feature in ``contributions(_:rows:)``.
    struct Credit {
        /// Feature index; for padding at place `k` of a slot, `featureCount + 1 + k` (scratch
        /// columns nobody reads, one per place so the padding adds make no long chain).
        var feature: Int32
        var value: Float
    }
    /// With the complete layout and covers: for each bottom slot of each tree, its path's credits,
    /// `depth` of them (padded); tree `t`'s slots start at `creditBases[t]`. A path's credits
    /// depend on nothing but the path, so they are summed once, at load, in XGBoost's order;
    /// explaining a row is then a walk and one short read per tree, where walking the nodes and
    /// their means made a chain of dependent cache misses (~12 µs a row when they are cold).
    let credits: [Credit]
    let creditBases: [Int]
    /// The credits' size limit: a slot holds `depth` credits and a tree `2^depth` slots, so deep
    /// forests explain by walking their nodes instead (the shipped bundle's table: 485 KB).
    static let maxCreditBytes = 16 << 20
    /// Each tree's root mean: what every path credits the bias.
    let rootMeans: [Float]
    public static let maxCompleteDepth = 12
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
        var covers: [Float]? = []
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
            if let hessians = tree["sum_hessian"] as? [Double], hessians.count == left.count {
                covers? += hessians.map { Float($0) }
            } else {
                covers = nil
            }
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
        means = covers.map { NativeForest.nodeMeans(nodes: nodes, roots: roots, covers: $0) } ?? []
        let layout = NativeForest.completeLayout(nodes: nodes, roots: roots, featureCount: nf), means = self.means
        (complete, splits, leaves) = layout
        wideTrees = complete.map { vigil_tree(depth: Int32($0.depth), split_base: Int32($0.splitBase), leaf_base: Int32($0.leafBase)) }
        rootMeans = means.isEmpty ? [] : roots.map { means[Int($0)] }
        let creditBytes = layout.0.reduce(0) { $0 + (1 << $1.depth) * $1.depth } * MemoryLayout<Credit>.stride
        (credits, creditBases) = means.isEmpty || layout.0.isEmpty || creditBytes > NativeForest.maxCreditBytes
            ? ([], []) : NativeForest.pathCredits(nodes: nodes, roots: roots, means: means, complete: layout.0, padding: Int32(nf + 1))
    }

    /// For every bottom slot of every complete tree, the credits of the path that reaches it
    /// (a shallower leaf's path for each slot below it), accumulated per feature as
    /// ``pointerContributions(_:rows:)`` does along the way: the change of node mean at each step
    /// added to the split feature's running sum, features in order of first appearance.
    static func pathCredits(
        nodes: [Node], roots: [Int32], means: [Float], complete: [CompleteTree], padding: Int32
    ) -> ([Credit], [Int]) {
        var credits: [Credit] = []
        var bases: [Int] = []
        for (root, tree) in zip(roots, complete) {
            let base = credits.count
            bases.append(base)
            for _ in 0..<(1 << tree.depth) { credits += (0..<tree.depth).map { Credit(feature: padding + Int32($0), value: 0) } }
            var path: [Credit] = []
            func place(_ node: Int, _ position: Int, _ level: Int) {
                let n = nodes[node]
                if level == tree.depth {
                    let slot = base + (position - ((1 << tree.depth) - 1)) * tree.depth
                    for (k, c) in path.enumerated() { credits[slot + k] = c }
                } else if n.feature < 0 {
                    place(node, 2 * position + 1, level + 1)
                    place(node, 2 * position + 2, level + 1)
                } else {
                    let f = n.feature & ~defaultLeftBit
                    for child in [Int(n.left), Int(n.right)] {
                        let saved = path
                        let delta = means[child] - means[node]
                        if let k = path.firstIndex(where: { $0.feature == f }) { path[k].value += delta } else { path.append(Credit(feature: f, value: delta)) }
                        place(child, 2 * position + (child == Int(n.left) ? 1 : 2), level + 1)
                        path = saved
                    }
                }
            }
            place(Int(root), 0, 0)
        }
        return (credits, bases)
    }

    static func completeLayout(nodes: [Node], roots: [Int32], featureCount: Int) -> ([CompleteTree], [Split], [Float]) {
        func depth(_ i: Int) -> Int {
            nodes[i].feature < 0 ? 0 : 1 + max(depth(Int(nodes[i].left)), depth(Int(nodes[i].right)))
        }
        let depths = roots.map { depth(Int($0)) }
        guard (depths.max() ?? 0) <= maxCompleteDepth else { return ([], [], []) }
        // A missing value reads as +∞ or −∞ in the resolved row, which an infinite threshold
        // would compare differently from XGBoost (XGBoost writes finite ones): walk such a
        // forest node by node.
        guard nodes.allSatisfy({ $0.feature < 0 || $0.value.isFinite }) else { return ([], [], []) }
        var trees: [CompleteTree] = []
        var splits: [Split] = []
        var leaves: [Float] = []
        // Below a leaf that is shallower than its tree: both subtrees hold that leaf, so either
        // way is right.
        let passThrough = Split(threshold: .infinity, column: 0)
        for (root, d) in zip(roots, depths) {
            let tree = CompleteTree(depth: d, splitBase: splits.count, leafBase: leaves.count)
            let internalCount = (1 << d) - 1
            splits += [Split](repeating: passThrough, count: internalCount)
            leaves += [Float](repeating: 0, count: 1 << d)
            func place(_ node: Int, _ position: Int, _ level: Int) {
                let n = nodes[node]
                if level == d {
                    leaves[tree.leafBase + position - internalCount] = n.value
                } else if n.feature < 0 {
                    place(node, 2 * position + 1, level + 1)
                    place(node, 2 * position + 2, level + 1)
                } else {
                    let f = n.feature & ~defaultLeftBit
                    splits[tree.splitBase + position] = Split(threshold: n.value, column: n.feature & defaultLeftBit != 0 ? Int32(featureCount) + f : f)
                    place(Int(n.left), 2 * position + 1, level + 1)
                    place(Int(n.right), 2 * position + 2, level + 1)
                }
            }
            place(Int(root), 0, 0)
            trees.append(tree)
        }
        return (trees, splits, leaves)
    }

    /// Raw margins of `rows` rows of a row-major matrix with `featureCount` columns.
    public func margins(_ values: UnsafeBufferPointer<Float>, rows: Int) -> [Float] {
        complete.isEmpty ? pointerMargins(values, rows: rows) : completeMargins(values, rows: rows)
    }

    func completeMargins(_ values: UnsafeBufferPointer<Float>, rows: Int, wide: Bool = NativeForest.wideAvailable) -> [Float] {
        var out = [Float](repeating: baseMargin, count: rows)
        let stride = 2 * featureCount
        withUnsafeTemporaryAllocation(of: Float.self, capacity: rows * stride) { resolved in
            let x = resolved.baseAddress!
            for r in 0..<rows { resolveMissing(values.baseAddress! + r * featureCount, into: x + r * stride) }
            splits.withUnsafeBufferPointer { splitBuffer in
                leaves.withUnsafeBufferPointer { leafBuffer in
                    out.withUnsafeMutableBufferPointer { outBuffer in
                        let o = outBuffer.baseAddress!
                        // Rows sixteen to a vector where the processor has the instructions
                        // (`vigil_forest_wide`), else in blocks of sixteen, then four: independent
                        // walks the CPU overlaps (a walk is a chain of dependent loads), tree by
                        // tree, over chunks of rows small enough to stay in L1 while every tree
                        // walks them.
                        let vectored = wide ? rows - rows % 16 : 0
                        if vectored > 0 {
                            wideTrees.withUnsafeBufferPointer { trees in
                                vigil_forest_wide(
                                    x, Int32(stride), Int32(vectored), splitBuffer.baseAddress!, leafBuffer.baseAddress!,
                                    trees.baseAddress!, Int32(trees.count), o)
                            }
                        }
                        let blocked = rows - rows % 4
                        for chunk in Swift.stride(from: vectored, to: blocked, by: NativeForest.chunkRows) {
                            let end = min(blocked, chunk + NativeForest.chunkRows)
                            for tree in complete {
                                let s = splitBuffer.baseAddress! + tree.splitBase
                                let l = leafBuffer.baseAddress! + tree.leafBase - ((1 << tree.depth) - 1)
                                var r = chunk
                                while r + 16 <= end {
                                    let x0 = x + r * stride
                                    var i = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
                                    for _ in 0..<tree.depth {
                                        i.0 = NativeForest.step(s, i.0, x0)
                                        i.1 = NativeForest.step(s, i.1, x0 + stride)
                                        i.2 = NativeForest.step(s, i.2, x0 + 2 * stride)
                                        i.3 = NativeForest.step(s, i.3, x0 + 3 * stride)
                                        i.4 = NativeForest.step(s, i.4, x0 + 4 * stride)
                                        i.5 = NativeForest.step(s, i.5, x0 + 5 * stride)
                                        i.6 = NativeForest.step(s, i.6, x0 + 6 * stride)
                                        i.7 = NativeForest.step(s, i.7, x0 + 7 * stride)
                                        i.8 = NativeForest.step(s, i.8, x0 + 8 * stride)
                                        i.9 = NativeForest.step(s, i.9, x0 + 9 * stride)
                                        i.10 = NativeForest.step(s, i.10, x0 + 10 * stride)
                                        i.11 = NativeForest.step(s, i.11, x0 + 11 * stride)
                                        i.12 = NativeForest.step(s, i.12, x0 + 12 * stride)
                                        i.13 = NativeForest.step(s, i.13, x0 + 13 * stride)
                                        i.14 = NativeForest.step(s, i.14, x0 + 14 * stride)
                                        i.15 = NativeForest.step(s, i.15, x0 + 15 * stride)
                                    }
                                    o[r] += l[i.0]; o[r + 1] += l[i.1]; o[r + 2] += l[i.2]; o[r + 3] += l[i.3]
                                    o[r + 4] += l[i.4]; o[r + 5] += l[i.5]; o[r + 6] += l[i.6]; o[r + 7] += l[i.7]
                                    o[r + 8] += l[i.8]; o[r + 9] += l[i.9]; o[r + 10] += l[i.10]; o[r + 11] += l[i.11]
                                    o[r + 12] += l[i.12]; o[r + 13] += l[i.13]; o[r + 14] += l[i.14]; o[r + 15] += l[i.15]
                                    r += 16
                                }
                                while r < end {
                                    let x0 = x + r * stride, x1 = x0 + stride, x2 = x1 + stride, x3 = x2 + stride
                                    var i0 = 0, i1 = 0, i2 = 0, i3 = 0
                                    for _ in 0..<tree.depth {
                                        i0 = NativeForest.step(s, i0, x0)
                                        i1 = NativeForest.step(s, i1, x1)
                                        i2 = NativeForest.step(s, i2, x2)
                                        i3 = NativeForest.step(s, i3, x3)
                                    }
                                    o[r] += l[i0]
                                    o[r + 1] += l[i1]
                                    o[r + 2] += l[i2]
                                    o[r + 3] += l[i3]
                                    r += 4
                                }
                            }
                        }
                        // The remaining rows (all of them for a batch of one) one at a time: each
                        // tree's slot, then the leaves added in tree order.
                        if blocked < rows {
                            withUnsafeTemporaryAllocation(of: Int.self, capacity: complete.count) { slots in
                                for r in blocked..<rows {
                                    completeSlots(resolved: x + r * stride, splits: splitBuffer.baseAddress!, into: slots.baseAddress!)
                                    var acc = o[r]
                                    for (t, tree) in complete.enumerated() { acc += leafBuffer[tree.leafBase + slots[t]] }
                                    o[r] = acc
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Whether this processor walks sixteen rows to a vector (AVX-512 F).
    public static let wideAvailable = vigil_forest_wide_available()

    /// Rows walked through every tree before the next ones (in blocks of sixteen, then four):
    /// their resolved values stay in L1 (64 rows of the shipped model's 2 × 61 values: 31 KB).
    static let chunkRows = 64

    /// A row in the form the complete layout reads: `2 × featureCount` values, the row with each
    /// missing (NaN) value as +∞, then as −∞. A split whose missing values go right reads the
    /// first copy and one whose missing values go left the second, so `value < threshold` alone
    /// takes XGBoost's direction for every value (a present value is the same in both copies,
    /// and thresholds are finite): the walk's step needs no test for NaN and no default bit.
    @inline(__always)
    func resolveMissing(_ row: UnsafePointer<Float>, into resolved: UnsafeMutablePointer<Float>) {
        for j in 0..<featureCount {
            let v = row[j]
            resolved[j] = v.isNaN ? .infinity : v
            resolved[featureCount + j] = v.isNaN ? -.infinity : v
        }
    }

    /// Each complete tree's bottom slot (`0..<2^depth`) for one row (resolved by
    /// ``resolveMissing(_:into:)``). Four trees of equal depth at a time: a walk is a chain of
    /// dependent loads, and four independent ones overlap.
    @inline(__always)
    func completeSlots(resolved row: UnsafePointer<Float>, splits: UnsafePointer<Split>, into slots: UnsafeMutablePointer<Int>) {
        var t = 0
        while t < complete.count {
            let a = complete[t]
            if t + 4 <= complete.count, complete[t + 1].depth == a.depth, complete[t + 2].depth == a.depth,
                complete[t + 3].depth == a.depth
            {
                let sa = splits + a.splitBase, sb = splits + complete[t + 1].splitBase
                let sc = splits + complete[t + 2].splitBase, sd = splits + complete[t + 3].splitBase
                var ia = 0, ib = 0, ic = 0, id = 0
                for _ in 0..<a.depth {
                    ia = NativeForest.step(sa, ia, row)
                    ib = NativeForest.step(sb, ib, row)
                    ic = NativeForest.step(sc, ic, row)
                    id = NativeForest.step(sd, id, row)
                }
                let internalCount = (1 << a.depth) - 1
                slots[t] = ia - internalCount
                slots[t + 1] = ib - internalCount
                slots[t + 2] = ic - internalCount
                slots[t + 3] = id - internalCount
                t += 4
            } else {
                var i = 0
                for _ in 0..<a.depth { i = NativeForest.step(splits + a.splitBase, i, row) }
                slots[t] = i - ((1 << a.depth) - 1)
                t += 1
            }
        }
    }

    /// One level down a complete tree, on a resolved row: one comparison, no branch.
    @inline(__always)
    static func step(_ splits: UnsafePointer<Split>, _ i: Int, _ resolved: UnsafePointer<Float>) -> Int {
        let split = splits[i]
        return i &* 2 &+ 2 &- (resolved[Int(split.column)] < split.threshold ? 1 : 0)
    }

    func pointerMargins(_ values: UnsafeBufferPointer<Float>, rows: Int) -> [Float] {
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
    /// Whether the model records covers, so ``contributions(_:rows:)`` can explain scores.
    public var explains: Bool { !means.isEmpty }

    /// XGBoost's `FillNodeMeanValues`, in `Float` and in its order of operations.
    static func nodeMeans(nodes: [Node], roots: [Int32], covers: [Float]) -> [Float] {
        var means = [Float](repeating: 0, count: nodes.count)
        func fill(_ i: Int) -> Float {
            let n = nodes[i]
            var result: Float
            if n.feature < 0 {
                result = n.value
            } else {
                let l = Int(n.left), r = Int(n.right)
                result = fill(l) * covers[l]
                result += fill(r) * covers[r]
                result /= covers[i]
            }
            means[i] = result
            return result
        }
        for root in roots { _ = fill(Int(root)) }
        return means
    }

    /// Per-feature contributions to each row's margin by XGBoost's approximate (Saabas) method:
    /// along the row's path in each tree, the change of the node mean is credited to the split's
    /// feature. Laid out as the C API's contribution prediction (`type` 3): `rows × (featureCount
    /// + 1)`, the last column the bias; the same `Float` operations in the same order, so equal to
    /// it. Needs ``explains``.
    public func contributions(_ values: UnsafeBufferPointer<Float>, rows: Int) -> [Float] {
        precondition(explains, "the model records no covers")
        return credits.isEmpty ? pointerContributions(values, rows: rows) : completeContributions(values, rows: rows)
    }

    /// Contributions from the precomputed path credits: per tree, a branch-free walk to the
    /// bottom slot (as ``completeMargins(_:rows:)``) and the slot's `depth` credits. Each column
    /// still receives one addition per tree, in tree order, of the same value: equal bit for bit.
    func completeContributions(_ values: UnsafeBufferPointer<Float>, rows: Int) -> [Float] {
        let width = featureCount + 1
        var out = [Float](repeating: 0, count: rows * width)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: width + NativeForest.maxCompleteDepth + 2 * featureCount) { scratch in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: complete.count) { slots in
                let resolved = scratch.baseAddress! + width + NativeForest.maxCompleteDepth
                splits.withUnsafeBufferPointer { splitBuffer in
                    credits.withUnsafeBufferPointer { creditBuffer in
                        out.withUnsafeMutableBufferPointer { out in
                            for r in 0..<rows {
                                resolveMissing(values.baseAddress! + r * featureCount, into: resolved)
                                completeSlots(resolved: resolved, splits: splitBuffer.baseAddress!, into: slots.baseAddress!)
                                // Each tree's slot → where its credits start.
                                for (t, tree) in complete.enumerated() { slots[t] = creditBases[t] + slots[t] * tree.depth }
                                let o = scratch.baseAddress!
                                o.initialize(repeating: 0, count: width + NativeForest.maxCompleteDepth)
                                // Every slot's credits touched before any is added (both ends: a
                                // slot may straddle two cache lines). They are cold when
                                // explanations are rare; a loop of nothing but loads keeps all
                                // their misses in flight at once, where the additions' chains
                                // would let only a few overlap.
                                var touched: Float = 0
                                for (t, tree) in complete.enumerated() where tree.depth > 0 {
                                    let c = creditBuffer.baseAddress! + slots[t]
                                    touched += c[0].value + c[tree.depth - 1].value
                                }
                                o[featureCount + 1] = touched  // the padding column: keeps the loads
                                for (t, tree) in complete.enumerated() {
                                    let c = creditBuffer.baseAddress! + slots[t]
                                    for k in 0..<tree.depth { o[Int(c[k].feature)] += c[k].value }
                                    o[featureCount] += rootMeans[t]
                                }
                                o[featureCount] += baseMargin
                                (out.baseAddress! + r * width).update(from: o, count: width)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Contributions by walking each tree's nodes (forests too deep for the complete layout).
    func pointerContributions(_ values: UnsafeBufferPointer<Float>, rows: Int) -> [Float] {
        let width = featureCount + 1
        var out = [Float](repeating: 0, count: rows * width)
        // A path visits at most every node of its tree once.
        var longest = 0
        for (t, root) in roots.enumerated() { longest = max(longest, Int(t + 1 < roots.count ? roots[t + 1] : Int32(nodes.count)) - Int(root)) }
        // One tree's contributions, then added to the row's, as XGBoost does (it matters for
        // rounding when a feature splits twice on a path). Scratch buffers, not arrays: this runs
        // per node of every path, where an array's uniqueness and capacity checks cost more than
        // the arithmetic.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: width) { tree in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: longest + 1) { touched in
                tree.initialize(repeating: 0)
                nodes.withUnsafeBufferPointer { nodes in
                    means.withUnsafeBufferPointer { means in
                        out.withUnsafeMutableBufferPointer { out in
                            for r in 0..<rows {
                                let row = values.baseAddress! + r * featureCount
                                let o = out.baseAddress! + r * width
                                for root in roots {
                                    var i = Int(root)
                                    var value = means[i]
                                    tree[featureCount] += value
                                    touched[0] = featureCount
                                    var n = 1
                                    while nodes[i].feature >= 0 {
                                        let node = nodes[i]
                                        let f = Int(node.feature & ~NativeForest.defaultLeftBit)
                                        let v = row[f]
                                        let goLeft = v.isNaN ? (node.feature & NativeForest.defaultLeftBit) != 0 : v < node.value
                                        i = Int(goLeft ? node.left : node.right)
                                        tree[f] += means[i] - value
                                        touched[n] = f
                                        n += 1
                                        value = means[i]
                                    }
                                    // (XGBoost then credits `leaf value - leaf mean`, which is 0.)
                                    for k in 0..<n {
                                        let f = touched[k]
                                        o[f] += tree[f]
                                        tree[f] = 0  // a feature listed twice adds 0 the second time
                                    }
                                }
                                o[featureCount] += baseMargin
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Loads from a model file; JSON directly, anything else through the C API's serialiser.
    public init(booster: Booster) throws(XGBoostError) {
        try self.init(json: Data(booster.json().utf8))
    }
}
