import ArgumentParser
import Foundation
import Vigil
import VigilSimulator

struct Model: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Inspect model bundles.", subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Score rows with the native evaluator and the XGBoost C API; fail if they differ by more than 1e-6.")

        @Argument(help: "Model bundle directory.") var directory: String
        @Option(help: "Rows of each kind (simulated, random with missing values).") var rows: Int = 5000
        @Option(help: "Largest allowed absolute difference.") var tolerance: Double = 1e-6

        func run() throws {
            let manifest = try Manifest.load(directory: directory)
            let plan = try FeaturePlan(spec: FeatureSpec.load(path: directory + "/" + manifest.features.spec))
            let columns = plan.schema.count
            // Simulated rows: real feature vectors from the bundle's own spec.
            let stream = Simulator(options: .init(transactions: rows, days: max(1, rows / 5000), seed: 99)).generate()
            let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
            let store = InMemoryVelocityStore(plan: plan)
            var simulated: [Float] = []
            for start in stride(from: 0, to: stream.count, by: 256) {
                simulated += try engine.features(Array(stream[start..<min(start + 256, stream.count)]), store: store).values
            }
            // Random rows: each cell drawn from the simulated values of its column, from the
            // model's split thresholds, or missing.
            var rng = SplitMix64(seed: 7)
            var random: [Float] = []
            random.reserveCapacity(rows * columns)
            for _ in 0..<rows {
                for c in 0..<columns {
                    let u = rng.next() % 10
                    random.append(u < 3 ? .nan : simulated[Int(rng.next() % UInt64(simulated.count / columns)) * columns + c])
                }
            }
            var worst = 0.0
            print(["member".padded(16), "rows".padded(9), "count".padded(8), "max |Δ margin|".padded(15), "max |Δ probability|"].joined(separator: "  "))
            for m in manifest.members {
                let booster = try Booster(path: directory + "/" + m.file)
                let native = try NativeForest(booster: booster)
                for (name, data) in [("simulated", simulated), ("random", random)] {
                    let n = data.count / columns
                    let (dm, dp) = try data.withUnsafeBufferPointer { v in
                        let a = try booster.margins(v, rows: n, columns: columns), b = native.margins(v, rows: n)
                        let pa = try booster.probabilities(v, rows: n, columns: columns), pb = native.predictions(v, rows: n)
                        return (zip(a, b).map { Double(abs($0 - $1)) }.max() ?? 0, zip(pa, pb).map { Double(abs($0 - $1)) }.max() ?? 0)
                    }
                    worst = max(worst, dm, dp)
                    print([m.name.padded(16), name.padded(9), String(n).padded(8), "\(dm)".padded(15), "\(dp)"].joined(separator: "  "))
                }
            }
            let native = try Ensemble(directory: directory, evaluator: .native), capi = try Ensemble(directory: directory, evaluator: .capi)
            for data in [simulated, random] {
                let a = native.score(data, rows: data.count / columns), b = capi.score(data, rows: data.count / columns)
                worst = max(worst, zip(a.probabilities, b.probabilities).map { abs($0 - $1) }.max() ?? 0)
            }
            print("ensemble (calibrated probability) max |Δ| \(worst)")
            guard worst <= tolerance else {
                print("FAIL: native and C API differ by \(worst) > \(tolerance)")
                throw ExitCode(1)
            }
            print("OK: native evaluator equals the XGBoost C API within \(tolerance)")
        }
    }
}

extension String {
    func padded(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
