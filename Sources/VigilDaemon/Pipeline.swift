import Foundation
import Logging
import Synchronization
import Vigil
import VigilCore
import VigilRedis
import VigilKafka

/// The daemon's loop: consume a batch, decode, score, publish verdicts and dead letters, and
/// commit the batch's offsets once the broker has acknowledged everything it produced.
///
/// At-least-once: nothing is committed before its outputs are acknowledged, so a crash
/// redelivers; the store's idempotence on transaction id makes a redelivered transaction get
/// the same features, hence the same verdict. Runs on one thread of its own (librdkafka calls
/// block), which consumes, decodes, computes features (the store, in stream order), publishes
/// and commits; with `scoring.threads` 2 a batch's decisions run on a second thread
/// (``DecisionStage``) while this one computes the next batch's features. ``stop()`` asks it
/// to finish what is in flight, commit and leave the group.
final class Pipeline: @unchecked Sendable {
    /// A consumed batch whose outputs are not all acknowledged yet.
    struct InFlight {
        var sequence: UInt64
        var outputs: [OutgoingMessage]
        var remaining: Int
        /// Next offset to commit per partition once the batch is acknowledged.
        var offsets: [TopicPartition: Int64]
        var consumed: ContinuousClock.Instant
    }

    /// A consumed batch on its way through the stages: decoded, with features; then decided,
    /// with its outputs.
    struct Batch: Sendable {
        var transactions: [Transaction] = []
        var sources: [KafkaMessage] = []
        var features: Scorer.Features?
        var verdicts: [Verdict] = []
        /// The decided batch (features, rule outcomes, components) for the model monitor.
        var decided: Scorer.Result?
        /// Dead letters first, then verdicts in transaction order.
        var outputs: [OutgoingMessage] = []
        var offsets: [TopicPartition: Int64] = [:]
        var received: ContinuousClock.Instant
        /// CPU spent deciding and encoding, on whichever thread did it.
        var decideCPU: Int64 = 0
        var encodeCPU: Int64 = 0
    }

    /// A label the store could not take yet (store down); retried, and its offset held back.
    struct PendingLabel {
        var label: Label
        var partition: TopicPartition
        var offset: Int64
    }

    let configuration: DaemonConfiguration
    let scorer: Scorer
    let hasher: KeyedHasher
    let metrics: DaemonMetrics
    let logger: Logger
    let decoder: TransactionDecoder
    let clock = ContinuousClock()

    private let stopRequested = Atomic<Bool>(false)
    private let state = Mutex<Status>(Status())

    struct Status {
        var joined = false
        var running = false
        var heartbeat: ContinuousClock.Instant?
    }

    // Owned by the pipeline thread.
    private var consumer: KafkaConsumer?
    private var producer: KafkaProducer?
    private var inFlight: [InFlight] = []
    private var nextSequence: UInt64 = 1
    private var pendingLabels: [PendingLabel] = []
    /// Acknowledged offsets of label partitions held back by a pending label.
    private var heldOffsets: [TopicPartition: Int64] = [:]
    private var lastLabelRetry: ContinuousClock.Instant?
    /// Everything committed so far (asynchronously), re-committed synchronously before the
    /// partitions are given up, so the last commits are known to have landed.
    private var committed: [TopicPartition: Int64] = [:]
    private var paused = false
    private var lastGauges: ContinuousClock.Instant?
    /// Set when a stop begins: no wait of the shutdown (a revocation's drain included) goes past it.
    private var shutdownDeadline: ContinuousClock.Instant?
    /// The loop thread's CPU by stage, flushed to `vigil_cpu_seconds_total` with the gauges.
    private var timer = StageTimer()
    /// Decisions on their own thread (`scoring.threads` 2), or nil: decided inline.
    private var decisions: DecisionStage<Batch>?
    /// Shadow challengers, drift and outcome figures, on a thread of their own.
    private var monitor: ModelMonitor?
    /// Batches consumed and not yet acknowledged: in flight, or still being decided.
    private var unacknowledged: Int { inFlight.count + (decisions?.outstanding ?? 0) }

