import Foundation
import Logging
import Prometheus
import Vigil
import VigilKafka

/// Watches the models on a thread of its own, off the champion's path: scores each decided batch
/// with the challengers (publishing their decisions, beside the champion's, to the shadow
/// topic), bins the champion's features and scores for drift against its bundle's reference,
/// and joins labels with every model's decisions for outcome figures.
///
/// The pipeline hands it batches after their verdicts are on their way and never waits for it:
/// past `shadow.queue_batches` waiting, a batch is not monitored (counted in
/// `vigil_monitor_skipped_batches_total`). Shadow decisions are best effort: not committed with
/// the batch, so a crash can lose or repeat some.
final class ModelMonitor: @unchecked Sendable {
    enum Job: Sendable {
        case batch([Transaction], Scorer.Result)
        case labels([Label])
    }

    // Unchecked Sendable: `queue` and `stopping` under `condition`; the rest is the monitor thread's.
    private let condition = NSCondition()
    private var queue: [Job] = []
    private var stopping = false
    private var thread: Thread?

    private let scorer: Scorer
    private let configuration: DaemonConfiguration.Shadow
    private let kafka: KafkaProperties
    /// Created with the first shadow decision (challengers can arrive with a reload).
    private var producer: KafkaProducer?
    private let metrics: MonitorMetrics
    private let logger: Logger

    private var drift: Drift?
    private var driftModel = ""
    private var outcomes: ModelOutcomes
    private var correlation: [String: ScoreCorrelation] = [:]
    private var lastExport = Date.distantPast
    /// Delivery tokens of shadow decisions (only failures are looked at).
    private var sent: UInt64 = 0

    init(scorer: Scorer, configuration: DaemonConfiguration, registry: PrometheusCollectorRegistry, logger: Logger) {
        self.scorer = scorer
        self.configuration = configuration.shadow
        self.logger = logger
        metrics = MonitorMetrics(registry: registry)
        outcomes = ModelOutcomes(halfLife: Int64(configuration.shadow.outcomesHalfLifeS) * 1000)
        var properties = configuration.kafkaProperties
        properties["client.id"] = "vigild-shadow"
        // Shadow decisions are not latency-critical: larger broker batches, less CPU per message.
        if configuration.kafka.properties["linger.ms"] == nil, configuration.kafka.properties["queue.buffering.max.ms"] == nil {
            properties["linger.ms"] = "50"
        }
        kafka = properties
        let t = Thread { [self] in run() }
        t.name = "vigild-monitor"
        thread = t
        t.start()
    }

    /// Hands over a decided batch; drops it (counted) when the monitor is behind.
    func submit(_ transactions: [Transaction], _ result: Scorer.Result) {
        let accepted = condition.withLock {
            guard queue.count < configuration.queueBatches else { return false }
            queue.append(.batch(transactions, result))
            condition.signal()
            return true
        }
        if !accepted { metrics.skippedBatches.increment() }
    }

    /// Labels as the store took them; never dropped.
    func labels(_ labels: [Label]) {
        condition.withLock {
            queue.append(.labels(labels))
            condition.signal()
        }
    }

    /// Finishes what is queued, flushes the shadow producer and ends the thread.
    func stop() {
        condition.withLock {
            stopping = true
            condition.broadcast()
        }
        while thread?.isFinished == false { Thread.sleep(forTimeInterval: 0.01) }
        _ = producer?.flush(timeout: .seconds(5))
    }

    /// The next job, or nil after a second without one (so gauges stay fresh); `done` once
    /// stopping with nothing left.
    private func next() -> (job: Job?, done: Bool) {
        condition.withLock {
            if queue.isEmpty, !stopping { _ = condition.wait(until: Date(timeIntervalSinceNow: 1)) }
            if !queue.isEmpty { return (queue.removeFirst(), false) }
            return (nil, stopping)
        }
    }

    private func run() {
        while true {
            let (job, done) = next()
            if done { return }
            switch job {
            case .batch(let txs, let result): monitor(txs, result)
            case .labels(let labels): label(labels)
            case nil: break
            }
            if let producer {
                for d in producer.poll() where d.error != nil { metrics.deliveryFailures.increment() }
            }
            export()
        }
    }

    private func monitor(_ txs: [Transaction], _ result: Scorer.Result) {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let shadows = scorer.shadow(txs, decided: result)
        if !shadows.isEmpty, producer == nil {
            do {
                let p = try KafkaProducer(properties: kafka)
                _ = try? p.prepare(topics: [configuration.topic], timeout: .seconds(5))
                producer = p
            } catch {
                logger.error("cannot create the shadow producer; shadow decisions are not published", metadata: ["error": "\(error)"])
            }
        }
        for s in shadows {
            guard s.skipped == nil else {
                metrics.skipped(s.challenger, reason: s.skipped!).increment()
                continue
            }
            metrics.shadowTransactions(s.challenger).increment(by: Int64(s.verdicts.count))
            let actions = Action.allCases
            var agreement = [Int64](repeating: 0, count: actions.count * actions.count)
            // The batch's lines and keys in one buffer, written whole before any message takes
            // its slices (a slice shares the storage: appending after would copy it).
            var bytes: [UInt8] = []
            bytes.reserveCapacity(s.verdicts.count * 240)
            var ends: [(json: Int, key: Int)] = []
            ends.reserveCapacity(s.verdicts.count)
            for v in s.verdicts {
                agreement[v.champion.action.severity * actions.count + v.challenger.action.severity] += 1
                v.encodeJSON(into: &bytes)
                let json = bytes.count
                bytes += v.transactionID.utf8
                ends.append((json, bytes.count))
            }
            var from = 0
            for end in ends {
                sent += 1
                do {
                    try producer?.send(OutgoingMessage(topic: configuration.topic, key: bytes[end.json..<end.key], value: bytes[from..<end.json], headers: []), token: sent)
                } catch {
                    metrics.deliveryFailures.increment()
                }
                from = end.key
            }
            for a in actions {
                for b in actions where agreement[a.severity * actions.count + b.severity] > 0 {
                    metrics.agreement(s.challenger, champion: a.rawValue, challenger: b.rawValue)
                        .increment(by: agreement[a.severity * actions.count + b.severity])
                }
            }
            correlation[s.challenger, default: ScoreCorrelation()].add(s.verdicts, at: now)
        }
        let champion = result.verdicts.first?.modelVersion ?? ""
        outcomes.record(txs, keys: txs.indices.map { scorer.engine.idHash(txs[$0].id) }, champion: result.verdicts,
                        shadows: shadows.map(\.verdicts), costs: scorer.costs)
        // Drift against the champion's own reference; a new champion (reload) starts afresh.
        if champion != driftModel {
            driftModel = champion
            let slots = 12
            drift = scorer.models.champion.reference.map {
                Drift(reference: $0, slotMillis: Int64(configuration.driftWindowS) * 1000 / Int64(slots), slots: slots)
            }
            if drift == nil { logger.notice("the champion's bundle records no reference distributions: no drift figures", metadata: ["model": "\(champion)"]) }
        }
        // At most 64 rows of a batch: an hour's window still holds tens of thousands.
        drift?.add(values: result.features.values, scores: result.verdicts.map(\.probability), at: now, every: (txs.count + 63) / 64)
    }

