import ArgumentParser
import Foundation
import Vigil
import VigilSimulator

struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a labelled synthetic payment stream: rich payments as JSONL, or sparse card-present history as CSV.")

    enum Shape: String, ExpressibleByArgument, CaseIterable {
        /// Every field Vigil knows (cards, merchants, devices, IPs, locations), JSONL.
        case payments
        /// Only customer, terminal, amount, time and label, CSV plus a column map.
        case pos
    }

    @Option(help: "payments (JSONL, every field) or pos (CSV: customer, terminal, amount, time, label).") var shape: Shape = .payments
    @Option(help: "Number of transactions (payments).") var transactions: Int?
    @Option(help: "Customers (pos).") var customers: Int = 5_000
    @Option(help: "Terminals (pos).") var terminals: Int = 10_000
    @Option(help: "Where to write the CSV column map (pos; default: next to --out, .map.yaml).") var mapOut: String?
    @Option(help: "Days covered.") var days: Int = 30
    @Option(help: "Random seed; the same seed gives the same stream.") var seed: UInt64 = 42
    @Option(help: "Start date (RFC 3339).") var start: String = "2026-01-01"
    @Option(help: "Output file.") var out: String

    func validate() throws {
        if shape == .payments {
            guard let transactions, transactions > 0, transactions <= 50_000_000 else { throw ValidationError("--transactions must be 1…50000000") }
        } else {
            guard (1...1_000_000).contains(customers), (1...1_000_000).contains(terminals) else {
                throw ValidationError("--customers and --terminals must be 1…1000000")
            }
        }
        guard days > 0, days <= 3650 else { throw ValidationError("--days must be 1…3650") }
    }

    func run() throws {
        if shape == .pos { return try runPointOfSale() }
        var options = Simulator.Options(transactions: transactions!, days: days, seed: seed)
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

    func runPointOfSale() throws {
        var options = PointOfSaleSimulator.Options()
        options.customers = customers
        options.terminals = terminals
        options.days = days
        options.seed = seed
        options.start = try parseTime(start, "start")!
        let progress = Progress(label: "simulating")
        let txs = PointOfSaleSimulator(options: options).generate { progress.show(fraction: $0) }
        let h = try openOutput(out)
        var text = PointOfSaleSimulator.csvHeader + "\n"
        for tx in txs {
            text += PointOfSaleSimulator.csv(tx) + "\n"
            if text.utf8.count > 1 << 22 {
                try h.write(text, to: out)
                text.removeAll(keepingCapacity: true)
            }
        }
        try h.write(text, to: out)
        try h.close()
        let map = mapOut ?? ((out as NSString).deletingPathExtension + ".map.yaml")
        do {
            try (PointOfSaleSimulator.csvMap + "\n").write(toFile: map, atomically: true, encoding: .utf8)
        } catch {
            throw OutputError("cannot write \(map): \(systemReason(error))")
        }
        let fraud = txs.filter { $0.label == 1 }.count
        progress.done("\(txs.count) transactions (\(fraud) fraud, \(String(format: "%.2f", 100 * Double(fraud) / Double(max(txs.count, 1))))%) → \(out), column map → \(map)")
    }
}