    init(configuration: DaemonConfiguration, scorer: Scorer, hasher: KeyedHasher, metrics: DaemonMetrics, logger: Logger) {
        self.configuration = configuration
        self.scorer = scorer
        self.hasher = hasher
        self.metrics = metrics
        self.logger = logger
        var limits = DecoderLimits()
        limits.maxBytes = configuration.limits.maxMessageBytes
        decoder = TransactionDecoder(limits: limits)
    }

    /// Ready: joined the consumer group and polling.
    var isReady: Bool { state.withLock { $0.running && $0.joined } }

    /// Healthy: the loop went round within the last 10 s.
    var isHealthy: Bool {
        let beat = state.withLock { $0.heartbeat }
        guard let beat else { return false }
        return clock.now - beat < .seconds(10)
    }

    func stop() { stopRequested.store(true, ordering: .releasing) }

    /// Runs until ``stop()``; then drains, commits and leaves the group.
    func run() throws(KafkaError) {
        let k = configuration.kafka
        var consumerProperties = configuration.kafkaProperties
        consumerProperties["group.id"] = k.group
        if consumerProperties["queued.max.messages.kbytes"] == nil { consumerProperties["queued.max.messages.kbytes"] = "16384" }
        let producer = try KafkaProducer(properties: configuration.kafkaProperties)
        self.producer = producer
        // A broker answers a fetch as soon as data arrives, but librdkafka's mock cluster waits out
        // the whole fetch wait (default 500 ms): keep it short. On a real cluster this only sets
        // how often an idle consumer asks. (1 ms on the mock cluster cut latency at low rates but
        // tripled its CPU per message under load: `docs/design-changes.md`.)
        if consumerProperties["fetch.wait.max.ms"] == nil { consumerProperties["fetch.wait.max.ms"] = "5" }
        do {
            try producer.prepare(topics: [k.topics.verdicts, k.topics.deadLetters], timeout: .seconds(5))
        } catch {
            // Not fatal (a cluster may create topics on first use): the first verdicts then wait
            // for librdkafka's next metadata scan.
            logger.warning("output topics not ready", metadata: ["error": "\(error)"])
        }
        let consumer = try KafkaConsumer(
            properties: consumerProperties, topics: [k.topics.transactions, k.topics.labels], readsHeaders: false,
            onRebalance: { [unowned self] event in rebalanced(event) },
            onError: { [logger] error in logger.warning("kafka consumer error", metadata: ["error": "\(error)"]) })
        self.consumer = consumer
        state.withLock { $0.running = true; $0.heartbeat = clock.now }
        logger.info("consuming", metadata: ["topics": "\(consumer.topics)", "group": "\(k.group)", "brokers": "\(k.brokers)"])

        if configuration.scoring.threads > 1 {
            let topics = k.topics, scorer = scorer, hasher = hasher
            decisions = DecisionStage(name: "vigild-decide") { Self.decide($0, scorer: scorer, hasher: hasher, topics: topics) }
        }
        defer { decisions?.stop() }
        monitor = ModelMonitor(scorer: scorer, configuration: configuration, registry: metrics.registry, logger: logger)
        defer { monitor?.stop() }

        timer = StageTimer()
        while !stopRequested.load(ordering: .acquiring) {
            state.withLock { $0.heartbeat = clock.now }
            timer.lap(.other)
            settle(producer.poll())
            timer.lap(.settle)
            collectDecided()
            timer.lap(.publish)
            retryLabels(force: false)
            timer.lap(.labels)
            updateGauges()
            if unacknowledged >= k.maxInFlight {
                waitForRoom()
                timer.lap(.settle)
                continue
            }
            // While a batch is being decided, only look for more work: its verdicts go out as
            // soon as it is done.
            let deciding = (decisions?.outstanding ?? 0) > 0
            let messages = consumer.poll(max: k.batchSize, timeout: deciding ? .zero : .milliseconds(100))
            timer.lap(.consume)
            if !messages.isEmpty {
                process(messages)
            } else if deciding {
                collectDecided(waiting: .milliseconds(1))
                timer.lap(.publish)
            }
        }

        // One deadline for all of it: finishing, committing and leaving the group. A broker that
        // does not answer would otherwise hold each step for its own timeout (the commit waits
        // for a coordinator without a limit), past what an orchestrator allows before SIGKILL.
        logger.info("stopping: finishing batches in flight")
        let deadline = clock.now + .milliseconds(k.shutdownTimeoutMs)
        shutdownDeadline = deadline
        retryLabels(force: true)
        drain(timeout: deadline - clock.now)
        state.withLock { $0.running = false }
        if !consumer.close(timeout: max(deadline - clock.now, .milliseconds(1))) {
            logger.warning("leaving the group timed out; exiting without it (the group expires this member, and what was not committed is redelivered)",
                           metadata: ["shutdown_timeout_ms": "\(k.shutdownTimeoutMs)"])
        }
        flushCPU()
        metrics.ready.set(to: 0)
        logger.info("stopped", metadata: ["uncommitted_batches": "\(inFlight.count)"])
    }

