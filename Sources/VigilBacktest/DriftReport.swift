import Foundation
import Vigil

/// `vigil drift`: a period of history replayed through the bundle, binned like live traffic and
/// measured against the bundle's training reference, with the same PSI as the daemon's gauges.
public struct DriftReport: Codable, Sendable {
    public struct Feature: Codable, Sendable, Hashable {
        public var name: String
        public var psi: Double
        public var missing: Double
        public var referenceMissing: Double
    }

    public var model: String
    public var rows: Int
    public var scorePSI: Double
    /// Highest PSI first.
    public var features: [Feature]
    /// Reference and live shares of the score bins (upper edges `scoreEdges`).
    public var scoreEdges: [Double]
    public var scoreReference: [Double]
    public var scoreLive: [Double]

    /// Replays `transactions` from their start (to warm the windows) and measures those in
    /// [from, to).
    public static func run(
        _ transactions: [Transaction], scorer: Scorer, from: Int64 = .min, to: Int64 = .max, labelDelay: Int64 = 7 * 86_400_000,
        progress: (Double) -> Void = { _ in }
    ) throws -> DriftReport {
        let manifest = scorer.models.champion
        guard let reference = manifest.reference else {
            throw BacktestError("\(manifest.name)@\(manifest.version) records no reference distributions (bundles trained before drift monitoring); retrain it")
        }
        var drift = Drift(reference: reference, slotMillis: .max, slots: 1)
        let scoreBins = reference.score.edges.count + 1
        var liveScore = [Double](repeating: 0, count: scoreBins)
        let txs = Array(transactions.prefix { $0.timestamp < to })
        var done = 0
        Replay.batches(txs, size: 256, labelDelay: labelDelay, apply: { _ = try? scorer.apply(labels: $0) }) { batch in
            let rows = Array(batch)
            let result = scorer.evaluate(rows)
            done += rows.count
            if done % 25_600 == 0 { progress(Double(done) / Double(max(txs.count, 1))) }
            let keep = rows.indices.filter { rows[$0].timestamp >= from }
            guard !keep.isEmpty else { return }
            let columns = result.features.columns
            var values: [Float] = []
            values.reserveCapacity(keep.count * columns)
            for r in keep { values.append(contentsOf: result.features.values[(r * columns)..<((r + 1) * columns)]) }
            let scores = keep.map { result.verdicts[$0].probability }
            drift.add(values: values, scores: scores, at: 0)
            for p in scores where !p.isNaN { liveScore[reference.score.bin(p)] += 1 }
        }
        progress(1)
        let r = drift.report()
        let total = max(liveScore.reduce(0, +), 1)
        let features = zip(reference.features, zip(r.features, r.missing)).map {
            Feature(name: $0.name, psi: $1.0, missing: $1.1, referenceMissing: $0.missing)
        }.sorted { ($0.psi.isNaN ? -1 : $0.psi) > ($1.psi.isNaN ? -1 : $1.psi) }
        return DriftReport(model: "\(manifest.name)@\(manifest.version)", rows: r.rows, scorePSI: r.score, features: features,
                           scoreEdges: reference.score.edges, scoreReference: reference.score.shares, scoreLive: liveScore.map { $0 / total })
    }

    /// The `--json` object: the PSI of the score and of each feature, and each feature's live
    /// missing share.
    public func json() throws -> String {
        var w = JSONWriter()
        w.object { w in
            w.field("model", model)
            w.field("rows", rows)
            w.field("score_psi", scorePSI)
            w.key("features")
            w.object { w in for f in features { w.field(f.name, f.psi) } }
            w.key("missing")
            w.object { w in for f in features { w.field(f.name, f.missing) } }
        }
        return w.text
    }

