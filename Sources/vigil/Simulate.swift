import ArgumentParser
import Foundation
import Vigil
import VigilSimulator

struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate a labelled synthetic payment stream (JSONL).")

    @Option(help: "Number of transactions.") var transactions: Int
    @Option(help: "Days covered.") var days: Int = 30
    @Option(help: "Random seed; the same seed gives the same stream.") var seed: UInt64 = 42
    @Option(help: "Start date (RFC 3339).") var start: String = "2026-01-01"
    @Option(help: "Output file.") var out: String

    func validate() throws {
        guard transactions > 0, transactions <= 50_000_000 else { throw ValidationError("--transactions must be 1…50000000") }
        guard days > 0, days <= 3650 else { throw ValidationError("--days must be 1…3650") }
    }

    func run() throws {
        var options = Simulator.Options(transactions: transactions, days: days, seed: seed)
        options.start = try parseTime(start, "start")!
        let progress = Progress(label: "simulating")
        let generated = Simulator(options: options).generateLabelled { progress.show(fraction: $0) }
        let h = try openOutput(out)
        var text = ""
        text.reserveCapacity(1 << 22)
        for g in generated {
            text += Simulator.json(g.transaction, pattern: g.pattern)
            text += "\n"
            if text.utf8.count > 1 << 22 {
                try h.write(text, to: out)
                text.removeAll(keepingCapacity: true)
            }
        }
        try h.write(text, to: out)
        try h.close()
        let fraud = generated.filter { $0.transaction.label == 1 }.count
        var byPattern: [FraudPattern: Int] = [:]
        for g in generated { if let p = g.pattern { byPattern[p, default: 0] += 1 } }
        let patterns = FraudPattern.allCases.map { "\($0.rawValue) \(byPattern[$0] ?? 0)" }.joined(separator: ", ")
        progress.done("\(generated.count) transactions (\(fraud) fraud, \(String(format: "%.2f", 100 * Double(fraud) / Double(max(generated.count, 1))))%; \(patterns)) → \(out)")
    }
}
