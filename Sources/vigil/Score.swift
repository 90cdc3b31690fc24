import ArgumentParser
import Foundation
import Vigil
import VigilRedis

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Score transactions (JSONL or CSV) and write one verdict JSON per line.")

    @Option(help: "Model bundle directory.") var model: String = "models/default"
    @Option(help: "Rule file (YAML).") var rules: String?
    @Option(help: "Decision costs (YAML).") var costs: String?
    @Option(help: "Transactions file; '-' or absent reads standard input.") var data: String?
    @Option(help: "CSV mapping file (YAML); the input is then CSV with a header.") var map: String?
    @Option(help: "Verdicts file; default standard output.") var out: String?
    @Option(help: "Transactions per batch.") var batch: Int = 256
    @Option(help: "Velocity store: 'memory' or a Redis URL (redis://[user@]host:port/db, unix:///path).") var store: String = "memory"
    @Option(help: "Replay the input's own labels into the store this long after each transaction (e.g. 7d), as the labels topic does online.")
    var labelDelay: String?
    @Flag(help: "Print throughput, latency and the verdict mix to standard error at the end.") var summary = false

    func validate() throws {
        guard (1...10_000).contains(batch) else { throw ValidationError("--batch must be 1…10000") }
    }

    func run() throws {
        var config = ScorerConfiguration(modelDirectory: model, rulesPath: rules, costsPath: costs)
        config.hasher = try HashSecret.fromEnvironment()
        let scorer = try Scorer(configuration: config, store: try StoreOption.factory(store))
        let output: FileHandle
        if let out {
            output = try openOutput(out)
        } else {
            output = .standardOutput
        }
        var reader = InputReader(source: data ?? "<stdin>", mapPath: map)
        var pending: [Transaction] = []
        var stats = ScoreStats()
        let progress = Progress(label: "scoring")
        let started = Date()
        var release = try labelDelay.map { LabelRelease(delay: try parseDuration($0, "label-delay")) }
        var encoder = VerdictEncoder()
        func flush() throws {
            guard !pending.isEmpty else { return }
            if var r = release {
                let due = r.due(at: pending[0].timestamp)
                if !due.isEmpty { try scorer.apply(labels: due) }
                r.enqueue(pending)
                release = r
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let verdicts = scorer.score(pending)
            stats.record(verdicts, batchMicros: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1000)
            var lines: [UInt8] = []
            lines.reserveCapacity(verdicts.count * 320)
            for i in verdicts.indices {
                verdicts[i].encodeJSON(into: &lines, using: &encoder)
                lines.append(UInt8(ascii: "\n"))
            }
            try output.write(lines, to: out ?? "<stdout>")
            pending.removeAll(keepingCapacity: true)
            progress.show(count: stats.count)
        }
        for line in try InputReader.lines(data) {
            if let tx = try reader.decode(line) {
                pending.append(tx)
                if pending.count >= batch { try flush() }
            }
        }
        try flush()
        try output.synchronize()
        progress.done("\(stats.count) verdicts, \(reader.rejected) rejected")
        if summary { stderr(stats.report(seconds: Date().timeIntervalSince(started), rejected: reader.rejected)) }
    }
}

struct ScoreStats {
    var count = 0
    var mix: [Action: Int] = [:]
    var degraded = 0
    var batchMicros: [Double] = []

    mutating func record(_ verdicts: [Verdict], batchMicros us: Double) {
        count += verdicts.count
        for v in verdicts {
            mix[v.action, default: 0] += 1
            if v.degraded { degraded += 1 }
        }
        batchMicros.append(us)
    }

    func report(seconds: Double, rejected: Int) -> String {
        let sorted = batchMicros.sorted()
        func pct(_ p: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
        var s = "summary: \(count) transactions in \(String(format: "%.2f", seconds)) s (\(Int(Double(count) / max(seconds, 1e-9))) tx/s end to end, I/O included)\n"
        s += "  batch latency µs: p50 \(Int(pct(0.5)))  p99 \(Int(pct(0.99)))  max \(Int(sorted.last ?? 0))  (\(sorted.count) batches)\n"
        s += "  verdicts: " + Action.allCases.map { a in
            let n = mix[a] ?? 0
            return "\(a.rawValue) \(n) (\(String(format: "%.2f", 100 * Double(n) / Double(max(count, 1))))%)"
        }.joined(separator: ", ")
        s += "\n  degraded: \(degraded)  rejected inputs: \(rejected)"
        return s
    }
}

/// The store-key secret: `VIGIL_HASH_SECRET`, or a file named by `VIGIL_HASH_SECRET_FILE`.
/// Without either, the development key (fine for simulated data, never for real cards).
enum HashSecret {
    static func fromEnvironment() throws -> KeyedHasher {
        try Secret.read("VIGIL_HASH_SECRET").map { (s) throws(ConfigurationError) in try KeyedHasher(secret: s) } ?? .insecureDevelopmentKey
    }
}

/// `memory` (default) or a Redis URL; `VIGIL_REDIS_PASSWORD` (or `…_FILE`) supplies the password
/// so that it stays off the command line.
enum StoreOption {
    static func factory(_ text: String?) throws -> ((FeaturePlan) -> any VelocityStore)? {
        guard let text, text != "memory" else { return nil }
        var url = try RedisURL(text)
        if let p = try Secret.string("VIGIL_REDIS_PASSWORD") { url.password = p }
        let configuration = RedisConfiguration(url: url)
        return { RedisVelocityStore(plan: $0, configuration: configuration) }
    }
}