    // MARK: - One batch

    private func process(_ messages: [KafkaMessage]) {
        let topics = configuration.kafka.topics
        metrics.batchSize.record(Double(messages.count))
        var batch = Batch(received: clock.now)
        var labels: [PendingLabel] = []
        batch.transactions.reserveCapacity(messages.count)

        // Messages read in place, through the buffer: `for m in messages` copied each one (a
        // retain and release of its key, value and headers).
        var consumed = 0
        messages.withUnsafeBufferPointer { messages in
            for i in messages.indices {
                // A partition's messages come in runs, in offset order: its offset to commit is
                // noted at the end of each run (a dictionary update hashed the topic's name per message).
                let next = i + 1
                if next == messages.count || messages[next].partition != messages[i].partition || messages[next].topic != messages[i].topic {
                    let tp = TopicPartition(messages[i].topic, messages[i].partition)
                    batch.offsets[tp] = max(batch.offsets[tp] ?? 0, messages[i].offset + 1)
                }
                if messages[i].topic == topics.labels {
                    do {
                        let label = try messages[i].value.withUnsafeBufferPointer { (b) throws(TransactionDecodingError) in try decodeLabel(b, limits: decoder.limits) }
                        labels.append(PendingLabel(label: label, partition: TopicPartition(messages[i].topic, messages[i].partition), offset: messages[i].offset))
                    } catch {
                        batch.outputs.append(deadLetter(messages[i], reason: "label: \(error)", category: "label"))
                    }
                    continue
                }
                consumed += 1
                do throws(TransactionDecodingError) {
                    batch.transactions.append(try decoder.decode(messages[i].value))
                    batch.sources.append(messages[i])
                } catch {
                    batch.outputs.append(deadLetter(messages[i], reason: error.description, category: Self.category(of: error)))
                }
            }
        }
        if consumed > 0 { metrics.transactions.increment(by: Int64(consumed)) }
        timer.lap(.decode)

        // Features here, in stream order: the only stage that reads and writes the store.
        if !batch.transactions.isEmpty { batch.features = scorer.features(batch.transactions) }
        timer.lap(.features)
        if !labels.isEmpty {
            pendingLabels += labels
            retryLabels(force: true)
            timer.lap(.labels)
        }
        if let decisions {
            decisions.submit(batch)
            timer.lap(.other)
        } else {
            let decided = Self.decide(batch, scorer: scorer, hasher: hasher, topics: topics)
            timer.restart()  // charged by publish, from the batch's own counts
            publish(decided)
            timer.lap(.publish)
        }
    }

