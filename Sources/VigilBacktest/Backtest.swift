import Foundation
import Vigil

/// One reported transaction of a backtest: what `scores.jsonl` holds.
public struct ScoredTransaction: Sendable, Hashable {
    public var id: String
    public var timestamp: Int64
    public var amount: Double
    /// Calibrated probability of fraud.
    public var score: Double
    public var action: Action
    public var label: Int8?
    /// Keyed hash of the card, or of the customer when there is no card (top-k alerts are
    /// counted per card); 0 when both are absent.
    public var card: UInt64
    /// Non-sensitive fields that cost expressions may read.
    public var currency: String?
    public var channel: String?
    public var mcc: String?
    public var country: String?
    /// The scorer's total time for the transaction's batch, µs.
    public var latency: Double
    public var degraded: Bool

    /// The transaction as far as the decision costs can see it.
    public var costView: Transaction {
        Transaction(id: id, timestamp: timestamp, amount: amount, currency: currency, country: country, mcc: mcc, channel: channel)
    }

    func json() -> String {
        var w = JSONWriter()
        w.object { w in
            w.field("id", id)
            w.field("score", score)
            w.field("action", action.rawValue)
            if let label { w.field("label", Int(label)) }
            w.field("timestamp", Timestamp.formatISO8601(timestamp))
            w.field("amount", amount)
            w.field("card", KeyedHasher.hex(card))
            if let currency { w.field("currency", currency) }
            if let channel { w.field("channel", channel) }
            if let mcc { w.field("mcc", mcc) }
            if let country { w.field("country", country) }
            w.field("latency_us", latency)
            if degraded { w.field("degraded", true) }
        }
        return w.text
    }

    private struct Line: Decodable {
        var id: String
        var score: Double
        var action: Action
        var label: Int8?
        var timestamp: String
        var amount: Double
        var card: String?
        var currency: String?
        var channel: String?
        var mcc: String?
        var country: String?
        var latency_us: Double?
        var degraded: Bool?
    }

    /// Reads a `scores.jsonl` line (JSONDecoder: doubles round-trip exactly).
    static func parse(_ line: String) throws -> ScoredTransaction {
        let l: Line
        do {
            l = try JSONDecoder().decode(Line.self, from: Data(line.utf8))
        } catch {
            throw BacktestError("not a scores.jsonl line (needs id, score, action, timestamp, amount): \(error)")
        }
        guard let time = Timestamp.parseISO8601(l.timestamp) else { throw BacktestError("bad timestamp '\(l.timestamp)'") }
        return ScoredTransaction(
            id: l.id, timestamp: time, amount: l.amount, score: l.score, action: l.action, label: l.label,
            card: UInt64(l.card ?? "", radix: 16) ?? 0, currency: l.currency, channel: l.channel, mcc: l.mcc, country: l.country,
            latency: l.latency_us ?? 0, degraded: l.degraded ?? false)
    }
}

public struct BacktestError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Replays history through the same `Scorer` as the daemon, in event time.
public enum Backtest {
    public struct Options: Sendable {
        /// Report on transactions in [from, to); earlier ones only warm the windows.
        public var from: Int64 = .min
        public var to: Int64 = .max
        /// Labels feed entity risk this long after their transaction. Default: 7 days.
        public var labelDelay: Int64 = 7 * 86_400_000
        public var batchSize: Int = 256
        public init() {}
    }

    /// Scores every transaction from the start of `transactions` (time-ordered), releasing labels
    /// after `labelDelay`, and returns the ones in [from, to).
    public static func run(
        _ transactions: [Transaction], scorer: Scorer, options: Options, progress: (Double) -> Void = { _ in }
    ) throws -> [ScoredTransaction] {
        var out: [ScoredTransaction] = []
        var done = 0
        var lastProgress = 0
        // Nothing after the period can reach a transaction in it: stop there.
        let transactions = Array(transactions.prefix { $0.timestamp < options.to })
        Replay.batches(transactions, size: options.batchSize, labelDelay: options.labelDelay,
                       apply: { labels in _ = try? scorer.apply(labels: labels) }) { batch in
            let txs = Array(batch)
            let verdicts = scorer.score(txs)
            for (tx, v) in zip(txs, verdicts) where tx.timestamp >= options.from && tx.timestamp < options.to {
                out.append(ScoredTransaction(
                    id: tx.id, timestamp: tx.timestamp, amount: tx.amount, score: v.probability, action: v.action, label: tx.label,
                    card: (tx.cardID ?? tx.customerID).map { scorer.engine.hasher.hash($0) } ?? 0, currency: tx.currency, channel: tx.channel,
                    mcc: tx.mcc, country: tx.country, latency: v.latency.total, degraded: v.degraded))
            }
            done += txs.count
            if done - lastProgress >= 20_000 {
                lastProgress = done
                progress(Double(done) / Double(transactions.count))
            }
        }
        progress(1)
        return out
    }

    /// Writes `scores.jsonl`, `report.json` and `report.html` into `directory`.
    public static func write(_ scored: [ScoredTransaction], report: BacktestReport, to directory: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw BacktestError("cannot create report directory \(directory): \(((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError)?.localizedDescription ?? (error as NSError).localizedDescription)")
        }
        var text = ""
        text.reserveCapacity(scored.count * 200)
        for s in scored { text += s.json() + "\n" }
        try writeFile(directory + "/scores.jsonl", text)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try writeFile(directory + "/report.json", String(decoding: try enc.encode(report), as: UTF8.self))
        try writeFile(directory + "/report.html", ReportPage.html(report))
    }

    /// Reads a backtest's `scores.jsonl`.
    public static func readScores(directory: String) throws -> [ScoredTransaction] {
        let path = directory + "/scores.jsonl"
        guard let data = FileManager.default.contents(atPath: path) else { throw BacktestError("cannot read \(path)") }
        var out: [ScoredTransaction] = []
        for (n, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() {
            do {
                out.append(try ScoredTransaction.parse(String(line)))
            } catch {
                throw BacktestError("\(path):\(n + 1): \(error)")
            }
        }
        return out
    }

    /// Writes atomically, with an error that names the file (full disk, unwritable directory).
    static func writeFile(_ path: String, _ text: String) throws {
        do {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw BacktestError("cannot write \(path): \((error as NSError).localizedDescription)")
        }
    }
}
