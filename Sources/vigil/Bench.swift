import ArgumentParser
import Foundation
import Vigil
import VigilSimulator

/// A one-screen benchmark summary to paste into an issue. Every figure has its baseline measured
/// in the same run, and the ratio is what to compare across machines. The full suites (with
/// allocation counts and regression thresholds) are in `Benchmarks/`.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure the hot stages and print a one-screen summary with ratios.")

    @Option(help: "Model bundle directory.") var model: String = "models/default"
    @Option(help: "Rule file.") var rules: String = "rules/default.yaml"
    @Option(help: "Seconds per measurement.") var seconds: Double = 1.5
    @Option(help: "Days of the stream each scorer runs through before it is measured: past the retention (30 days + 1 of lateness), its store is in its steady state; 1 compares with a daemon that has just started. The store ages while it is measured (each batch is new transactions): a second of batches walks about 18 days of the stream.")
    var warmUpDays: Int = 35

    /// Median time per call, in µs, over repeated calls for about `seconds`.
    func measure(_ body: () throws -> Void) rethrows -> Double {
        try percentiles(body).p50
    }

    /// Median time per call of `body` on what `prepare` made for it, in µs: making the input
    /// (a batch of transactions copied out of the stream) and letting it go are not timed.
    func measure<Input>(prepare: () -> Input, _ body: (Input) throws -> Void) rethrows -> Double {
        try percentiles(prepare: prepare, body).p50
    }

    /// Median and 99th percentile time per call, in µs.
    func percentiles(_ body: () throws -> Void) rethrows -> (p50: Double, p99: Double) {
        try percentiles(prepare: {}) { _ in try body() }
    }

    /// Median and 99th percentile time per call of `body`, in µs, each call on an input made
    /// by `prepare` outside the clock.
    func percentiles<Input>(prepare: () -> Input, _ body: (Input) throws -> Void) rethrows -> (p50: Double, p99: Double) {
        for _ in 0..<3 { try body(prepare()) }
        var samples: [Double] = []
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .milliseconds(Int(seconds * 1000)))
        while clock.now < deadline || samples.count < 5 {
            let input = prepare()
            let t0 = clock.now
            try body(input)
            let d = clock.now - t0
            samples.append(Double(d.components.attoseconds) / 1e12 + Double(d.components.seconds) * 1e6)
        }
        samples.sort()
        return (samples[samples.count / 2], samples[min(samples.count - 1, samples.count * 99 / 100)])
    }

    func run() throws {
        // Long enough that no measurement runs out of new transactions (which would score
        // redeliveries instead) on a machine several times faster than ours, after the warm-up.
        let stream = Simulator(options: .init(transactions: 1_000_000, days: 100, seed: 11)).generate()
        // The whole scorers first run through the stream's first `warmUpDays` days, in batches:
        // past the longest retention plus the allowed lateness (30 + 1 days), every expiry queue
        // of the store is in its steady state, as in a store that has run for weeks. (A younger
        // store measures cheaper, with nothing old enough to forget and smaller windows.)
        let warmUp = stream.firstIndex { $0.timestamp >= stream[0].timestamp + Int64(warmUpDays) * 86_400_000 } ?? 0
        var cursor = 0
        func next(_ n: Int) -> [Transaction] {
            if cursor + n > stream.count { cursor = 0 }
            defer { cursor += n }
            return Array(stream[cursor..<(cursor + n)])
        }
        let walk = NativeForest.wideAvailable ? "16 rows a vector (AVX-512)" : "scalar (no AVX-512)"
        print("vigil bench — \(ProcessInfo.processInfo.activeProcessorCount) cores, model \(model), forest walk \(walk), scorers after \(warmUpDays) days of the stream, medians per call")
        print(String(repeating: "─", count: 78))

        // Decode.
        let lines = stream.prefix(256).map { Array(Simulator.json($0).utf8) }
        let decoder = TransactionDecoder()
        let ours = try measure { for l in lines { _ = try decoder.decode(l) } }
        let datas = lines.map { Data($0) }
        let foundation = try measure { for d in datas { _ = try JSONSerialization.jsonObject(with: d) } }
        row("decode 256 msgs", ours, "JSONSerialization parse only", foundation)

        // Ensemble: C API vs native, on real feature rows.
        var c = ScorerConfiguration(modelDirectory: model, rulesPath: rules)
        // Rows of 64 batches of the stream, one after another, as the Scorer gets them: the same
        // rows on every call kept the paths they take through the forest in L1, and measured the
        // native evaluator about 20% faster than on the stream. From a store as old as the
        // scorers' below: on rows of the stream's first hours (a quarter of the values missing,
        // histories short) the C API took 1.2× as long as on rows of day 35.
        let streamRows = try { () throws -> [FeatureMatrix] in
            let warmScorer = try Scorer(configuration: c)
            while cursor < warmUp { _ = warmScorer.score(next(min(256, warmUp - cursor))) }
            return (0..<64).map { _ in warmScorer.evaluate(next(256)).features }
        }()
        let capi = try Ensemble(directory: model, evaluator: .capi), native = try Ensemble(directory: model, evaluator: .native)
        var capiBatch = 0.0
        for batch in [1, 16, 256] {
            let inputs = streamRows.map { Array($0.values.prefix(batch * $0.columns)) }
            var k = 0
            func nextRows() -> [Float] {
                k += 1
                return inputs[k % inputs.count]
            }
            let a = measure(prepare: nextRows) { _ = native.score($0, rows: batch) }
            let b = measure(prepare: nextRows) { _ = capi.score($0, rows: batch) }
            row("ensemble native, batch \(batch)", a, "C API", b)
            capiBatch = b
        }

        // Whole scorer, in-memory store, one core, both evaluators.
        var perTx: [Ensemble.Evaluator: Double] = [:]
        var singleNative = (p50: 0.0, p99: 0.0)
        var alongside: Turns?
        for evaluator in [Ensemble.Evaluator.capi, .native] {
            c.evaluator = evaluator
            let scorer = try Scorer(configuration: c)
            cursor = 0
            while cursor < warmUp { _ = scorer.score(next(min(256, warmUp - cursor))) }
            // The batch is made before the clock starts, as the C API's rows are. The native
            // Scorer is timed in turns with the C API's model call on the rows of the very
            // batches it scored (``inTurns(scorer:capi:next:)``).
            var stages: [StageLatency] = []
            let batch: Double
            if evaluator == .native {
                let turns = inTurns(scorer: scorer, capi: capi) { next(256) }
                stages = turns.stages
                batch = turns.scorer
                alongside = turns
            } else {
                batch = measure(prepare: { next(256) }) { stages.append(scorer.score($0)[0].latency) }
            }
            let (single, singleStages) = singleTransactions(scorer) { next(1)[0] }
            perTx[evaluator] = batch / 256
            if evaluator == .native { singleNative = single }
            print("scorer \(evaluator.rawValue.padded(6)) batch 256: \(Int(256e6 / batch)) tx/s on one core; single transaction p50 \(String(format: "%.1f", single.p50)) µs, p99 \(String(format: "%.1f", single.p99)) µs")
            if evaluator == .native {
                print(singleStages)
                print(batchStages(stages, total: batch))
            }
        }
        print(String(format: "scorer native vs C API throughput: %.2f×", perTx[.capi]! / perTx[.native]!))
        // The whole Scorer (features, rules, model, decisions, verdicts) against the C API's model
        // call alone on the rows of the batches it scored: above 1× when everything around the
        // model costs less than what the native evaluator saves.
        if let t = alongside {
            print(String(format: "scorer native batch 256 vs the C API's model call alone on its rows, in turns: %.0f µs vs %.0f µs, %.2f× (rounds: middle half %.2f–%.2f×, all %.2f–%.2f×; apart, above: %.0f µs)",
                         t.scorer, t.capi, t.ratio, t.middle.lowerBound, t.middle.upperBound, t.all.lowerBound, t.all.upperBound, capiBatch))
        }
        machineTail(like: singleNative)
        try journal(Array(stream.prefix(100_000)), configuration: c)
        print(String(repeating: "─", count: 78))
        print("Ratios are against the baseline measured in the same run; absolute times vary with the machine.")
    }

    /// The native Scorer and the C API's model call alone, timed in turns on the same rows. The
    /// C API's time depends on the rows (1.2× as long on the stream's first hours as on day 35),
    /// and the machine drifts by 5–10% within a minute: measured apart, on other rows and half a
    /// minute later, the ratio was off by both. Each round scores eight batches with the Scorer,
    /// then runs the C API on those batches' feature rows; a round's first call of each is left
    /// out (it finds the other's data in the caches). The ratio is the median round's; the
    /// times are the medians of every call kept.
    struct Turns {
        var scorer: Double, capi: Double, ratio: Double
        var middle: ClosedRange<Double>, all: ClosedRange<Double>
        var stages: [StageLatency]
    }

    func inTurns(scorer: Scorer, capi: Ensemble, next: () -> [Transaction]) -> Turns {
        let clock = ContinuousClock()
        func micros(_ body: () -> Void) -> Double {
            let t0 = clock.now
            body()
            return (clock.now - t0).microseconds
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        let perRound = 8
        var scorerTimes: [Double] = [], capiTimes: [Double] = [], ratios: [Double] = [], stages: [StageLatency] = []
        let deadline = clock.now.advanced(by: .milliseconds(Int(seconds * 1000)))
        while clock.now < deadline || ratios.count < 5 {
            var rows: [[Float]] = [], s: [Double] = [], c: [Double] = []
            for _ in 0..<perRound {
                let batch = next()
                s.append(micros {
                    let result = scorer.evaluate(batch)
                    rows.append(result.features.values)
                    stages.append(result.verdicts[0].latency)
                })
            }
            for r in rows { c.append(micros { _ = capi.score(r, rows: 256) }) }
            s.removeFirst()
            c.removeFirst()
            scorerTimes += s
            capiTimes += c
            ratios.append(median(c) / median(s))
        }
        ratios.sort()
        return Turns(scorer: median(scorerTimes), capi: median(capiTimes), ratio: ratios[ratios.count / 2],
                     middle: ratios[ratios.count / 4]...ratios[ratios.count * 3 / 4], all: ratios[0]...ratios[ratios.count - 1],
                     stages: stages)
    }

    /// Single-transaction calls, timed one by one: their median and 99th percentile, and a line
    /// comparing what the calls around the median and the slowest 1% spend per stage (from each
    /// verdict's own stage timings), and how many of each were not approved (those are explained).
    typealias Call = (micros: Double, stages: StageLatency, approved: Bool, faults: Int)

    func singleTransactions(_ scorer: Scorer, next: () -> Transaction) -> (single: (p50: Double, p99: Double), stages: String) {
        for _ in 0..<3 { _ = scorer.score(next()) }
        var calls: [Call] = []
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .milliseconds(Int(seconds * 1000)))
        while clock.now < deadline || calls.count < 1000 {
            let transaction = next()
            let f0 = Self.pageFaults()
            let t0 = clock.now
            let verdict = scorer.score(transaction)
            let micros = (clock.now - t0).microseconds
            calls.append((micros, verdict.latency, verdict.action == .approve, Self.pageFaults() - f0))
        }
        calls.sort { $0.micros < $1.micros }
        // Medians, not means: a few calls take milliseconds (a dictionary growing), and a mean
        // would show those rather than the slowest percent.
        func median(_ slice: ArraySlice<Call>, _ f: (StageLatency) -> Double) -> Double {
            let values = slice.map { f($0.stages) }.sorted()
            return values[values.count / 2]
        }
        let middle = calls[(calls.count * 45 / 100)..<(calls.count * 55 / 100)], slowest = calls[(calls.count * 99 / 100)...]
        var line = "single transaction by stage, µs, medians of the median calls → of the slowest 1%:"
        for (name, f) in [("features", \StageLatency.features), ("rules", \.rules), ("model", \.model), ("decide", \.decide)] as [(String, KeyPath<StageLatency, Double>)] {
            line += String(format: " %@ %.1f → %.1f", name, median(middle) { $0[keyPath: f] }, median(slowest) { $0[keyPath: f] })
        }
        func notApproved(_ slice: ArraySlice<Call>) -> Int {
            slice.filter { !$0.approved }.count * 100 / slice.count
        }
        line += "; not approved \(notApproved(middle))% → \(notApproved(slowest))%"
        func faulted(_ slice: ArraySlice<Call>) -> Int { slice.filter { $0.faults > 0 }.count * 100 / slice.count }
        line += "; with a page fault \(faulted(middle))% → \(faulted(slowest))%"
        return ((calls[calls.count / 2].micros, calls[min(calls.count - 1, calls.count * 99 / 100)].micros), line)
    }

    /// The batch's time by stage (medians of each stage's own timing, from the verdicts), and
    /// what the median call spent beyond them: building the verdicts and letting the batch go.
    func batchStages(_ stages: [StageLatency], total: Double) -> String {
        var line = "scorer native batch 256 by stage, µs:", sum = 0.0
        for (name, f) in [("features", \StageLatency.features), ("rules", \.rules), ("model", \.model), ("decide", \.decide)] as [(String, KeyPath<StageLatency, Double>)] {
            let values = stages.map { $0[keyPath: f] }.sorted()
            sum += values[values.count / 2]
            line += String(format: " %@ %.0f", name, values[values.count / 2])
        }
        return line + String(format: ", verdicts and the rest %.0f (of %.0f)", total - sum, total)
    }

    /// Page faults the process has taken so far (minor and major).
    static func pageFaults() -> Int {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return usage.ru_minflt + usage.ru_majflt
    }

    /// The machine's own tail at the single transaction's time scale: a fixed computation (no
    /// allocation, no memory beyond registers) sized to the single transaction's median, timed
    /// the same way. Its p99 is what interrupts, the scheduler and the neighbours add anyway.
    func machineTail(like single: (p50: Double, p99: Double)) {
        var state: UInt64 = 1
        func spin(_ n: Int) {
            for _ in 0..<n { state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407 }
        }
        var n = 1000
        while measure({ spin(n) }) < single.p50 && n < 1 << 30 { n *= 2 }
        n = Int(Double(n) * single.p50 / max(measure { spin(n) }, 1e-3))
        let fixed = percentiles { spin(n) }
        // The same for work that waits on memory, as the features stage does: a chase through
        // one random cycle over 64 MiB (past the caches), as long as the single transaction's median.
        let count = 1 << 24
        var next = [UInt32](0..<UInt32(count))
        var rng = SystemRandomNumberGenerator()
        for i in stride(from: count - 1, to: 0, by: -1) { next.swapAt(i, Int.random(in: 0..<i, using: &rng)) }  // Sattolo: one cycle
        var at: UInt32 = 0
        let chased = next.withUnsafeBufferPointer { cycle in
            func chase(_ n: Int) { for _ in 0..<n { at = cycle[Int(at)] } }
            var m = 64
            while measure({ chase(m) }) < single.p50 && m < 1 << 24 { m *= 2 }
            m = Int(Double(m) * single.p50 / max(measure { chase(m) }, 1e-3))
            return percentiles { chase(m) }
        }
        print(String(format: "machine tail: fixed work of p50 %.1f µs has p99 %.1f µs (×%.2f), fixed misses of p50 %.1f µs p99 %.1f µs (×%.2f); the single transaction ×%.2f%@",
                     fixed.p50, fixed.p99, fixed.p99 / fixed.p50, chased.p50, chased.p99, chased.p99 / chased.p50,
                     single.p99 / single.p50, state == 0 && at == .max ? " " : ""))
    }

    /// The in-memory store's journal: what logging costs the features stage, and how fast a
    /// restart replays it, against the same stream through an unjournaled store.
    func journal(_ txs: [Transaction], configuration c: ScorerConfiguration) throws {
        let dir = NSTemporaryDirectory() + "vigil-bench-journal-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let clock = ContinuousClock()
        func featuresSeconds(_ scorer: Scorer) -> Double {
            let t0 = clock.now
            for start in stride(from: 0, to: txs.count, by: 256) { _ = scorer.features(Array(txs[start..<min(txs.count, start + 256)])) }
            return (clock.now - t0).seconds
        }
        let unjournaled = try Scorer(configuration: c)
        let plain = featuresSeconds(unjournaled)
        let journal = JournalConfiguration(directory: dir, keyCheck: c.hasher.check)
        // The journaled scorer is released after the run, which releases the journal's lock.
        let logged = try featuresSeconds(Scorer(configuration: c) { (plan) throws(ConfigurationError) in
            try InMemoryVelocityStore(plan: plan, journal: journal)
        })
        let t0 = clock.now
        let reopened = try InMemoryVelocityStore(plan: unjournaled.engine.plan, journal: journal)
        let replay = (clock.now - t0).seconds
        print(String(format: "journaled store: features %.1f µs/tx vs %.1f unjournaled (×%.2f); %.0f bytes/tx on disk; replay at open %.0f tx/s",
                     logged / Double(txs.count) * 1e6, plain / Double(txs.count) * 1e6, logged / plain,
                     Double(reopened.journalBytes) / Double(txs.count), Double(txs.count) / replay))
    }

    func row(_ name: String, _ us: Double, _ baseline: String, _ baselineUs: Double) {
        print("\(name.padded(28)) \(String(format: "%9.1f", us)) µs  vs \(baseline.padded(28)) \(String(format: "%9.1f", baselineUs)) µs  \(String(format: "%6.1f", baselineUs / us))×")
    }
}
