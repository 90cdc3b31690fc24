import Benchmark
import Foundation
import Vigil
import VigilSimulator

/// An endless stream: the simulated month, repeated with fresh ids and shifted times, so the
/// store keeps seeing new transactions (never the idempotent redelivery path).
final class Stream: @unchecked Sendable {
    let base: [Transaction]
    let span: Int64
    var position = 0
    var cycle = 0

    init(_ base: [Transaction]) {
        self.base = base
        span = base.last!.timestamp - base.first!.timestamp + 1
    }

    func next(_ n: Int) -> [Transaction] {
        var out: [Transaction] = []
        out.reserveCapacity(n)
        for _ in 0..<n {
            if position == base.count {
                position = 0
                cycle += 1
            }
            var tx = base[position]
            if cycle > 0 {
                tx.id += "#\(cycle)"
                tx.timestamp += Int64(cycle) * span
            }
            out.append(tx)
            position += 1
        }
        return out
    }
}

let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path
let modelDirectory = root + "/models/default"
let rulesPath = root + "/rules/default.yaml"

/// Generated once per process, shared by every benchmark.
nonisolated(unsafe) let history = Simulator(options: .init(transactions: 150_000, days: 20, seed: 11)).generate()

/// A scorer whose windows hold a day of traffic, and the stream that continues it.
func warmScorer(_ evaluator: Ensemble.Evaluator = .auto) -> (Scorer, Stream) {
    var c = ScorerConfiguration(modelDirectory: modelDirectory, rulesPath: rulesPath)
    c.evaluator = evaluator
    let scorer = try! Scorer(configuration: c)
    let stream = Stream(history)
    for _ in 0..<30 { _ = scorer.score(stream.next(256)) }
    return (scorer, stream)
}

/// Feature rows of real, warm traffic.
nonisolated(unsafe) let featureRows: FeatureMatrix = {
    let (scorer, stream) = warmScorer()
    return scorer.evaluate(stream.next(256)).features
}()

/// Loaded once: loading (and freeing) a booster must not land inside a measurement.
nonisolated(unsafe) let ensembles: [Ensemble.Evaluator: Ensemble] = [
    .capi: try! Ensemble(directory: modelDirectory, evaluator: .capi),
    .native: try! Ensemble(directory: modelDirectory, evaluator: .native),
]
nonisolated(unsafe) let rules = try! RuleSet.load(path: rulesPath, schema: featureRows.schema)

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        warmupIterations: 3, maxDuration: .seconds(3), maxIterations: 5_000,
        // Allocation counts are deterministic: hold them tightly. Wall clock on a shared 2-core
        // machine is not (two runs of the same binary differed by 2× here): only a
        // regression past 3× fails `baseline check`.
        thresholds: [
            .mallocCountTotal: .init(relative: [.p25: 5.0, .p50: 5.0, .p75: 5.0]),
            .wallClock: .init(relative: [.p25: 200.0, .p50: 200.0, .p75: 200.0]),
            .throughput: .init(relative: [.p25: 70.0, .p50: 70.0, .p75: 70.0]),
        ])

    // MARK: Decode — the hand-written scanner against Foundation's JSONSerialization (parse only).

    let messages: [[UInt8]] = history.prefix(256).map { Array(Simulator.json($0).utf8) }
    Benchmark("decode/vigil ×256 messages") { benchmark in
        let decoder = TransactionDecoder()
        for _ in benchmark.scaledIterations {
            for m in messages { blackHole(try decoder.decode(m)) }
        }
    }
    Benchmark("decode/baseline JSONSerialization ×256 messages") { benchmark in
        let data = messages.map { Data($0) }
        for _ in benchmark.scaledIterations {
            for d in data { blackHole(try JSONSerialization.jsonObject(with: d)) }
        }
    }

    // MARK: Features, in-memory store, batch of 256.

    Benchmark("features/in-memory batch 256") { benchmark in
        let (scorer, stream) = warmScorer()
        for _ in benchmark.scaledIterations {
            let batch = stream.next(256)
            benchmark.startMeasurement()
            blackHole(try scorer.engine.features(batch, store: scorer.store))
            benchmark.stopMeasurement()
        }
    }

    // MARK: Rules and decision.

    Benchmark("rules/default rules batch 256") { benchmark in
        let batch = Array(history.prefix(256))
        for _ in benchmark.scaledIterations { blackHole(rules.evaluate(batch, features: featureRows)) }
    }

    Benchmark("decide/cost matrix batch 256") { benchmark in
        let decider = Decider(costs: .default)
        let batch = Array(history.prefix(256))
        for _ in benchmark.scaledIterations {
            for (i, tx) in batch.enumerated() { blackHole(decider.decide(probability: Double(i) / 256, transaction: tx)) }
        }
    }

    // MARK: Ensemble — the XGBoost C API (baseline) against the native evaluator, same rows.

    for batch in [1, 16, 256] {
        let rows = Array(featureRows.values.prefix(batch * featureRows.columns))
        for evaluator in [Ensemble.Evaluator.capi, .native] {
            let name = evaluator == .capi ? "C API (baseline)" : "native"
            Benchmark("ensemble/\(name) batch \(batch)") { benchmark in
                let ensemble = ensembles[evaluator]!
                for _ in benchmark.scaledIterations { blackHole(ensemble.score(rows, rows: batch)) }
            }
        }
    }

    // MARK: The whole Scorer, in-memory store, with each evaluator.

    for evaluator in [Ensemble.Evaluator.capi, .native] {
        let name = evaluator == .capi ? "C API" : "native"
        Benchmark("scorer/\(name) batch 256 (one core)") { benchmark in
            let (scorer, stream) = warmScorer(evaluator)
            for _ in benchmark.scaledIterations {
                let batch = stream.next(256)
                benchmark.startMeasurement()
                blackHole(scorer.score(batch))
                benchmark.stopMeasurement()
            }
        }
        Benchmark("scorer/\(name) single transaction") { benchmark in
            let (scorer, stream) = warmScorer(evaluator)
            for _ in benchmark.scaledIterations {
                let tx = stream.next(1)[0]
                benchmark.startMeasurement()
                blackHole(scorer.score(tx))
                benchmark.stopMeasurement()
            }
        }
    }
}