    /// Rules, model and decisions for a batch with features, and its verdict messages.
    static func decide(_ batch: Batch, scorer: Scorer, hasher: KeyedHasher, topics: DaemonConfiguration.Topics) -> Batch {
        guard let features = batch.features else { return batch }
        var batch = batch
        let start = threadCPUNanoseconds()
        let result = scorer.decide(batch.transactions, features: features)
        batch.verdicts = result.verdicts
        batch.decided = result
        batch.features = nil  // the result holds the matrix
        let decided = threadCPUNanoseconds()
        // Every verdict's JSON, key and header values are written straight into one buffer for
        // the batch, and its headers into one array: each message holds slices of the two (two
        // allocations per batch, none per verdict).
        var bytes: [UInt8] = []
        bytes.reserveCapacity(batch.verdicts.count * 768)
        var layouts: [(json: Range<Int>, key: Range<Int>, provenance: Provenance)] = []
        layouts.reserveCapacity(batch.verdicts.count)
        // Verdicts and messages read in place, through their buffers: iterating them (`zip`), or
        // passing `batch.sources[i]`, copied each one, a retain and a release of every string and
        // array it holds.
        var encoder = VerdictEncoder()
        batch.verdicts.withUnsafeBufferPointer { verdicts in
            batch.sources.withUnsafeBufferPointer { sources in
                for i in verdicts.indices {
                    let start = bytes.count
                    verdicts[i].encodeJSON(into: &bytes, using: &encoder)
                    let json = start..<bytes.count
                    bytes.append(contentsOf: verdicts[i].transactionID.utf8)
                    layouts.append((json, json.upperBound..<bytes.count, Provenance(of: sources[i], hasher: hasher, into: &bytes)))
                }
            }
        }
        var headers: [OutgoingHeader] = []
        headers.reserveCapacity(layouts.count * 2)
        for l in layouts { l.provenance.headers(in: bytes, into: &headers) }
        batch.outputs.reserveCapacity(batch.outputs.count + layouts.count)
        var from = 0
        for l in layouts {
            let to = from + l.provenance.count
            batch.outputs.append(OutgoingMessage(topic: topics.verdicts, key: bytes[l.key], value: bytes[l.json], headers: headers[from..<to]))
            from = to
        }
        batch.decideCPU = decided - start
        batch.encodeCPU = threadCPUNanoseconds() - decided
        return batch
    }

    /// Sends what the decision stage has finished, in order.
    private func collectDecided(waiting timeout: Duration = .zero) {
        guard let decisions else { return }
        for batch in decisions.take(waiting: timeout) { publish(batch) }
    }

    /// Records a decided batch's metrics and sends its outputs; its offsets are committed once
    /// they are all acknowledged.
    private func publish(_ batch: Batch) {
        timer.add(batch.decideCPU, to: .decide)
        timer.add(batch.encodeCPU, to: .encode)
        if !batch.verdicts.isEmpty {
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            for i in batch.sources.indices {
                if let ts = batch.sources[i].timestamp { metrics.age.recordNanoseconds(max(0, now - ts) * 1_000_000) }
            }
            metrics.record(batch.verdicts)
        }
        send(InFlight(sequence: nextSequence, outputs: batch.outputs, remaining: batch.outputs.count, offsets: batch.offsets, consumed: batch.received))
        nextSequence += 1
        // The verdicts are on their way: now the monitor may look at them (never waited for).
        if let decided = batch.decided { monitor?.submit(batch.transactions, decided) }
    }

    /// The dead letter of `m`: its original key and bytes, the reason and where it came from in headers.
    private func deadLetter(_ m: KafkaMessage, reason: String, category: String) -> OutgoingMessage {
        metrics.deadLetter(reason: category).increment()
        logger.debug("dead letter", metadata: ["reason": "\(reason)", "partition": "\(m.partition)", "offset": "\(m.offset)"])
        var bytes = Array(reason.utf8)
        let reasonEnd = bytes.count
        bytes += category.utf8
        let provenance = Provenance(of: m, hasher: hasher, into: &bytes)
        var headers = [OutgoingHeader("vigil-reason", bytes[..<reasonEnd]), OutgoingHeader("vigil-reason-code", bytes[reasonEnd..<provenance.source.lowerBound])]
        provenance.headers(in: bytes, into: &headers)
        return OutgoingMessage(topic: configuration.kafka.topics.deadLetters, key: m.key, value: m.value, headers: headers[...])
    }

    /// Where an output came from (`vigil-source`: topic/partition/offset), and the source's
    /// partition key as a keyed hash (`vigil-partition-key-hash`, hex: the raw key may be a card
    /// number; a consumer can still co-partition by the hash): written as bytes into a buffer the
    /// batch shares, with no intermediate strings.
    struct Provenance {
        var source: Range<Int>
        var keyHash: Range<Int>?

        /// `m` borrowed: an initializer otherwise takes its arguments owned, a copy of the message.
        init(of m: borrowing KafkaMessage, hasher: KeyedHasher, into bytes: inout [UInt8]) {
            let start = bytes.count
            bytes += m.topic.utf8
            bytes.append(UInt8(ascii: "/"))
            ASCIINumbers.appendDecimal(Int64(m.partition), to: &bytes)
            bytes.append(UInt8(ascii: "/"))
            ASCIINumbers.appendDecimal(m.offset, to: &bytes)
            source = start..<bytes.count
            guard let key = m.key else { return }
            ASCIINumbers.appendHexTrimmed(hasher.hash(key, domain: 0xFF), to: &bytes)
            keyHash = source.upperBound..<bytes.count
        }

