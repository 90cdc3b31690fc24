import ArgumentParser
import Foundation
import Vigil
import VigilRedis

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a model bundle on labelled history through the XGBoost C API.")

    @Option(help: "Labelled transactions (JSONL, or CSV with --map).") var data: String
    @Option(help: "CSV mapping file.") var map: String?
    @Option(help: "Train on transactions from this time (earlier ones warm the windows).") var from: String?
    @Option(help: "… up to this time (exclusive).") var to: String?
    @Option(help: "Labels feed risk features only this long after the transaction.") var labelDelay: String = "7d"
    @Option(help: "Feature spec; default: one derived from the fields the data carries (printed, and written into the bundle).") var features: String?
    @Option(help: "Fit a baseline instead of the searched model: logistic or xgboost (default parameters).") var baseline: ModelTraining.Baseline?
    @Option(help: "Seconds the hyper-parameter search may take (at least two candidates are tried).") var searchTime: Double = 120
    @Option(help: "Members of the bundle: the best N candidates (default: forward selection, up to 3, while validation AP rises). 1 scores fastest.") var members: Int?
    @Option(help: "Bundle name.") var name: String = "default"
    @Option(help: "Bundle version.") var version: String = "1"
    @Option(help: "Maximum boosting rounds per member.") var rounds: Int = 400
    @Option(help: "Output bundle directory.") var out: String

    func validate() throws {
        if let members, !(1...12).contains(members) { throw ValidationError("--members must be 1…12") }
    }

    func run() throws {
        let (txs, _) = try InputReader.readAll(data, map: map)
        var options = ModelTraining.Options()
        options.from = try parseTime(from, "from") ?? .min
        options.to = try parseTime(to, "to") ?? .max
        options.labelDelay = try parseDuration(labelDelay, "label-delay")
        options.name = name
        options.version = version
        options.rounds = rounds
        options.baseline = baseline
        options.searchSeconds = searchTime
        options.members = members
        options.hasher = try HashSecret.fromEnvironment()
        let specText = try features.map { try TextFile.read($0) }
        let manifest = try ModelTraining.train(txs, specText: specText, options: options, output: out) { stderr($0) }
        stderr("wrote \(out): " + manifest.metrics.sorted { $0.key < $1.key }.map { "\($0.key)=\(String(format: "%.4f", $0.value))" }.joined(separator: " "))
    }
}

struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the point-in-time features of every transaction as CSV (id, label, one column per feature).")

    @Option(help: "Transactions (JSONL, or CSV with --map).") var data: String?
    @Option(help: "CSV mapping file.") var map: String?
    @Option(help: "Feature spec; default: the built-in spec.") var spec: String?
    @Option(help: "Velocity store: 'memory' or a Redis URL.") var store: String = "memory"
    @Option(help: "Output CSV.") var out: String?
    @Flag(help: "Print the built-in feature spec and exit.") var printDefault = false

    func run() throws {
        if printDefault {
            print(FeatureSpec.defaultYAML)
            return
        }
        guard let data, let out else { throw ValidationError("--data and --out are required") }
        let spec = try spec.map { try FeatureSpec.load(path: $0) } ?? .default
        let plan = try FeaturePlan(spec: spec)
        let engine = FeatureEngine(plan: plan, hasher: try HashSecret.fromEnvironment())
        let velocity = try StoreOption.factory(store)?(plan) ?? InMemoryVelocityStore(plan: plan)
        let (txs, _) = try InputReader.readAll(data, map: map)
        warnSparseEntities(spec, txs)
        let h = try openOutput(out)
        try h.write((["id", "label"] + plan.schema.names).joined(separator: ",") + "\n", to: out)
        var i = 0
        while i < txs.count {
            let batch = Array(txs[i..<min(i + 256, txs.count)])
            let m = try engine.features(batch, store: velocity)
            var text = ""
            for (r, tx) in batch.enumerated() {
                text += csvField(tx.id) + "," + (tx.label.map { String($0) } ?? "")
                for v in m.row(r) { text += "," + (v.isNaN ? "" : "\(v)") }
                text += "\n"
            }
            try h.write(text, to: out)
            i += 256
        }
        try h.close()
    }

    func csvField(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}

extension ModelTraining.Baseline: ExpressibleByArgument {}