    /// A self-contained page: PSI of the most drifted features against the alarm thresholds,
    /// and the score's distribution, reference against live.
    public func html() -> String {
        func f(_ v: Double) -> String { v.isFinite ? String(format: "%.4f", v) : "n/a" }
        let top = Array(features.prefix(25))
        // Bins are the training scores' deciles (edges in drift.json): label them d1 … d10.
        let scoreBars = Bars(title: "Score by training decile: reference vs this period",
                             labels: (1...(scoreEdges.count + 1)).map { "d\($0)" },
                             stacks: [("reference", "#1f77b4", scoreReference), ("this period", "#ff7f0e", scoreLive)], grouped: true).svg()
        let psiBars = Self.psiChart(top)
        let rowsHTML = features.map {
            "<tr><td>\(ReportPage.escape($0.name))</td><td>\(f($0.psi))</td><td>\(f($0.referenceMissing))</td><td>\(f($0.missing))</td></tr>"
        }.joined(separator: "\n")
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>Vigil drift report</title>
            <style>
            body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
            table{border-collapse:collapse;margin:1rem 0} th,td{text-align:left;padding:.15rem 1rem .15rem 0;font-variant-numeric:tabular-nums}
            .plots{display:flex;flex-wrap:wrap;gap:1rem} svg{background:#fff;border:1px solid #ddd} text{font:11px system-ui,sans-serif;fill:#333}
            </style></head><body>
            <h1>Vigil drift report: \(ReportPage.escape(model))</h1>
            <p>\(rows) transactions against the bundle's training reference. Score PSI <b>\(f(scorePSI))</b>.
            Population stability index: below 0.1 stable, 0.1–0.25 watch, above 0.25 act.</p>
            <div class="plots">\(psiBars)\(scoreBars)</div>
            <table><tr><th>feature</th><th>PSI</th><th>missing (training)</th><th>missing (this period)</th></tr>
            \(rowsHTML)
            </table>
            </body></html>
            """
    }

    /// Small probabilities stay readable: 0.0021 → "2.1e-03", 0.25 → "0.25".
    static func short(_ v: Double) -> String { v != 0 && abs(v) < 0.01 ? String(format: "%.1e", v) : String(format: "%.2f", v) }

    /// Horizontal bars, one per feature with its name beside it, and the 0.1 and 0.25 lines.
    static func psiChart(_ features: [Feature]) -> String {
        let left = 260.0, right = 40.0, top = 34.0, row = 16.0, width = 640.0
        let height = top + row * Double(max(features.count, 1)) + 42
        let maxX = max(0.3, features.map { $0.psi.isFinite ? $0.psi : 0 }.max() ?? 0)
        let w = width - left - right
        func x(_ v: Double) -> Double { left + min(v, maxX) / maxX * w }
        var s = "<svg width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"PSI by feature\">"
        s += "<text x=\"10\" y=\"18\" style=\"font-weight:600;font-size:13px\">PSI by feature, highest first (0.1 watch, 0.25 act)</text>"
        for (i, f) in features.enumerated() {
            let y = top + Double(i) * row, v = f.psi.isFinite ? f.psi : 0
            let color = v > 0.25 ? "#d62728" : v > 0.1 ? "#ff7f0e" : "#1f77b4"
            s += "<text x=\"\(left - 6)\" y=\"\(Plot.r(y + 11))\" text-anchor=\"end\">\(ReportPage.escape(f.name))</text>"
            s += "<rect x=\"\(left)\" y=\"\(Plot.r(y + 2))\" width=\"\(Plot.r(max(x(v) - left, 1)))\" height=\"\(Plot.r(row - 4))\" fill=\"\(color)\"/>"
            s += "<text x=\"\(Plot.r(x(v) + 4))\" y=\"\(Plot.r(y + 11))\">\(short(v))</text>"
        }
        let bottom = top + row * Double(features.count)
        for (k, (v, label)) in [(0.1, "0.1 watch"), (0.25, "0.25 act")].enumerated() {
            s += "<line x1=\"\(Plot.r(x(v)))\" y1=\"\(top)\" x2=\"\(Plot.r(x(v)))\" y2=\"\(Plot.r(bottom + 4 + 12 * Double(k)))\" stroke=\"#444\" stroke-dasharray=\"4 3\"/>"
            s += "<text x=\"\(Plot.r(x(v) + 3))\" y=\"\(Plot.r(bottom + 14 + 12 * Double(k)))\">\(label)</text>"
        }
        return s + "</svg>"
    }
}