    private func label(_ labels: [Label]) {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for l in labels { outcomes.label(scorer.engine.idHash(l.transactionID), fraud: l.isFraud, at: now) }
    }

    /// Gauges every 5 s: drift, score correlation, outcome figures.
    private func export() {
        guard Date().timeIntervalSince(lastExport) >= 5 else { return }
        lastExport = Date()
        let now = Int64(lastExport.timeIntervalSince1970 * 1000)
        if let drift {
            let r = drift.report(now: now)
            if r.rows > 0 {
                for (h, (psi, missing)) in zip(drift.reference.features, zip(r.features, r.missing)) {
                    metrics.featurePSI(h.name).set(to: psi)
                    metrics.missingShare(h.name).set(to: missing)
                }
                metrics.scorePSI.set(to: r.score)
                metrics.driftRows.set(to: Double(r.rows))
            }
        }
        for (challenger, c) in correlation { metrics.correlation(challenger).set(to: c.value) }
        for (model, f) in outcomes.figures(at: now) {
            metrics.outcome("vigil_model_labelled", model, "Labelled transactions behind the model's outcome figures (time-decayed)").set(to: f.labelled)
            metrics.outcome("vigil_model_cost_per_transaction", model, "Realised cost per labelled transaction of the model's decisions").set(to: f.costPerTransaction)
            metrics.outcome("vigil_model_precision", model, "Share of fraud among the labelled transactions the model did not approve").set(to: f.precision)
            metrics.outcome("vigil_model_recall", model, "Share of labelled fraud the model did not approve").set(to: f.recall)
        }
    }
}

/// The monitor's Prometheus metrics.
struct MonitorMetrics {
    let registry: PrometheusCollectorRegistry
    let skippedBatches: Counter
    let deliveryFailures: Counter
    let scorePSI: Gauge
    let driftRows: Gauge

    init(registry r: PrometheusCollectorRegistry) {
        registry = r
        skippedBatches = r.makeCounter(descriptor: .init("vigil_monitor_skipped_batches_total", help: "Batches not monitored (shadow, drift, outcomes) because the monitor was behind"))
        deliveryFailures = r.makeCounter(descriptor: .init("vigil_shadow_delivery_failures_total", help: "Shadow decisions the broker did not take"))
        scorePSI = r.makeGauge(descriptor: .init("vigil_drift_score_psi", help: "Population stability index of the champion's score, live window against its training reference"))
        driftRows = r.makeGauge(descriptor: .init("vigil_drift_rows", help: "Transactions in the drift window"))
    }

    func shadowTransactions(_ c: String) -> Counter {
        registry.makeCounter(descriptor: .init("vigil_shadow_transactions_total", help: "Transactions a challenger scored in shadow"), labels: [("challenger", c)])
    }
    func skipped(_ c: String, reason: String) -> Counter {
        registry.makeCounter(descriptor: .init("vigil_shadow_skipped_total", help: "Batches a challenger skipped: over its budget, or failed"),
                             labels: [("challenger", c), ("reason", reason)])
    }
    func agreement(_ c: String, champion: String, challenger: String) -> Counter {
        registry.makeCounter(descriptor: .init("vigil_shadow_decisions_total", help: "Decisions of a challenger against the champion's: the agreement matrix"),
                             labels: [("challenger", c), ("champion_action", champion), ("challenger_action", challenger)])
    }
    func correlation(_ c: String) -> Gauge {
        registry.makeGauge(descriptor: .init("vigil_shadow_score_correlation", help: "Pearson correlation of the challenger's and the champion's scores (1 h half-life)"), labels: [("challenger", c)])
    }
    func featurePSI(_ f: String) -> Gauge {
        registry.makeGauge(descriptor: .init("vigil_drift_psi", help: "Population stability index of a feature, live window against the champion's training reference"), labels: [("feature", f)])
    }
    func missingShare(_ f: String) -> Gauge {
        registry.makeGauge(descriptor: .init("vigil_drift_missing_share", help: "Share of live transactions where the feature is missing"), labels: [("feature", f)])
    }
    func outcome(_ name: String, _ model: String, _ help: String) -> Gauge {
        registry.makeGauge(descriptor: .init(name, help: help), labels: [("model", model)])
    }
}