        /// Headers written.
        var count: Int { keyHash == nil ? 1 : 2 }

        func headers(in bytes: [UInt8], into headers: inout [OutgoingHeader]) {
            headers.append(OutgoingHeader("vigil-source", bytes[source]))
            if let keyHash { headers.append(OutgoingHeader("vigil-partition-key-hash", bytes[keyHash])) }
        }
    }

    /// A short, bounded label for the dead-letter metric.
    static func category(of error: TransactionDecodingError) -> String {
        guard let p = error.problems.first else { return "invalid" }
        if p.reason.hasPrefix("malformed JSON") { return "malformed_json" }
        if p.reason.hasPrefix("message larger") { return "oversize" }
        if let f = p.field, TransactionField(rawValue: f) != nil { return "field_\(f)" }
        return "invalid"
    }

    // MARK: - Delivery and commits

    private func send(_ batch: InFlight) {
        inFlight.append(batch)
        batch.outputs.withUnsafeBufferPointer { outputs in
            for i in outputs.indices { sendOne(outputs[i], token: Self.token(batch.sequence, i)) }
        }
        retire()
    }

    private func sendOne(_ m: OutgoingMessage, token: UInt64) {
        guard let producer else { return }
        while true {
            do {
                try producer.send(m, token: token)
                return
            } catch {
                // Only non-retriable local errors get here (unknown topic, message too large);
                // log and try again after serving deliveries: losing a verdict is not an option.
                logger.error("cannot queue message; retrying", metadata: ["topic": "\(m.topic)", "error": "\(error)"])
                settle(producer.poll(timeout: .milliseconds(100)))
                // Stopping: leave the batch unacknowledged; it is redelivered after restart.
                if stopRequested.load(ordering: .acquiring) { return }
            }
        }
    }

    static func token(_ sequence: UInt64, _ index: Int) -> UInt64 { sequence << 24 | UInt64(index + 1) }

    /// Applies delivery reports: failed deliveries are re-sent, acknowledged batches retired in order.
    private func settle(_ deliveries: [Delivery]) {
        guard !deliveries.isEmpty, let first = inFlight.first?.sequence else { return }
        for d in deliveries {
            let sequence = d.token >> 24
            let index = Int(d.token & 0xFF_FFFF) - 1
            let slot = Int(sequence &- first)
            guard slot >= 0, slot < inFlight.count else { continue }
            if let error = d.error {
                metrics.deliveryRetries.increment()
                logger.warning("delivery failed; re-sending", metadata: ["error": "\(error)"])
                sendOne(inFlight[slot].outputs[index], token: d.token)
            } else {
                inFlight[slot].remaining -= 1
            }
        }
        retire()
    }

    private func retire() {
        var offsets: [TopicPartition: Int64] = [:]
        while let head = inFlight.first, head.remaining == 0 {
            for (tp, o) in head.offsets { offsets[tp] = max(offsets[tp] ?? 0, o) }
            metrics.batchLatency.record(clock.now - head.consumed)
            inFlight.removeFirst()
        }
        // A label the store has not taken yet holds its partition's commit back to it.
        for p in pendingLabels {
            guard let o = offsets[p.partition] else { continue }
            heldOffsets[p.partition] = max(heldOffsets[p.partition] ?? 0, o)
            offsets[p.partition] = min(o, p.offset)
        }
        commit(offsets)
    }

    private func commit(_ offsets: [TopicPartition: Int64]) {
        guard !offsets.isEmpty else { return }
        committed.merge(offsets) { max($0, $1) }
        do {
            try consumer?.commit(offsets, wait: nil)
        } catch {
            metrics.commitFailures.increment()
            logger.warning("commit failed; the next one covers it", metadata: ["error": "\(error)"])
        }
    }

