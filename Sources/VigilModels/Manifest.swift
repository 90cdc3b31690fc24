import Foundation
import VigilCore

/// `manifest.json` of a model bundle directory (`models/NAME/`).
public struct Manifest: Codable, Sendable, Hashable {
    public struct Features: Codable, Sendable, Hashable {
        /// Column order the members were trained on.
        public var names: [String]
        /// ``FeatureSchema/hash`` of `names`.
        public var hash: String
        /// The feature spec file in the bundle that produces these columns.
        public var spec: String
        public init(names: [String], hash: String, spec: String) {
            self.names = names
            self.hash = hash
            self.spec = spec
        }
    }

    public struct Member: Codable, Sendable, Hashable {
        public var name: String
        public var file: String
        public var weight: Double
        /// Hyper-parameters it was trained with, for the model card.
        public var params: [String: String]?
        public init(name: String, file: String, weight: Double, params: [String: String]? = nil) {
            self.name = name
            self.file = file
            self.weight = weight
            self.params = params
        }
    }

    public var format: Int = 1
    public var name: String
    public var version: String
    public var created: String
    public var features: Features
    public var members: [Member]
    public var calibration: Calibration
    /// Training data and period, label delay, seeds: free-form provenance.
    public var provenance: [String: String]
    /// Held-out metrics (AUC, average precision, …).
    public var metrics: [String: Double]
    /// The training distributions drift is measured against; absent in bundles from before it.
    public var reference: DriftReference?

    public init(
        name: String, version: String, created: String, features: Features, members: [Member], calibration: Calibration,
        provenance: [String: String], metrics: [String: Double], reference: DriftReference? = nil
    ) {
        self.name = name
        self.version = version
        self.created = created
        self.features = features
        self.members = members
        self.calibration = calibration
        self.provenance = provenance
        self.metrics = metrics
        self.reference = reference
    }

    public static func load(directory: String) throws(ConfigurationError) -> Manifest {
        let path = directory + "/manifest.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(file: path, line: nil, message: "cannot read the model manifest")
        }
        do {
            let m = try JSONDecoder().decode(Manifest.self, from: data)
            guard m.format == 1 else { throw ConfigurationError(file: path, line: nil, message: "unsupported manifest format \(m.format)") }
            guard !m.members.isEmpty else { throw ConfigurationError(file: path, line: nil, message: "a bundle needs at least one member") }
            guard m.members.allSatisfy({ $0.weight > 0 && $0.weight.isFinite }) else {
                throw ConfigurationError(file: path, line: nil, message: "member weights must be positive")
            }
            if let r = m.reference {
                guard r.features.map(\.name) == m.features.names,
                      (r.features + [r.score]).allSatisfy({ $0.shares.count == $0.edges.count + 1 && $0.edges == $0.edges.sorted() }) else {
                    throw ConfigurationError(file: path, line: nil, message: "reference: one histogram per feature, in the features' order, each with one share per bin")
                }
            }
            return m
        } catch let e as ConfigurationError {
            throw e
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw ConfigurationError(file: path, line: nil, message: "missing '\(Manifest.path(ctx.codingPath + [key]))'")
        } catch let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx) {
            throw ConfigurationError(file: path, line: nil, message: "wrong type at '\(Manifest.path(ctx.codingPath))': \(ctx.debugDescription)")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw ConfigurationError(file: path, line: nil, message: "not valid JSON: \(ctx.underlyingError.map { "\($0)" } ?? ctx.debugDescription)")
        } catch {
            throw ConfigurationError(file: path, line: nil, message: "\(error)")
        }
    }

    static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: CharacterSet(charactersIn: "."))
    }

    public func write(directory: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try enc.encode(self).write(to: URL(fileURLWithPath: directory + "/manifest.json"))
    }
}

/// Maps the ensemble's combined margin to a calibrated probability.
public enum Calibration: Codable, Sendable, Hashable {
    /// sigmoid(margin)
    case none
    /// sigmoid(a · margin + b), fitted by logistic regression on a held-out slice.
    case platt(a: Double, b: Double)
    /// A non-decreasing step function of sigmoid(margin), fitted by pool-adjacent-violators.
    case isotonic(x: [Double], y: [Double])

    public func probability(margin: Double) -> Double {
        switch self {
        case .none: return sigmoid(margin)
        case .platt(let a, let b): return sigmoid(a * margin + b)
        case .isotonic(let xs, let ys):
            let p = sigmoid(margin)
            guard !xs.isEmpty else { return p }
            if p <= xs[0] { return ys[0] }
            if p >= xs[xs.count - 1] { return ys[ys.count - 1] }
            var lo = 0, hi = xs.count - 1
            while hi - lo > 1 {
                let mid = (lo + hi) / 2
                if xs[mid] <= p { lo = mid } else { hi = mid }
            }
            let t = (p - xs[lo]) / (xs[hi] - xs[lo])
            return ys[lo] + t * (ys[hi] - ys[lo])
        }
    }

    /// Fits Platt scaling by Newton's method on (margin, label) pairs, with Platt's smoothed
    /// targets ((N₊ + 1) / (N₊ + 2) for fraud, 1 / (N₋ + 2) for legitimate): without them, a slice
    /// the model separates perfectly drives the slope to infinity and every score to exactly 0 or 1.
    public static func fitPlatt(margins: [Double], labels: [Bool]) -> Calibration {
        let positives = Double(labels.filter { $0 }.count), negatives = Double(labels.count) - positives
        let targetFraud = (positives + 1) / (positives + 2), targetLegit = 1 / (negatives + 2)
        var a = 1.0, b = 0.0
        for _ in 0..<50 {
            var ga = 0.0, gb = 0.0, haa = 1e-9, hab = 0.0, hbb = 1e-9
            for (m, y) in zip(margins, labels) {
                let p = sigmoid(a * m + b)
                let d = p - (y ? targetFraud : targetLegit)
                let w = max(p * (1 - p), 1e-12)
                ga += d * m; gb += d
                haa += w * m * m; hab += w * m; hbb += w
            }
            let det = haa * hbb - hab * hab
            guard det.magnitude > 1e-12 else { break }
            let da = (hbb * ga - hab * gb) / det
            let db = (haa * gb - hab * ga) / det
            a -= da; b -= db
            if abs(da) < 1e-10 && abs(db) < 1e-10 { break }
        }
        return a.isFinite && b.isFinite ? .platt(a: a, b: b) : .none
    }

    /// Fits isotonic regression of the label on sigmoid(margin).
    public static func fitIsotonic(margins: [Double], labels: [Bool]) -> Calibration {
        let pairs = zip(margins.map(sigmoid), labels).sorted { $0.0 < $1.0 }
        var blocks: [(x: Double, sum: Double, n: Double)] = []
        for (p, y) in pairs {
            blocks.append((p, y ? 1 : 0, 1))
            while blocks.count > 1, blocks[blocks.count - 2].sum / blocks[blocks.count - 2].n >= blocks[blocks.count - 1].sum / blocks[blocks.count - 1].n {
                let last = blocks.removeLast()
                let prev = blocks.removeLast()
                blocks.append(((prev.x * prev.n + last.x * last.n) / (prev.n + last.n), prev.sum + last.sum, prev.n + last.n))
            }
        }
        return .isotonic(x: blocks.map(\.x), y: blocks.map { $0.sum / $0.n })
    }
}

@inlinable
public func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }
