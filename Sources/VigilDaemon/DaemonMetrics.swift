import Prometheus
import Vigil

/// The daemon's Prometheus metrics, in its own registry (the library never touches global
/// metrics). Names and meanings: `docs/operations.md`.
public final class DaemonMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()

    let transactions: Counter
    let labels: Counter
    let labelsPending: Gauge
    let batches: Counter
    let degraded: Counter
    let verdictCounters: [Action: Counter]
    let stages: [(String, DurationHistogram)]
    let batchLatency: DurationHistogram
    let age: DurationHistogram
    let score: ValueHistogram
    let batchSize: ValueHistogram
    let consumerLag: Gauge
    let inFlight: Gauge
    let paused: Gauge
    let pauses: Counter
    let deliveryRetries: Counter
    let commitFailures: Counter
    let reloadsOK: Counter
    let reloadsFailed: Counter
    let ready: Gauge
    let cacheEntities: Gauge
    let cacheBytes: Gauge
    let cacheEvictions: Gauge
    let storeColdReads: Gauge
    let storeConflicts: Gauge
    let storeCompactions: Gauge
    let journalBytes: Gauge
    /// Indexed by ``Stage/rawValue``.
    let cpu: [Counter]

    public init() {
        let r = registry
        let ms: [Duration] = [.microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
                              .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                              .milliseconds(250), .milliseconds(1000), .seconds(5)]
        transactions = r.makeCounter(descriptor: .init("vigil_transactions_total", help: "Transactions consumed (valid and dead-lettered)"))
        labels = r.makeCounter(descriptor: .init("vigil_labels_total", help: "Fraud labels applied to the store"))
        labelsPending = r.makeGauge(descriptor: .init("vigil_labels_pending", help: "Labels waiting for the store to come back"))
        batches = r.makeCounter(descriptor: .init("vigil_batches_total", help: "Batches scored"))
        degraded = r.makeCounter(descriptor: .init("vigil_degraded_verdicts_total", help: "Verdicts scored degraded (store or model member unavailable)"))
        verdictCounters = Dictionary(uniqueKeysWithValues: Action.allCases.map {
            ($0, r.makeCounter(descriptor: .init("vigil_verdicts_total", help: "Verdicts published, by action"), labels: [("action", $0.rawValue)]))
        })
        stages = ["features", "rules", "model", "decide"].map {
            ($0, r.makeDurationHistogram(descriptor: .init("vigil_stage_seconds", help: "Time per batch in each pipeline stage"), labels: [("stage", $0)], buckets: ms))
        }
        batchLatency = r.makeDurationHistogram(descriptor: .init("vigil_batch_seconds", help: "From a batch consumed to its verdicts acknowledged by the broker"), buckets: ms)
        age = r.makeDurationHistogram(descriptor: .init("vigil_transaction_age_seconds", help: "From the transaction's Kafka timestamp to its verdict being sent"), buckets: ms)
        score = r.makeValueHistogram(descriptor: .init("vigil_score", help: "Fraud probability of scored transactions"), buckets: [0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99])
        batchSize = r.makeValueHistogram(descriptor: .init("vigil_batch_size", help: "Messages per consumed batch"), buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024])
        consumerLag = r.makeGauge(descriptor: .init("vigil_consumer_lag", help: "Messages behind the high watermark on assigned partitions"))
        inFlight = r.makeGauge(descriptor: .init("vigil_inflight_batches", help: "Batches whose verdicts are not yet acknowledged"))
        paused = r.makeGauge(descriptor: .init("vigil_paused", help: "1 while fetching is paused for backpressure"))
        pauses = r.makeCounter(descriptor: .init("vigil_pauses_total", help: "Times fetching was paused for backpressure"))
        deliveryRetries = r.makeCounter(descriptor: .init("vigil_delivery_retries_total", help: "Verdicts or dead letters re-sent after a failed delivery"))
        commitFailures = r.makeCounter(descriptor: .init("vigil_commit_failures_total", help: "Offset commits that failed (the next commit covers them)"))
        reloadsOK = r.makeCounter(descriptor: .init("vigil_reloads_total", help: "Hot reloads"), labels: [("result", "ok")])
        reloadsFailed = r.makeCounter(descriptor: .init("vigil_reloads_total", help: "Hot reloads"), labels: [("result", "failed")])
        ready = r.makeGauge(descriptor: .init("vigil_ready", help: "1 when the daemon has joined its group and is scoring"))
        cacheEntities = r.makeGauge(descriptor: .init("vigil_store_cache_entities", help: "Entities whose windows this instance caches (Redis store)"))
        cacheBytes = r.makeGauge(descriptor: .init("vigil_store_cache_bytes", help: "Approximate bytes of the entity cache (bounded by store.cache_mb)"))
        cacheEvictions = r.makeGauge(descriptor: .init("vigil_store_cache_evictions", help: "Entities evicted from the cache so far"))
        storeColdReads = r.makeGauge(descriptor: .init("vigil_store_cold_reads", help: "Entity logs read whole so far (not cached, evicted or expired)"))
        storeConflicts = r.makeGauge(
            descriptor: .init("vigil_store_append_conflicts", help: "Appends that found other instances' frames before their own (read in one more round trip), so far"))
        storeCompactions = r.makeGauge(descriptor: .init("vigil_store_compactions", help: "Entity logs this instance compacted, so far"))
        journalBytes = r.makeGauge(descriptor: .init("vigil_store_journal_bytes", help: "Bytes of the in-memory store's journal on disk (store.journal)"))
        cpu = Stage.allCases.map {
            r.makeCounter(descriptor: .init("vigil_cpu_seconds_total", help: "CPU time of the pipeline's threads by stage (librdkafka's own threads not included)"), labels: [("stage", $0.name)])
        }
    }

    func deadLetter(reason: String) -> Counter {
        registry.makeCounter(descriptor: .init("vigil_dead_letters_total", help: "Messages sent to the dead-letter topic, by reason"), labels: [("reason", reason)])
    }

    func record(_ verdicts: [Verdict]) {
        guard let first = verdicts.first else { return }
        batches.increment()
        let l = first.latency
        for (name, h) in stages {
            let us = switch name { case "features": l.features; case "rules": l.rules; case "model": l.model; default: l.decide }
            h.recordNanoseconds(Int64(us * 1000))
        }
        var mix = [Int](repeating: 0, count: Action.allCases.count)
        var degradedCount = 0
        // Read in place: `for v in verdicts` copied each verdict (a retain and release of its strings and arrays).
        for i in verdicts.indices {
            mix[verdicts[i].action.severity] += 1
            if verdicts[i].degraded { degradedCount += 1 }
            score.record(verdicts[i].probability)
        }
        for a in Action.allCases where mix[a.severity] > 0 { verdictCounters[a]!.increment(by: Int64(mix[a.severity])) }
        if degradedCount > 0 { degraded.increment(by: Int64(degradedCount)) }
    }
}