    private func retryLabels(force: Bool) {
        guard !pendingLabels.isEmpty else { return }
        if !force, let last = lastLabelRetry, clock.now - last < .seconds(1) { return }
        lastLabelRetry = clock.now
        do {
            try scorer.apply(labels: pendingLabels.map(\.label))
            metrics.labels.increment(by: Int64(pendingLabels.count))
            monitor?.labels(pendingLabels.map(\.label))
            pendingLabels = []
            commit(heldOffsets)
            heldOffsets = [:]
        } catch {
            logger.warning("labels not applied; will retry", metadata: ["pending": "\(pendingLabels.count)", "error": "\(error)"])
        }
        metrics.labelsPending.set(to: Double(pendingLabels.count))
    }

    /// Too many batches unacknowledged: serve deliveries; pause fetching if it lasts.
    private func waitForRoom() {
        guard let producer else { return }
        let start = clock.now
        while unacknowledged >= configuration.kafka.maxInFlight, !stopRequested.load(ordering: .acquiring) {
            collectDecided(waiting: .milliseconds(1))
            settle(producer.poll(timeout: (decisions?.outstanding ?? 0) > 0 ? .zero : .milliseconds(10)))
            state.withLock { $0.heartbeat = clock.now }
            if !paused, clock.now - start > .milliseconds(configuration.kafka.pauseAfterMs) {
                consumer?.pause()
                paused = true
                metrics.pauses.increment()
                metrics.paused.set(to: 1)
                logger.warning("broker slow to acknowledge; paused fetching", metadata: ["in_flight": "\(inFlight.count)"])
            }
        }
        if paused {
            consumer?.resume()
            paused = false
            metrics.paused.set(to: 0)
            logger.info("resumed fetching")
        }
    }

    /// Waits for every batch in flight to be acknowledged, up to `timeout` (and never past the
    /// shutdown's deadline), then commits synchronously in what time is left.
    private func drain(timeout: Duration) {
        guard let producer else { return }
        var deadline = clock.now + timeout
        if let shutdownDeadline { deadline = min(deadline, shutdownDeadline) }
        while (decisions?.outstanding ?? 0) > 0, clock.now < deadline {
            collectDecided(waiting: .milliseconds(10))
        }
        while !inFlight.isEmpty, clock.now < deadline {
            settle(producer.poll(timeout: .milliseconds(10)))
        }
        guard !committed.isEmpty else { return }
        do {
            try consumer?.commit(committed, wait: max(deadline - clock.now, .milliseconds(1)))
        } catch {
            metrics.commitFailures.increment()
            logger.warning("final commit failed; the uncommitted tail is redelivered", metadata: ["error": "\(error)"])
        }
    }

    private func rebalanced(_ event: Rebalance) {
        switch event {
        case .assigned(let parts):
            logger.info("partitions assigned", metadata: ["partitions": "\(parts)"])
            state.withLock { $0.joined = true }
            metrics.ready.set(to: 1)
            if paused { consumer?.pause() }
        case .revoked(let parts):
            logger.info("partitions revoked; finishing what was consumed from them", metadata: ["partitions": "\(parts)"])
            drain(timeout: .seconds(10))
            for tp in parts { committed.removeValue(forKey: tp) }
        }
    }

    private func updateGauges() {
        let now = clock.now
        if let last = lastGauges, now - last < .seconds(1) { return }
        lastGauges = now
        flushCPU()
        metrics.inFlight.set(to: Double(unacknowledged))
        if let consumer { metrics.consumerLag.set(to: Double(consumer.lag())) }
        if let redis = scorer.store as? RedisVelocityStore {
            let cache = redis.cacheUsage, sync = redis.statistics
            metrics.cacheEntities.set(to: Double(cache.entities))
            metrics.cacheBytes.set(to: Double(cache.bytes))
            metrics.cacheEvictions.set(to: Double(cache.evictions))
            metrics.storeColdReads.set(to: Double(sync.coldReads))
            metrics.storeConflicts.set(to: Double(sync.conflicts))
            metrics.storeCompactions.set(to: Double(sync.compactions))
        } else if let memory = scorer.store as? InMemoryVelocityStore {
            metrics.journalBytes.set(to: Double(memory.journalBytes))
        }
    }

    private func flushCPU() {
        for (stage, ns) in zip(Stage.allCases, timer.take()) where ns > 0 {
            metrics.cpu[stage.rawValue].increment(by: Double(ns) / 1e9)
        }
    }
}
