import ArgumentParser
import Foundation
import Vigil
import VigilBacktest

struct DriftCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drift",
        abstract: "Population stability index of a period of data against the bundle's training reference, per feature and for the score.")

    @Option(help: "Model bundle directory.") var model: String = "models/default"
    @Option(help: "Transactions (JSONL, or CSV with --map), in time order.") var data: String
    @Option(help: "CSV mapping file.") var map: String?
    @Option(help: "Measure transactions from this time (earlier ones warm the windows).") var from: String?
    @Option(help: "… up to this time (exclusive).") var to: String?
    @Option(help: "Labels feed risk features this long after the transaction.") var labelDelay: String = "7d"
    @Option(help: "Also write drift.html and drift.json into this directory.") var report: String?
    @Flag(help: "Print one JSON object (the PSI of the score and of each feature) instead of a table.") var json = false

    func run() throws {
        if let report { try makeDirectory(report) }
        var config = ScorerConfiguration(modelDirectory: model)
        config.hasher = try HashSecret.fromEnvironment()
        let scorer = try Scorer(configuration: config)
        let (txs, _) = try InputReader.readAll(data, map: map)
        warnSparseEntities(scorer.engine.plan.spec, txs, owner: "the model's ")
        let progress = Progress(label: "drift")
        let r = try DriftReport.run(txs, scorer: scorer, from: try parseTime(from, "from") ?? .min, to: try parseTime(to, "to") ?? .max,
                                    labelDelay: try parseDuration(labelDelay, "label-delay")) { progress.show(fraction: $0) }
        progress.done("\(r.rows) transactions measured")
        let text = try r.json()
        if json {
            print(text)
        } else {
            func f(_ v: Double) -> String { v.isFinite ? String(format: "%.4f", v) : "   n/a" }
            func alarm(_ v: Double) -> String { v > 0.25 ? "  act" : v > 0.1 ? "  watch" : "" }
            print("\(r.model): \(r.rows) transactions; score PSI \(f(r.scorePSI))\(alarm(r.scorePSI))")
            print("feature".padding(toLength: 40, withPad: " ", startingAt: 0) + "   PSI    missing (training → now)")
            for x in r.features.prefix(25) {
                print(x.name.padding(toLength: 40, withPad: " ", startingAt: 0) + " " + f(x.psi) + "   " + f(x.referenceMissing) + " → " + f(x.missing) + alarm(x.psi))
            }
            if r.features.count > 25 { print("… \(r.features.count - 25) more (--json for all)") }
        }
        if let report {
            try writeText(report + "/drift.json", text + "\n")
            try writeText(report + "/drift.html", r.html())
            stderr("wrote \(report)/drift.html, drift.json")
        }
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Which of two backtests of the same period did better, by cost and by average precision, with bootstrap confidence intervals over days.")

    @Option(name: .customLong("report"), help: "Two backtest report directories: --report A --report B.") var reports: [String]
    @Option(help: "Decision costs (default: the built-in matrix).") var costs: String?
    @Option(help: "Bootstrap resamples.") var resamples: Int = 1000
    @Flag(help: "Print the comparison as JSON.") var json = false

    func validate() throws {
        guard reports.count == 2 else { throw ValidationError("give exactly two reports: --report A --report B") }
        guard (10...100_000).contains(resamples) else { throw ValidationError("--resamples must be 10…100000") }
    }

    func run() throws {
        let a = try Backtest.readScores(directory: reports[0]), b = try Backtest.readScores(directory: reports[1])
        let matrix = try costs.map { try CostMatrix.load(path: $0) } ?? .default
        let c = try Comparison.compare(a, b, names: (reports[0], reports[1]), costs: matrix, resamples: resamples)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            print(String(decoding: try enc.encode(c), as: UTF8.self))
            return
        }
        func f(_ v: Double) -> String { String(format: "%.4f", v) }
        print("\(c.transactions) labelled transactions over \(c.days) days, \(c.resamples) bootstrap resamples of days")
        print("        cost/tx    AP")
        print("A       \(f(c.a.costPerTransaction))    \(f(c.a.averagePrecision))   \(c.a.report)")
        print("B       \(f(c.b.costPerTransaction))    \(f(c.b.averagePrecision))   \(c.b.report)")
        print("B − A   \(f(c.cost.value)) [\(f(c.cost.low)), \(f(c.cost.high))]   \(f(c.averagePrecision.value)) [\(f(c.averagePrecision.low)), \(f(c.averagePrecision.high))]  (95% CI)")
        print(c.verdict)
    }
}

func writeText(_ path: String, _ text: String) throws {
    do {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    } catch {
        throw OutputError("cannot write \(path): \(systemReason(error))")
    }
}
