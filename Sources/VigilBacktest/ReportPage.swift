import Foundation
import Vigil

/// The self-contained HTML page of a backtest report: inline SVG plots, no script, no network.
enum ReportPage {
    static func html(_ r: BacktestReport) -> String {
        func f(_ v: Double, _ digits: Int = 4) -> String { v.isFinite ? String(format: "%.\(digits)f", v) : "n/a" }
        func pct(_ v: Double) -> String { v.isFinite ? String(format: "%.2f%%", v * 100) : "n/a" }
        let total = max(r.transactions, 1)
        var metrics: [(String, String)] = [
            ("Transactions reported", "\(r.transactions) (\(r.labelled) labelled, \(r.fraud) fraud)"),
            ("Period", r.period.joined(separator: " … ")),
            ("AUC ROC", f(r.aucROC)),
            ("Average precision", f(r.averagePrecision)),
        ]
        for k in ["0.1%", "0.5%", "1%"] { metrics.append(("Recall at \(k) false-positive rate", pct(r.recallAtFPR[k] ?? .nan))) }
        metrics += [
            ("Card precision: the top \(r.topK) cards per day", pct(r.precisionAtTopKPerDay)),
            ("… for a perfect ranking (the day's fraudulent cards, out of \(r.topK))", pct(r.precisionAtTopKCeiling)),
            ("Cost per transaction (actions taken)", f(r.expectedCostPerTransaction)),
            ("Cost per transaction (approve everything)", f(r.costApproveAll)),
            ("Latency per batch p50 / p99 / p99.9", "\(f(r.latencyPercentiles["p50"] ?? 0, 0)) / \(f(r.latencyPercentiles["p99"] ?? 0, 0)) / \(f(r.latencyPercentiles["p99.9"] ?? 0, 0)) µs"),
            ("Degraded verdicts", "\(r.degraded)"),
        ]
        for a in Action.allCases {
            let n = r.verdictMix[a.rawValue] ?? 0
            metrics.append(("Verdict \(a.rawValue)", "\(n) (\(pct(Double(n) / Double(total)))), fraud among them \(r.fraudCaught[a.rawValue] ?? 0)"))
        }
        let rows = metrics.map { "<tr><th>\(escape($0.0))</th><td>\(escape($0.1))</td></tr>" }.joined(separator: "\n")

        let plots = [
            Plot(title: "ROC", xLabel: "false-positive rate", yLabel: "true-positive rate", logX: true,
                 series: [.init(name: "model", color: "#1f77b4", points: r.roc.filter { $0.x > 0 })]).svg(),
            Plot(title: "Precision–recall", xLabel: "recall", yLabel: "precision",
                 series: [.init(name: "model", color: "#1f77b4", points: r.precisionRecall)]).svg(),
            Plot(title: "Calibration", xLabel: "mean predicted probability", yLabel: "observed fraud rate",
                 series: [.init(name: "observed", color: "#d62728", points: r.calibration, dots: true),
                          .init(name: "perfect", color: "#999", points: [.init(x: 0, y: 0), .init(x: 1, y: 1)])],
                 fixedUnit: true).svg(),
            Plot(title: "Cost per transaction, blocking above a threshold", xLabel: "threshold", yLabel: "cost per transaction",
                 series: [.init(name: "block ≥ threshold", color: "#2ca02c",
                                // Clipped at 1.5× approve-all so that blocking everything does not flatten the curve.
                                points: r.costByThreshold.map { .init(x: $0.x, y: min($0.y, r.costApproveAll * 1.5)) }),
                          .init(name: "approve everything", color: "#999", points: [.init(x: 0, y: r.costApproveAll), .init(x: 1, y: r.costApproveAll)]),
                          .init(name: "actions taken", color: "#ff7f0e", points: [.init(x: 0, y: r.expectedCostPerTransaction), .init(x: 1, y: r.expectedCostPerTransaction)])]).svg(),
            Bars(title: "Verdicts per day (non-approve)", labels: r.mixByDay.map { String($0.day.suffix(5)) },
                 stacks: [("challenge", "#ffbf00", r.mixByDay.map { Double($0.challenge) }),
                          ("review", "#ff7f0e", r.mixByDay.map { Double($0.review) }),
                          ("block", "#d62728", r.mixByDay.map { Double($0.block) }),
                          ("fraud (label)", "#444", r.mixByDay.map { Double($0.fraud) })], overlayLast: true).svg(),
            Bars(title: "Score distribution (share of each class)", labels: r.scoresLegit.edges.map { f($0, 2) },
                 stacks: [("legitimate", "#1f77b4", share(r.scoresLegit.counts)), ("fraud", "#d62728", share(r.scoresFraud.counts))],
                 grouped: true).svg(),
            Bars(title: "Latency per batch (µs)", labels: r.latency.edges.map { f($0, 0) },
                 stacks: [("transactions", "#9467bd", r.latency.counts.map(Double.init))]).svg(),
        ]
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>Vigil backtest report</title>
            <style>
            body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
            h1{font-size:1.5rem} table{border-collapse:collapse;margin:1rem 0} th{text-align:left;font-weight:500;padding:.2rem 1rem .2rem 0;color:#555}
            td{padding:.2rem 0;font-variant-numeric:tabular-nums} .plots{display:flex;flex-wrap:wrap;gap:1rem}
            svg{background:#fff;border:1px solid #ddd} text{font:11px system-ui,sans-serif;fill:#333}
            </style></head><body>
            <h1>Vigil backtest report</h1>
            <table>
            \(rows)
            </table>
            <div class="plots">
            \(plots.joined(separator: "\n"))
            </div>
            <p style="color:#777">Made by <code>vigil backtest</code>; the numbers are in <code>report.json</code>, every scored transaction in <code>scores.jsonl</code>.</p>
            </body></html>
            """
    }

    static func share(_ counts: [Int]) -> [Double] {
        let total = Double(max(counts.reduce(0, +), 1))
        return counts.map { Double($0) / total }
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}

/// A line plot as SVG.
struct Plot {
    struct Series {
        var name: String
        var color: String
        var points: [BacktestReport.Point]
        var dots = false
    }
    var title: String
    var xLabel: String
    var yLabel: String
    var logX = false
    var series: [Series]
    var fixedUnit = false

    static let width = 520.0, height = 340.0, left = 60.0, right = 20.0, top = 30.0, bottom = 45.0

    func svg() -> String {
        let all = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite && (!logX || $0.x > 0) }
        var x0 = all.map(\.x).min() ?? 0, x1 = all.map(\.x).max() ?? 1
        var y0 = min(0, all.map(\.y).min() ?? 0), y1 = all.map(\.y).max() ?? 1
        if fixedUnit { (x0, x1, y0, y1) = (0, 1, 0, 1) }
        if logX { x0 = max(x0, 1e-5); x1 = max(x1, x0 * 10) }
        if x1 <= x0 { x1 = x0 + 1 }
        if y1 <= y0 { y1 = y0 + 1 }
        let w = Plot.width - Plot.left - Plot.right, h = Plot.height - Plot.top - Plot.bottom
        func px(_ x: Double) -> Double {
            logX ? Plot.left + (log10(max(x, x0)) - log10(x0)) / (log10(x1) - log10(x0)) * w : Plot.left + (x - x0) / (x1 - x0) * w
        }
        func py(_ y: Double) -> Double { Plot.top + h - (y - y0) / (y1 - y0) * h }
        var s = "<svg width=\"\(Int(Plot.width))\" height=\"\(Int(Plot.height))\" viewBox=\"0 0 \(Int(Plot.width)) \(Int(Plot.height))\" role=\"img\" aria-label=\"\(title)\">"
        s += "<text x=\"\(Plot.left)\" y=\"18\" style=\"font-weight:600;font-size:13px\">\(ReportPage.escape(title))</text>"
        // Axes and ticks.
        s += "<line x1=\"\(Plot.left)\" y1=\"\(Plot.top + h)\" x2=\"\(Plot.left + w)\" y2=\"\(Plot.top + h)\" stroke=\"#333\"/>"
        s += "<line x1=\"\(Plot.left)\" y1=\"\(Plot.top)\" x2=\"\(Plot.left)\" y2=\"\(Plot.top + h)\" stroke=\"#333\"/>"
        var xTicks: [Double] = []
        if logX {
            var e = floor(log10(x0))
            while e <= ceil(log10(x1)) {
                let t = pow(10.0, e)
                if t >= x0 && t <= x1 { xTicks.append(t) }
                e += 1
            }
        } else {
            for k in 0...4 { xTicks.append(x0 + (x1 - x0) * Double(k) / 4) }
        }
        for t in xTicks {
            s += "<line x1=\"\(px(t))\" y1=\"\(Plot.top + h)\" x2=\"\(px(t))\" y2=\"\(Plot.top + h + 4)\" stroke=\"#333\"/>"
            s += "<text x=\"\(px(t))\" y=\"\(Plot.top + h + 16)\" text-anchor=\"middle\">\(Plot.format(t))</text>"
        }
        for k in 0...4 {
            let t = y0 + (y1 - y0) * Double(k) / 4
            s += "<line x1=\"\(Plot.left - 4)\" y1=\"\(py(t))\" x2=\"\(Plot.left + w)\" y2=\"\(py(t))\" stroke=\"#eee\"/>"
            s += "<text x=\"\(Plot.left - 6)\" y=\"\(py(t) + 4)\" text-anchor=\"end\">\(Plot.format(t))</text>"
        }
        s += "<text x=\"\(Plot.left + w / 2)\" y=\"\(Plot.height - 8)\" text-anchor=\"middle\">\(ReportPage.escape(xLabel))\(logX ? " (log)" : "")</text>"
        s += "<text transform=\"translate(14 \(Plot.top + h / 2)) rotate(-90)\" text-anchor=\"middle\">\(ReportPage.escape(yLabel))</text>"
        for (i, series) in series.enumerated() {
            let pts = series.points.filter { $0.x.isFinite && $0.y.isFinite && (!logX || $0.x > 0) }
            if series.dots {
                for p in pts { s += "<circle cx=\"\(px(p.x))\" cy=\"\(py(p.y))\" r=\"3.5\" fill=\"\(series.color)\"/>" }
            }
            let path = pts.map { "\(Plot.r(px($0.x))),\(Plot.r(py($0.y)))" }.joined(separator: " ")
            s += "<polyline fill=\"none\" stroke=\"\(series.color)\" stroke-width=\"2\" points=\"\(path)\"/>"
            s += "<rect x=\"\(Plot.left + w - 150)\" y=\"\(Plot.top + 8 + Double(i) * 16)\" width=\"10\" height=\"10\" fill=\"\(series.color)\"/>"
            s += "<text x=\"\(Plot.left + w - 135)\" y=\"\(Plot.top + 17 + Double(i) * 16)\">\(ReportPage.escape(series.name))</text>"
        }
        return s + "</svg>"
    }

    static func r(_ v: Double) -> String { String(format: "%.1f", v) }
    static func format(_ v: Double) -> String {
        if v != 0 && abs(v) < 0.01 { return String(format: "%.0e", v) }
        if abs(v) >= 1000 { return String(format: "%.0f", v) }
        return String(format: abs(v) >= 10 ? "%.0f" : "%.2f", v)
    }
}

/// Bar charts as SVG: stacked, grouped, or stacked with the last series as an overlay line.
struct Bars {
    var title: String
    var labels: [String]
    var stacks: [(name: String, color: String, values: [Double])]
    var grouped = false
    var overlayLast = false

    func svg() -> String {
        let width = 520.0, height = 340.0, left = 60.0, top = 30.0, bottom = 45.0, right = 20.0
        let w = width - left - right, h = height - top - bottom
        let bars = overlayLast ? Array(stacks.dropLast()) : stacks
        let n = max(labels.count, 1)
        var maxY = 0.0
        for i in 0..<labels.count {
            let column = bars.map { $0.values[i] }
            maxY = max(maxY, grouped ? (column.max() ?? 0) : column.reduce(0, +))
            if overlayLast { maxY = max(maxY, stacks.last!.values[i]) }
        }
        if maxY <= 0 { maxY = 1 }
        let slot = w / Double(n)
        var s = "<svg width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"\(title)\">"
        s += "<text x=\"\(left)\" y=\"18\" style=\"font-weight:600;font-size:13px\">\(ReportPage.escape(title))</text>"
        for k in 0...4 {
            let v = maxY * Double(k) / 4, y = top + h - h * Double(k) / 4
            s += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(left + w)\" y2=\"\(y)\" stroke=\"#eee\"/>"
            s += "<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(Plot.format(v))</text>"
        }
        for i in 0..<labels.count {
            var base = 0.0
            for (j, b) in bars.enumerated() {
                let v = b.values[i]
                let bh = v / maxY * h
                let x = left + Double(i) * slot + (grouped ? Double(j) * slot / Double(bars.count) : slot * 0.1)
                let bw = grouped ? slot / Double(bars.count) * 0.9 : slot * 0.8
                let y = top + h - (grouped ? bh : (base / maxY * h + bh))
                s += "<rect x=\"\(Plot.r(x))\" y=\"\(Plot.r(y))\" width=\"\(Plot.r(max(bw, 1)))\" height=\"\(Plot.r(bh))\" fill=\"\(b.color)\"/>"
                if !grouped { base += v }
            }
            if n <= 10 || i % ((n + 7) / 8) == 0 {
                s += "<text x=\"\(Plot.r(left + (Double(i) + 0.5) * slot))\" y=\"\(top + h + 14)\" text-anchor=\"middle\">\(ReportPage.escape(labels[i]))</text>"
            }
        }
        if overlayLast, let line = stacks.last {
            let pts = (0..<labels.count).map { "\(Plot.r(left + (Double($0) + 0.5) * slot)),\(Plot.r(top + h - line.values[$0] / maxY * h))" }
            s += "<polyline fill=\"none\" stroke=\"\(line.color)\" stroke-width=\"2\" stroke-dasharray=\"4 3\" points=\"\(pts.joined(separator: " "))\"/>"
        }
        for (j, b) in stacks.enumerated() {
            s += "<rect x=\"\(left + w - 150)\" y=\"\(top + 8 + Double(j) * 16)\" width=\"10\" height=\"10\" fill=\"\(b.color)\"/>"
            s += "<text x=\"\(left + w - 135)\" y=\"\(top + 17 + Double(j) * 16)\">\(ReportPage.escape(b.name))</text>"
        }
        return s + "</svg>"
    }
}
