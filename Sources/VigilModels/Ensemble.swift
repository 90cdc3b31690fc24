import Foundation
import VigilCore

/// A loaded model bundle: members, weights, calibration, and the schema they expect.
///
/// Scoring combines members by weighted log-odds (the mean of their margins, weighted), then
/// calibrates. A member that fails is dropped for that batch and the result says so.
public final class Ensemble: Sendable {
    public let manifest: Manifest
    public let directory: String
    let members: [Member]

    struct Member: Sendable {
        let name: String
        let weight: Double
        /// The C API: the trainer's own evaluator, and the reference.
        let booster: Booster
        /// The native evaluator, when the model loads into it and it is enabled.
        let native: NativeForest?
    }

    /// Which evaluator scores the members.
    public enum Evaluator: String, Sendable, CaseIterable {
        /// Native where every member loads into it, the C API otherwise.
        case auto
        /// Native, or a load error.
        case native
        /// Always the XGBoost C API.
        case capi
    }

    /// True when the native evaluator scores every member.
    public var isNative: Bool { members.allSatisfy { $0.native != nil } }

    /// The version string verdicts carry: `name@version` (made once: every verdict names it).
    public let version: String

    /// Loads a bundle and checks it against the engine's schema when one is given.
    /// - Throws: ``ConfigurationError`` naming the file for a missing or corrupt member, a feature
    ///   count that disagrees with the manifest, or a schema hash that is not the engine's.
    public init(
        directory: String, expecting schema: FeatureSchemaDescription? = nil, threads: Int = 1, evaluator: Evaluator = .auto
    ) throws(ConfigurationError) {
        let manifest = try Manifest.load(directory: directory)
        let manifestPath = directory + "/manifest.json"
        if let schema {
            guard manifest.features.hash == schema.hash, manifest.features.names == schema.names else {
                let ours = Set(schema.names), theirs = Set(manifest.features.names)
                let missing = theirs.subtracting(ours).sorted().prefix(5), extra = ours.subtracting(theirs).sorted().prefix(5)
                var detail = "bundle schema \(manifest.features.hash) (\(manifest.features.names.count) features) ≠ engine schema \(schema.hash) (\(schema.names.count) features)"
                if !missing.isEmpty { detail += "; the engine lacks \(missing.joined(separator: ", "))" }
                if !extra.isEmpty { detail += "; the bundle lacks \(extra.joined(separator: ", "))" }
                if missing.isEmpty && extra.isEmpty { detail += "; same names in another order" }
                throw ConfigurationError(file: manifestPath, line: nil, message: "feature schema mismatch: \(detail)")
            }
        }
        var members: [Member] = []
        for m in manifest.members {
            let path = directory + "/" + m.file
            let booster: Booster
            do {
                booster = try Booster(path: path, threads: threads)
            } catch {
                throw ConfigurationError(file: path, line: nil, message: "member '\(m.name)': \(error.message)")
            }
            guard booster.featureCount == manifest.features.names.count else {
                throw ConfigurationError(file: path, line: nil,
                    message: "member '\(m.name)' takes \(booster.featureCount) features, the manifest lists \(manifest.features.names.count)")
            }
            var native: NativeForest?
            if evaluator != .capi {
                do {
                    native = try NativeForest(booster: booster)
                } catch where evaluator == .native {
                    throw ConfigurationError(file: path, line: nil, message: "member '\(m.name)': \(error.message)")
                } catch {
                    native = nil  // .auto: the C API scores this member
                }
            }
            members.append(Member(name: m.name, weight: m.weight, booster: booster, native: native))
        }
        self.manifest = manifest
        self.directory = directory
        self.members = members
        version = "\(manifest.name)@\(manifest.version)"
        memberNames = members.map(\.name)
    }

    public let memberNames: [String]

    /// The feature schema the bundle was trained on.
    public var schema: FeatureSchemaDescription { .init(names: manifest.features.names, hash: manifest.features.hash) }

