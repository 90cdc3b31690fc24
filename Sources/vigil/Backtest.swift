import ArgumentParser
import Foundation
import Vigil
import VigilBacktest

struct BacktestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backtest",
        abstract: "Replay history through the Scorer in event time and write scores and a report with plots.")

    @Option(help: "Model bundle directory.") var model: String = "models/default"
    @Option(help: "Transactions (JSONL, or CSV with --map), in time order.") var data: String
    @Option(help: "CSV mapping file.") var map: String?
    @Option(help: "Report on transactions from this time (earlier ones warm the windows).") var from: String?
    @Option(help: "… up to this time (exclusive).") var to: String?
    @Option(help: "Labels feed risk features this long after the transaction.") var labelDelay: String = "7d"
    @Option(help: "Rule file.") var rules: String?
    @Option(help: "Decision costs.") var costs: String?
    @Option(help: "Cards alerted per day for the top-k card precision (cards: card_id, else customer_id).") var topK: Int = 100
    @Option(help: "Report directory (scores.jsonl, report.json, report.html).") var report: String
    @Option(help: "Transactions per batch (1 = the naive, one-at-a-time path).") var batchSize: Int = 256
    @Option(help: "Ensemble evaluator: auto, native or capi.") var evaluator: Ensemble.Evaluator = .auto

    func validate() throws {
        guard (1...10_000).contains(batchSize) else { throw ValidationError("--batch-size must be 1…10000") }
    }

    func run() throws {
        // Fail before the long part if the report cannot be written.
        try makeDirectory(report)
        var config = ScorerConfiguration(modelDirectory: model, rulesPath: rules, costsPath: costs)
        config.hasher = try HashSecret.fromEnvironment()
        config.evaluator = evaluator
        let scorer = try Scorer(configuration: config)
        let (txs, _) = try InputReader.readAll(data, map: map)
        warnSparseEntities(scorer.engine.plan.spec, txs, owner: "the model's ")
        var options = Backtest.Options()
        options.batchSize = batchSize
        options.from = try parseTime(from, "from") ?? .min
        options.to = try parseTime(to, "to") ?? .max
        options.labelDelay = try parseDuration(labelDelay, "label-delay")
        let progress = Progress(label: "backtest")
        let started = Date()
        let scored = try Backtest.run(txs, scorer: scorer, options: options) { progress.show(fraction: $0) }
        let seconds = Date().timeIntervalSince(started)
        progress.done("\(txs.count) replayed (\(Int(Double(txs.count) / max(seconds, 1e-9))) tx/s), \(scored.count) reported")
        let costMatrix = try costs.map { try CostMatrix.load(path: $0) } ?? .default
        let r = BacktestReport.compute(scored, costs: costMatrix, topK: topK)
        try Backtest.write(scored, report: r, to: report)
        print(String(format: "AUC %.4f  AP %.4f  recall@0.1%%FPR %.3f  @0.5%% %.3f  @1%% %.3f  top-%d/day card precision %.3f (ceiling %.3f)  cost/tx %.4f (approve-all %.4f)",
                     r.aucROC, r.averagePrecision, r.recallAtFPR["0.1%"] ?? .nan, r.recallAtFPR["0.5%"] ?? .nan, r.recallAtFPR["1%"] ?? .nan,
                     r.topK, r.precisionAtTopKPerDay, r.precisionAtTopKCeiling, r.expectedCostPerTransaction, r.costApproveAll))
        print("wrote \(report)/scores.jsonl, report.json, report.html")
    }
}

struct Tune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare decision policies on a backtest's scores and write the cheapest as a decision configuration.")

    @Option(help: "Backtest report directory (with scores.jsonl).") var report: String
    @Option(help: "Decision costs (YAML).") var costs: String?
    @Option(help: "Largest share of a day's transactions the review team can take (e.g. 0.02).") var reviewCapacity: Double?
    @Option(help: "Where to write the chosen configuration.") var out: String?

    func run() throws {
        let scored = try Backtest.readScores(directory: report)
        let matrix = try costs.map { try CostMatrix.load(path: $0) } ?? .default
        let (results, chosen) = Tuning.compare(scored, costs: matrix, reviewCapacity: reviewCapacity)
        guard !results.isEmpty else { throw ValidationError("no labelled transactions in \(report)/scores.jsonl") }
        func p(_ v: Double) -> String { String(format: "%6.2f%%", v * 100) }
        print("policy".padded(58) + "cost/tx   stopped  $stopped  friction  review(peak day)  block")
        for (i, r) in results.enumerated() {
            let mark = i == chosen ? "* " : "  "
            print(mark + r.name.padded(56) + String(format: "%7.4f", r.costPerTransaction) + "  " + p(r.fraudStopped) + "  " + p(r.fraudAmountStopped)
                  + "  " + p(r.friction) + "  " + p(r.rates[.review] ?? 0) + " (" + p(r.peakReviewRate) + ")  " + p(r.rates[.block] ?? 0))
        }
        let path = out ?? report + "/decision.yaml"
        let best = results[chosen]
        let text = "# Chosen by vigil tune: \(best.name)\n" + matrix.yaml(version: matrix.version + "+tuned", thresholds: best.thresholds)
        do {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw OutputError("cannot write \(path): \(systemReason(error))")
        }
        print("chosen: \(best.name) → \(path)")
    }
}

extension Ensemble.Evaluator: ExpressibleByArgument {}
