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

    init(count: Int) {
        base = Simulator(options: .init(transactions: count, days: 30, seed: 11)).generate()
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

func makeScorer() -> Scorer {
    try! Scorer(configuration: ScorerConfiguration(modelDirectory: modelDirectory, rulesPath: root + "/rules/default.yaml"))
}

/// Warms a scorer's windows with a day of traffic.
func warm(_ scorer: Scorer, _ stream: Stream) {
    for _ in 0..<40 { _ = scorer.score(stream.next(256)) }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal, .peakMemoryResident],
        warmupIterations: 3, maxDuration: .seconds(4), maxIterations: 2_000,
        thresholds: [.wallClock: .relaxed, .mallocCountTotal: .relaxed])

    // MARK: Decode — hand-written scanner vs Foundation's JSONSerialization, 256 messages.

    let messages: [[UInt8]] = Stream(count: 2_000).next(256).map { Array(Simulator.json($0).utf8) }
    Benchmark("decode/vigil x256", configuration: .init(scalingFactor: .one)) { benchmark in
        let decoder = TransactionDecoder()
        for _ in benchmark.scaledIterations {
            for m in messages { blackHole(try decoder.decode(m)) }
        }
    }
    Benchmark("decode/baseline JSONSerialization x256 (parse only)") { benchmark in
        let data = messages.map { Data($0) }
        for _ in benchmark.scaledIterations {
            for d in data { blackHole(try JSONSerialization.jsonObject(with: d)) }
        }
    }

    // MARK: Stages, batch of 256, warm in-memory store.

    Benchmark("features/in-memory batch 256") { benchmark in
        let scorer = makeScorer()
        let stream = Stream(count: 200_000)
        warm(scorer, stream)
        for _ in benchmark.scaledIterations {
            let batch = stream.next(256)
            benchmark.startMeasurement()
            blackHole(try scorer.engine.features(batch, store: scorer.store))
            benchmark.stopMeasurement()
        }
    }

    // Ensemble: the XGBoost C API (baseline) against the native evaluator, same rows.
    let ensembleRows: FeatureMatrix = {
        let scorer = makeScorer()
        let stream = Stream(count: 200_000)
        warm(scorer, stream)
        return scorer.evaluate(stream.next(256)).features
    }()
    for batch in [1, 16, 256] {
        let rows = Array(ensembleRows.values.prefix(batch * ensembleRows.columns))
        for evaluator in [Ensemble.Evaluator.capi, .native] {
            let name = evaluator == .capi ? "C API (baseline)" : "native"
            Benchmark("ensemble/\(name) batch \(batch)") { benchmark in
                let ensemble = try Ensemble(directory: modelDirectory, evaluator: evaluator)
                for _ in benchmark.scaledIterations { blackHole(ensemble.score(rows, rows: batch)) }
            }
        }
    }

    Benchmark("rules/default rules batch 256") { benchmark in
        let scorer = makeScorer()
        let stream = Stream(count: 200_000)
        warm(scorer, stream)
        let batch = stream.next(256)
        let matrix = scorer.evaluate(batch).features
        let rules = try RuleSet.load(path: root + "/rules/default.yaml", schema: matrix.schema)
        for _ in benchmark.scaledIterations { blackHole(rules.evaluate(batch, features: matrix)) }
    }

    Benchmark("decide/cost matrix batch 256") { benchmark in
        let decider = Decider(costs: .default)
        let batch = Stream(count: 2_000).next(256)
        for _ in benchmark.scaledIterations {
            for (i, tx) in batch.enumerated() { blackHole(decider.decide(probability: Double(i) / 256, transaction: tx)) }
        }
    }

    // MARK: The whole Scorer, in-memory store, with each evaluator.

    for evaluator in [Ensemble.Evaluator.capi, .native] {
        let name = evaluator == .capi ? "C API" : "native"
        Benchmark("scorer/\(name) batch 256 (throughput, one core)") { benchmark in
            var c = ScorerConfiguration(modelDirectory: modelDirectory, rulesPath: root + "/rules/default.yaml")
            c.evaluator = evaluator
            let scorer = try Scorer(configuration: c)
            let stream = Stream(count: 200_000)
            warm(scorer, stream)
            for _ in benchmark.scaledIterations {
                let batch = stream.next(256)
                benchmark.startMeasurement()
                blackHole(scorer.score(batch))
                benchmark.stopMeasurement()
            }
        }
        Benchmark("scorer/\(name) single transaction (latency)") { benchmark in
            var c = ScorerConfiguration(modelDirectory: modelDirectory, rulesPath: root + "/rules/default.yaml")
            c.evaluator = evaluator
            let scorer = try Scorer(configuration: c)
            let stream = Stream(count: 200_000)
            warm(scorer, stream)
            for _ in benchmark.scaledIterations {
                let tx = stream.next(1)[0]
                benchmark.startMeasurement()
                blackHole(scorer.score(tx))
                benchmark.stopMeasurement()
            }
        }
    }
}
