import Foundation

/// The distributions a bundle was trained on, recorded in its manifest: per feature a binned
/// histogram with the share of missing values, and the histogram of the calibrated score.
/// Live traffic binned the same way gives the population stability index (``Drift``).
public struct DriftReference: Codable, Sendable, Hashable {
    public struct Histogram: Codable, Sendable, Hashable {
        public var name: String
        /// Ascending upper edges: bin i holds values in (edges[i − 1], edges[i]]; the last bin,
        /// values above every edge. Deciles of the training values, duplicates merged.
        public var edges: [Double]
        /// Share of the non-missing values in each bin (`edges.count + 1` bins).
        public var shares: [Double]
        /// Share of rows where the value is missing (NaN).
        public var missing: Double

        public init(name: String, edges: [Double], shares: [Double], missing: Double) {
            self.name = name
            self.edges = edges
            self.shares = shares
            self.missing = missing
        }

        /// The bin of a non-missing value.
        @inline(__always)
        public func bin(_ v: Double) -> Int {
            var lo = 0, hi = edges.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if v <= edges[mid] { hi = mid } else { lo = mid + 1 }
            }
            return lo
        }

        /// Deciles of `values` (NaN = missing) as edges, and the shares they give.
        public static func fit(name: String, values: [Double]) -> Histogram {
            let present = values.filter { !$0.isNaN }.sorted()
            var edges: [Double] = []
            if !present.isEmpty {
                for q in 1..<10 {
                    let e = present[min(present.count - 1, present.count * q / 10)]
                    if edges.last != e { edges.append(e) }
                }
                // A top edge equal to the maximum leaves the last bin empty: drop it.
                if edges.last == present.last { edges.removeLast() }
            }
            var h = Histogram(name: name, edges: edges, shares: [], missing: 0)
            var counts = [Double](repeating: 0, count: edges.count + 1)
            for v in present { counts[h.bin(v)] += 1 }
            h.shares = counts.map { present.isEmpty ? 0 : $0 / Double(present.count) }
            h.missing = values.isEmpty ? 0 : Double(values.count - present.count) / Double(values.count)
            return h
        }
    }

    public var rows: Int
    public var features: [Histogram]
    public var score: Histogram

    public init(rows: Int, features: [Histogram], score: Histogram) {
        self.rows = rows
        self.features = features
        self.score = score
    }

    /// Fits the reference on a row-major matrix and its calibrated scores.
    public static func fit(names: [String], values: [Float], scores: [Double]) -> DriftReference {
        let rows = scores.count, columns = names.count
        let features = names.enumerated().map { j, name in
            Histogram.fit(name: name, values: (0..<rows).map { Double(values[$0 * columns + j]) })
        }
        return DriftReference(rows: rows, features: features, score: Histogram.fit(name: "score", values: scores))
    }
}

/// Population stability index of live traffic against a ``DriftReference``, over a sliding
/// window of time slots (or over everything added, for an offline report).
///
/// `PSI = Σ (a − e) · ln(a / e)` over the bins plus one bin for missing values, with shares
/// floored at 10⁻⁴ so an empty bin counts as rare rather than infinite. Common reading: below
/// 0.1 stable, 0.1–0.25 watch, above 0.25 act. A field that goes missing moves its share into the
/// missing bin and shows as drift of every feature that reads it.
public struct Drift: Sendable {
    public let reference: DriftReference
    /// Slot length in ms, and how many slots the window keeps.
    public let slotMillis: Int64
    public let slots: Int
    /// Bins per histogram, missing last: `width[j] = edges.count + 2`; the score is histogram
    /// `features.count`.
    private let offsets: [Int]
    private let total: Int
    private var counts: [[Int32]]
    private var rowsPerSlot: [Int]
    private var slotIndex: [Int64]

    public init(reference: DriftReference, slotMillis: Int64 = 300_000, slots: Int = 12) {
        self.reference = reference
        self.slotMillis = max(1, slotMillis)
        self.slots = max(1, slots)
        var offsets: [Int] = []
        var at = 0
        for h in reference.features + [reference.score] {
            offsets.append(at)
            at += h.edges.count + 2
        }
        self.offsets = offsets
        self.total = at
        counts = Array(repeating: Array(repeating: 0, count: at), count: self.slots)
        rowsPerSlot = Array(repeating: 0, count: self.slots)
        slotIndex = Array(repeating: .min, count: self.slots)
    }

    /// Adds a batch: its row-major feature matrix and calibrated scores, at `time` (ms); with
    /// `every` n > 1, only every n-th row (a sample keeps live monitoring cheap on big batches).
    public mutating func add(values: [Float], scores: [Double], at time: Int64, every: Int = 1) {
        let rows = scores.count, columns = reference.features.count
        precondition(values.count == rows * columns, "drift: \(values.count) values for \(rows) rows of \(columns)")
        let index = time / slotMillis
        let s = Int(((index % Int64(slots)) + Int64(slots)) % Int64(slots))
        if slotIndex[s] != index {
            slotIndex[s] = index
            rowsPerSlot[s] = 0
            for k in counts[s].indices { counts[s][k] = 0 }
        }
        let sampled = stride(from: 0, to: rows, by: max(1, every))
        rowsPerSlot[s] += sampled.underestimatedCount
        counts[s].withUnsafeMutableBufferPointer { c in
            for (j, h) in reference.features.enumerated() {
                let base = offsets[j], missing = base + h.edges.count + 1
                for r in sampled {
                    let v = values[r * columns + j]
                    c[v.isNaN ? missing : base + h.bin(Double(v))] += 1
                }
            }
            let h = reference.score, base = offsets[columns]
            for r in sampled {
                let p = scores[r]
                c[p.isNaN ? base + h.edges.count + 1 : base + h.bin(p)] += 1
            }
        }
    }

    /// What the window shows: PSI per feature (reference order) and of the score, the live
    /// share of missing values per feature, and the rows (sampled) it is based on.
    public struct Report: Sendable {
        public var rows: Int
        public var features: [Double]
        public var score: Double
        public var missing: [Double]
    }

    /// The report over the slots still inside the window at `now` (ms); `nil` = every slot.
    public func report(now: Int64? = nil) -> Report {
        var sum = [Int64](repeating: 0, count: total)
        var rows = 0
        let current = now.map { $0 / slotMillis }
        for s in 0..<slots where slotIndex[s] != .min {
            if let current, current - slotIndex[s] >= Int64(slots) { continue }
            rows += rowsPerSlot[s]
            for k in 0..<total { sum[k] += Int64(counts[s][k]) }
        }
        func psi(_ h: DriftReference.Histogram, at base: Int) -> (psi: Double, missing: Double) {
            let n = h.edges.count + 2
            let all = (0..<n).reduce(Int64(0)) { $0 + sum[base + $1] }
            guard all > 0 else { return (.nan, .nan) }
            var result = 0.0
            for b in 0..<n {
                let expected = b == n - 1 ? h.missing : (1 - h.missing) * h.shares[b]
                let e = max(expected, 1e-4), a = max(Double(sum[base + b]) / Double(all), 1e-4)
                result += (a - e) * log(a / e)
            }
            return (result, Double(sum[base + n - 1]) / Double(all))
        }
        let features = reference.features.enumerated().map { psi($1, at: offsets[$0]) }
        return Report(rows: rows, features: features.map(\.psi), score: psi(reference.score, at: offsets[reference.features.count]).psi,
                      missing: features.map(\.missing))
    }
}
