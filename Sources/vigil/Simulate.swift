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
        let txs = Simulator(options: options).generate { progress.show(fraction: $0) }
        guard FileManager.default.createFile(atPath: out, contents: nil), let h = FileHandle(forWritingAtPath: out) else {
            throw ValidationError("cannot write \(out)")
        }
        var text = ""
        text.reserveCapacity(1 << 22)
        for tx in txs {
            text += Simulator.json(tx)
            text += "\n"
            if text.utf8.count > 1 << 22 {
                try h.write(contentsOf: Data(text.utf8))
                text.removeAll(keepingCapacity: true)
            }
        }
        try h.write(contentsOf: Data(text.utf8))
        try h.close()
        let fraud = txs.filter { $0.label == 1 }.count
        progress.done("\(txs.count) transactions (\(fraud) fraud, \(String(format: "%.2f", 100 * Double(fraud) / Double(max(txs.count, 1))))%) → \(out)")
    }
}