    /// Scores of a batch.
    public struct Scores: Sendable {
        /// Calibrated probability per row.
        public var probabilities: [Double]
        /// Combined (uncalibrated) margin per row.
        public var margins: [Double]
        /// `memberProbabilities[m][row]`; NaN for a member that failed.
        public var memberProbabilities: [[Double]]
        /// Members that failed on this batch, with why.
        public var failures: [(member: String, error: String)]
        public var degraded: Bool { !failures.isEmpty }
    }

    /// Scores `rows` rows of the row-major matrix `values` (one call per member).
    ///
    /// - Parameter budget: a member that takes longer than this on the batch is dropped from it
    ///   (its result discarded, the scores marked degraded) — the same as a member that fails.
    public func score(_ values: [Float], rows: Int, budget: Duration? = nil) -> Scores {
        let columns = manifest.features.names.count
        var margins = [Double](repeating: 0, count: rows)
        var totalWeight = 0.0
        var memberProbabilities: [[Double]] = []
        var failures: [(String, String)] = []
        values.withUnsafeBufferPointer { v in
            let clock = ContinuousClock()
            for m in members {
                do {
                    let started = clock.now
                    let out = try m.native?.margins(v, rows: rows) ?? m.booster.margins(v, rows: rows, columns: columns)
                    let took = clock.now - started
                    if let budget, took > budget {
                        throw XGBoostError(operation: "predict", message: "over its \(budget) budget (took \(took))")
                    }
                    for r in 0..<rows { margins[r] += m.weight * Double(out[r]) }
                    totalWeight += m.weight
                    memberProbabilities.append(out.map { sigmoid(Double($0)) })
                } catch {
                    failures.append((m.name, "\(error)"))
                    memberProbabilities.append([Double](repeating: .nan, count: rows))
                }
            }
        }
        if totalWeight > 0 {
            for r in 0..<rows { margins[r] /= totalWeight }
        } else {
            margins = [Double](repeating: .nan, count: rows)
        }
        let calibration = manifest.calibration
        return Scores(
            probabilities: margins.map { $0.isNaN ? .nan : calibration.probability(margin: $0) },
            margins: margins, memberProbabilities: memberProbabilities, failures: failures)
    }

    /// Per-feature contributions to the combined margin (weighted SHAP values of the members),
    /// for the rows given; `result[k]` has one value per feature for `rows[k]`.
    public func contributions(_ values: [Float], rows: [Int]) -> [[Double]] {
        let columns = manifest.features.names.count
        guard !rows.isEmpty else { return [] }
        var subset = [Float]()
        subset.reserveCapacity(rows.count * columns)
        for r in rows { subset.append(contentsOf: values[(r * columns)..<((r + 1) * columns)]) }
        var out = [[Double]](repeating: [Double](repeating: 0, count: columns), count: rows.count)
        var totalWeight = 0.0
        subset.withUnsafeBufferPointer { v in
            for m in members {
                // Native when the member is scored natively and records covers: equal to the C
                // API's, without its per-call cost (it recomputes every node's mean each call).
                let native = m.native.flatMap { $0.explains ? $0.contributions(v, rows: rows.count) : nil }
                guard let c = native ?? (try? m.booster.contributions(v, rows: rows.count, columns: columns)) else { continue }
                totalWeight += m.weight
                for k in 0..<rows.count {
                    for j in 0..<columns { out[k][j] += m.weight * Double(c[k * (columns + 1) + j]) }
                }
            }
        }
        guard totalWeight > 0 else { return out }
        return out.map { $0.map { $0 / totalWeight } }
    }
}

/// The names and hash of the engine's feature schema, as the model layer needs them.
public struct FeatureSchemaDescription: Sendable, Hashable {
    public var names: [String]
    public var hash: String
    public init(names: [String], hash: String) {
        self.names = names
        self.hash = hash
    }
}
