import ArgumentParser
import Foundation
import Synchronization
import Vigil
import VigilKafka
import VigilSimulator

/// `vigil produce`: publishes a simulated or recorded stream at a fixed rate (open loop), and
/// with `--await-verdicts` follows the verdicts topic to report produce-to-verdict latency,
/// duplicates and anything missing. The live demo and the load benchmark both drive it.
struct Produce: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish transactions to Kafka at a fixed rate; optionally wait for their verdicts and report latency.")

    @Option(help: "Kafka bootstrap servers.") var brokers: String
    @Option(help: "Topic to publish to.") var topic = "transactions"
    @Option(help: "JSONL file to publish, one message per line, sent as is (bad lines included).") var data: String?
    @Option(help: "Simulate this many transactions instead of --data.") var simulate: Int?
    @Option(help: "Simulation seed.") var seed: UInt64 = 7
    @Option(help: "Simulated days.") var days = 30
    @Option(help: "Messages per second; 0 sends as fast as the broker takes them.") var rate: Double = 1000
    @Option(help: "Partition key: this transaction field's value (the primary entity keeps its order).") var key = "card_id"
    @Option(help: "Also publish each labelled transaction's label to this topic, this many messages later.") var labelsTopic: String?
    @Option(help: "Messages between a transaction and its label (with --labels-topic).") var labelLag = 1000
    @Option(help: "Replace every Nth message with a truncated copy (malformed JSON, for the dead-letter path); 0: none.")
    var corruptEvery = 0
    @Option(help: "Follow this verdicts topic and report latency per transaction.") var awaitVerdicts: String?
    @Option(help: "Seconds to wait for the last verdicts.") var timeout: Double = 60
    @Option(help: "Send this many messages first, at the same rate, and leave them out of the figures (warm-up).") var warmup = 0
    @Option(help: "Write the summary as JSON to this file.") var summaryJSON: String?
    @Option(name: .customLong("property"), help: "A librdkafka property, name=value (repeatable).") var properties: [String] = []
    @Option(name: .customLong("cpu-of"), help: "name=pid: report the CPU this local process used from the first message sent (after the warm-up) to the last verdict, per message (repeatable; Linux, with --await-verdicts).")
    var cpuOf: [String] = []

    func validate() throws {
        guard (data == nil) != (simulate == nil) else { throw ValidationError("give exactly one of --data or --simulate") }
        guard rate >= 0 else { throw ValidationError("--rate must be ≥ 0") }
        guard corruptEvery >= 0 else { throw ValidationError("--corrupt-every must be ≥ 0") }
        if let simulate, !(1...50_000_000).contains(simulate) { throw ValidationError("--simulate must be 1…50000000") }
        for (name, pid) in try watchedProcesses() where ProcessCPU.sample(pid: pid) == nil {
            throw ValidationError("--cpu-of \(name)=\(pid): no such process here (its CPU is read from /proc/\(pid)/task, on Linux)")
        }
    }

    /// The `--cpu-of` processes, by name.
    func watchedProcesses() throws -> [(name: String, pid: Int32)] {
        try cpuOf.map { kv in
            guard let eq = kv.firstIndex(of: "="), let pid = Int32(kv[kv.index(after: eq)...]), pid > 0 else {
                throw ValidationError("--cpu-of takes name=pid, not '\(kv)'")
            }
            return (String(kv[..<eq]), pid)
        }
    }

    struct Outgoing {
        var id: String?
        var key: [UInt8]?
        var value: [UInt8]
        var label: Int?
    }

    func kafkaProperties() throws -> KafkaProperties {
        var p: KafkaProperties = ["bootstrap.servers": brokers, "client.id": "vigil-produce"]
        for kv in properties {
            guard let eq = kv.firstIndex(of: "=") else { throw ValidationError("--property takes name=value") }
            p[String(kv[..<eq])] = String(kv[kv.index(after: eq)...])
        }
        return p
    }

    func load() throws -> [Outgoing] {
        var messages = try source()
        if corruptEvery > 0 {
            for i in stride(from: corruptEvery - 1, to: messages.count, by: corruptEvery) {
                messages[i] = Outgoing(id: nil, key: messages[i].key, value: Array(messages[i].value.prefix(messages[i].value.count / 2)), label: nil)
            }
        }
        return messages
    }

    func source() throws -> [Outgoing] {
        guard let field = TransactionField(rawValue: key) else { throw ValidationError("--key: unknown field '\(key)'") }
        func outgoing(_ tx: Transaction, _ text: String) -> Outgoing {
            Outgoing(id: tx.id, key: tx.string(field).map { Array($0.utf8) }, value: Array(text.utf8), label: tx.label.map(Int.init))
        }
        if let simulate {
            var options = Simulator.Options(transactions: simulate + warmup, days: days, seed: seed)
            options.start = Int64(Date().timeIntervalSince1970 * 1000) - Int64(days) * 86_400_000
            return Simulator(options: options).generate().map { outgoing($0, Simulator.json($0)) }
        }
        guard let text = try? String(contentsOfFile: data!, encoding: .utf8) else { throw ValidationError("cannot read \(data!)") }
        let decoder = TransactionDecoder()
        return text.split(separator: "\n", omittingEmptySubsequences: true).map { line in
            if let tx = try? decoder.decode(String(line)) { return outgoing(tx, String(line)) }
            return Outgoing(id: nil, key: nil, value: Array(line.utf8), label: nil)
        }
    }

    func run() throws {
        var messages = try load()
        let warm = Array(messages.prefix(warmup))
        messages.removeFirst(warm.count)
        let props = try kafkaProperties()
        // A payment service's producer batches for a few milliseconds (librdkafka's own default is
        // 5 ms); Vigil's 1 ms suits its verdicts, not a client sending one message at a time.
        var producerProps = props
        if producerProps["linger.ms"] == nil, producerProps["queue.buffering.max.ms"] == nil { producerProps["linger.ms"] = "5" }
        let producer = try KafkaProducer(properties: producerProps)
        let partitions = try producer.prepare(topics: [topic] + (labelsTopic.map { [$0] } ?? []), timeout: .seconds(10))
        let development = DevBroker.isDevelopmentCluster(id: producer.clusterID(timeout: .seconds(5)))
        var retention = RetentionWarning(partitions: partitions[topic] ?? 1, development: development)
        let tracker = try awaitVerdicts.map { try VerdictTracker(properties: props, topic: $0) }
        if let tracker {
            tracker.expect(messages.count + warm.count)
            stderr("produce: waiting to join the verdicts topic…")
            try tracker.waitForAssignment(timeout: .seconds(30))
            // librdkafka starts fetching a newly assigned partition only after its offset query
            // (a 100 ms timer, then a round trip): verdicts of the first ~150 ms would otherwise
            // be counted late by the time it took this consumer to start.
            Thread.sleep(forTimeInterval: 0.3)
        }
        let clock = ContinuousClock()
        if !warm.isEmpty {
            stderr("produce: warming up with \(warm.count) messages")
            let warmStart = clock.now
            for (i, m) in warm.enumerated() {
                if rate > 0 {
                    let due = warmStart + .nanoseconds(Int64(Double(i) / rate * 1e9))
                    while clock.now < due { _ = producer.poll(timeout: .milliseconds(1)) }
                }
                try producer.send(OutgoingMessage(topic: topic, key: m.key, value: m.value), token: 1)
            }
            _ = producer.flush(timeout: .seconds(30))
            _ = producer.poll()
            Thread.sleep(forTimeInterval: 2)  // let the daemon drain them
        }
        let watched = try watchedProcesses()
        let cpuBefore = watched.map { ProcessCPU.sample(pid: $0.pid) }
        let start = clock.now
        let startWall = Int64(Date().timeIntervalSince1970 * 1000)
        tracker?.start(since: startWall - 1000)
        var lastReport = start
        var sentAtLastReport = 0
        var acked = 0
        var failed = 0
        func serve(_ timeout: Duration = .zero) {
            for d in producer.poll(timeout: timeout) { if d.error == nil { acked += 1 } else { failed += 1 } }
        }
        for (i, m) in messages.enumerated() {
            if rate > 0 {
                let due = start + .nanoseconds(Int64(Double(i) / rate * 1e9))
                if clock.now < due {
                    serve()
                    let wait = clock.now.duration(to: due)
                    if wait > .microseconds(50) { usleep(UInt32(wait.components.attoseconds / 1_000_000_000_000) + UInt32(wait.components.seconds * 1_000_000)) }
                }
            }
            tracker?.sent(m.id)
            try producer.send(OutgoingMessage(topic: topic, key: m.key, value: m.value), token: 1)
            retention.sent(key: m.key?.count ?? 0, value: m.value.count)
            if let labelsTopic, i >= labelLag, let id = messages[i - labelLag].id, let label = messages[i - labelLag].label {
                try producer.send(OutgoingMessage(topic: labelsTopic, key: Array(id.utf8), value: Array("{\"id\":\"\(id)\",\"label\":\(label)}".utf8)), token: 2)
            }
            if i & 255 == 0 { serve() }
            if clock.now - lastReport >= .seconds(1) {
                let seconds = (clock.now - lastReport).seconds
                report(sent: i + 1, rate: Double(i + 1 - sentAtLastReport) / seconds, tracker: tracker)
                lastReport = clock.now
                sentAtLastReport = i + 1
            }
        }
        _ = producer.flush(timeout: .seconds(30))
        serve()
        let sendSeconds = (clock.now - start).seconds
        if let tracker {
            let deadline = clock.now + .seconds(timeout)
            while tracker.missing > 0, clock.now < deadline {
                Thread.sleep(forTimeInterval: 0.01)
                if clock.now - lastReport >= .seconds(1) {
                    report(sent: messages.count, rate: 0, tracker: tracker)
                    lastReport = clock.now
                }
            }
            tracker.stop()
        }
        // The run's window: the watched processes' CPU from the first message to the last verdict.
        let cpu = zip(watched, cpuBefore).compactMap { w, before -> (name: String, used: ProcessCPU)? in
            guard let before, let after = ProcessCPU.sample(pid: w.pid) else { return nil }
            return (w.name, after - before)
        }
        let verdictSeconds = tracker?.snapshot().lastVerdict.map { (start.duration(to: $0)).seconds }
        let summary = Summary(sent: messages.count, corrupt: messages.count { $0.id == nil }, sendSeconds: sendSeconds, verdictSeconds: verdictSeconds, targetRate: rate, tracker: tracker?.snapshot(), cpu: cpu)
        print(summary.text)
        if let path = summaryJSON {
            try openOutput(path).write(summary.json, to: path)
        }
        if failed > 0 { throw ValidationError("\(failed) messages were not delivered") }
        if let t = tracker?.snapshot(), t.missing > 0 {
            if retention.exceeded {
                stderr("produce: the missing verdicts are likely transactions the development broker deleted before vigild read them (it keeps ~5 MiB per partition; this run sent \(retention.perPartitionMiB) MiB per partition)")
            }
            throw ExitCode(3)
        }
    }

    /// Warns when a run sends more to the development broker than it keeps: librdkafka's mock
    /// cluster deletes a partition's oldest messages past ~5 MiB whether or not anyone read them,
    /// so a run that outpaces its consumer would report verdicts "missing" that Vigil never saw.
    struct RetentionWarning {
        let partitions: Int
        let development: Bool
        var bytes = 0
        var warned = false
        /// Record overhead per message in a batch (headers, varints, timestamps), roughly.
        static let overhead = 70

        var perPartition: Int { bytes / max(partitions, 1) }
        var perPartitionMiB: String { String(format: "%.1f", Double(perPartition) / 1_048_576) }
        var exceeded: Bool { development && perPartition > DevBroker.partitionBytes }

        mutating func sent(key: Int, value: Int) {
            guard development else { return }
            bytes += key + value + Self.overhead
            if !warned, perPartition > DevBroker.partitionBytes * 4 / 5 {
                warned = true
                stderr("produce: warning: \(perPartitionMiB) MiB per partition sent to the development broker, which keeps ~5 MiB per partition and then deletes the oldest messages, read or not; if vigild falls behind, those transactions are lost to it (use fewer messages, more partitions or a real broker)")
            }
        }
    }

    func report(sent: Int, rate: Double, tracker: VerdictTracker?) {
        var line = "sent \(sent)"
        if rate > 0 { line += "  \(Int(rate)) tx/s" }
        if let t = tracker?.takeInterval() {
            line += "  verdicts \(t.received)"
            if !t.latencies.isEmpty {
                line += "  latency ms p50 \(Self.ms(t.percentile(0.5))) p99 \(Self.ms(t.percentile(0.99)))"
            }
            line += "  " + Action.allCases.map { "\($0.rawValue) \(t.mix[$0] ?? 0)" }.joined(separator: " ")
            if t.degraded > 0 { line += "  degraded \(t.degraded)" }
        }
        stderr(line)
    }

    static func ms(_ ns: Int64) -> String {
        let v = Double(ns) / 1e6
        return v < 10 ? String((v * 100).rounded() / 100) : String(Int(v.rounded()))
    }
}


/// Follows the verdicts topic: latency per transaction id, verdict mix, duplicates and whether a
/// duplicate differs from the first verdict (it must not).
final class VerdictTracker: @unchecked Sendable {
    struct Stats {
        var received = 0
        var latencies: [Int64] = []
        /// From the transaction sent to its verdict produced (the verdict's Kafka timestamp, in
        /// whole milliseconds): the rest of ``latencies`` is the verdict's way back (vigild's
        /// linger, the broker, this driver's own fetch).
        var toProduced: [Int64] = []
        var mix: [Action: Int] = [:]
        var degraded = 0

        mutating func add(latency ns: Int64, toProduced produced: Int64?, action: Action, degraded: Bool) {
            received += 1
            latencies.append(ns)
            if let produced { toProduced.append(produced) }
            mix[action, default: 0] += 1
            if degraded { self.degraded += 1 }
        }

        func percentile(_ p: Double) -> Int64 { Self.percentile(p, of: latencies) }

        static func percentile(_ p: Double, of values: [Int64]) -> Int64 {
            guard !values.isEmpty else { return 0 }
            let s = values.sorted()
            return s[min(s.count - 1, Int(Double(s.count) * p))]
        }
    }

    struct Snapshot {
        var expected: Int
        var unique: Int
        var duplicates: Int
        var differing: Int
        var unexpected: Int
        var missing: Int { expected - unique }
        var total: Stats
        var lastVerdict: ContinuousClock.Instant?
        /// p99 latency of the verdicts received in each minute of the run.
        var p99ByMinute: [Int64]
    }

    struct State {
        /// When each transaction was sent, and the wall clock then (ms) to compare with the
        /// verdict's Kafka timestamp.
        var sentAt: [String: (at: ContinuousClock.Instant, wallMs: Int64)] = [:]
        /// The first verdict of each transaction, as a hash of everything but its latency.
        var first: [String: Int] = [:]
        var duplicates = 0
        var differing = 0
        var unexpected = 0
        var interval = Stats()
        var total = Stats()
        var lastVerdict: ContinuousClock.Instant?
        var startedAt: ContinuousClock.Instant?
        /// Latencies by the minute of the run they arrived in.
        var byMinute: [[Int64]] = []
    }

    final class Flag: Sendable {
        let value = Atomic<Bool>(false)
    }

    let consumer: KafkaConsumer
    let assigned = Flag()
    let stopping = Atomic<Bool>(false)
    let state = Mutex(State())
    var thread: Thread?
    var since: Int64 = 0

    init(properties: KafkaProperties, topic: String) throws {
        var p = properties
        p["group.id"] = "vigil-produce-\(getpid())-\(Int(Date().timeIntervalSince1970))"
        p["auto.offset.reset"] = "earliest"
        if p["fetch.wait.max.ms"] == nil { p["fetch.wait.max.ms"] = "5" }  // see the daemon's consumer
        let assigned = assigned
        consumer = try KafkaConsumer(properties: p, topics: [topic], onRebalance: {
            if case .assigned = $0 { assigned.value.store(true, ordering: .releasing) }
        })
        // Drive the join from a polling thread.
        let t = Thread { [self] in loop() }
        thread = t
        t.start()
    }

    func waitForAssignment(timeout: Duration) throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while !assigned.value.load(ordering: .acquiring) {
            guard clock.now < deadline else { throw ValidationError("verdicts consumer did not join its group") }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// Makes room for `count` transactions up front: growing these tables by rehashing a
    /// million entries under the lock stalls the sender and the verdict reader alike.
    func expect(_ count: Int) {
        state.withLock { s in
            s.sentAt.reserveCapacity(count)
            s.first.reserveCapacity(count)
            s.total.latencies.reserveCapacity(count)
            s.total.toProduced.reserveCapacity(count)
        }
    }

    func start(since: Int64) {
        state.withLock { $0.startedAt = .now }
        self.since = since
    }

    func sent(_ id: String?) {
        guard let id else { return }
        let now = ContinuousClock.now, wall = Int64(Date().timeIntervalSince1970 * 1000)
        state.withLock { $0.sentAt[id] = (now, wall) }
    }

    private func loop() {
        while !stopping.load(ordering: .acquiring) {
            let messages = consumer.poll(max: 1000, timeout: .milliseconds(100))
            let now = ContinuousClock.now
            guard !messages.isEmpty, since > 0 else { continue }
            state.withLock { s in
                for m in messages where (m.timestamp ?? .max) >= since {
                    let id = String(decoding: m.key ?? [], as: UTF8.self)
                    guard let sentAt = s.sentAt[id] else { s.unexpected += 1; continue }
                    let text = String(decoding: m.value, as: UTF8.self)
                    // Verdicts are equal in everything but latency, which is the last field.
                    let decision = text[..<(text.range(of: ",\"latency_us\"")?.lowerBound ?? text.endIndex)]
                    if let first = s.first[id] {
                        s.duplicates += 1
                        if first != decision.hashValue { s.differing += 1 }
                        continue
                    }
                    s.first[id] = decision.hashValue
                    s.lastVerdict = now
                    let latency = sentAt.at.duration(to: now)
                    let produced = m.timestamp.map { max(0, $0 - sentAt.wallMs) * 1_000_000 }
                    let ns = latency.components.seconds * 1_000_000_000 + latency.components.attoseconds / 1_000_000_000
                    let action = Action.allCases.first { decision.contains("\"action\":\"\($0.rawValue)\"") } ?? .review
                    let degraded = decision.contains("\"degraded\":true")
                    // In place: a copy of `total` per verdict made the driver quadratic in the run's length.
                    s.interval.add(latency: ns, toProduced: produced, action: action, degraded: degraded)
                    if let started = s.startedAt {
                        let minute = max(0, Int(started.duration(to: now).components.seconds / 60))
                        while s.byMinute.count <= minute { s.byMinute.append([]) }
                        s.byMinute[minute].append(ns)
                    }
                    s.total.add(latency: ns, toProduced: produced, action: action, degraded: degraded)
                }
            }
        }
    }

    var missing: Int { state.withLock { $0.sentAt.count - $0.first.count } }

    func takeInterval() -> Stats {
        state.withLock { s in
            defer { s.interval = Stats() }
            return s.interval
        }
    }

    func snapshot() -> Snapshot {
        state.withLock { s in
            Snapshot(expected: s.sentAt.count, unique: s.first.count, duplicates: s.duplicates, differing: s.differing,
                     unexpected: s.unexpected, total: s.total, lastVerdict: s.lastVerdict,
                     p99ByMinute: s.byMinute.map { Stats(latencies: $0).percentile(0.99) })
        }
    }

    func stop() {
        stopping.store(true, ordering: .releasing)
        while thread?.isFinished == false { Thread.sleep(forTimeInterval: 0.01) }
        consumer.close()
    }
}

struct Summary {
    let sent: Int
    /// Messages sent that are not transactions (expected in the dead-letter topic).
    let corrupt: Int
    let sendSeconds: Double
    /// From the first message sent to the last verdict received.
    let verdictSeconds: Double?
    let targetRate: Double
    let tracker: VerdictTracker.Snapshot?
    /// CPU of the `--cpu-of` processes over the run.
    var cpu: [(name: String, used: ProcessCPU)] = []

    var text: String {
        var s = "produced \(sent) in \(String(format: "%.1f", sendSeconds)) s (\(Int(Double(sent) / max(sendSeconds, 1e-9))) msg/s"
        s += targetRate > 0 ? ", target \(Int(targetRate))/s)" : ", unthrottled)"
        if corrupt > 0 { s += "; \(corrupt) of them malformed on purpose (dead-letter topic)" }
        if let t = tracker {
            s += "\nverdicts: \(t.unique) of \(t.expected) transactions (missing \(t.missing)), duplicates \(t.duplicates) (differing \(t.differing))"
            if let v = verdictSeconds { s += "; last verdict after \(String(format: "%.1f", v)) s (\(Int(Double(t.unique) / max(v, 1e-9))) verdicts/s)" }
            s += "\nproduce-to-verdict latency ms: p50 \(Produce.ms(t.total.percentile(0.5)))  p99 \(Produce.ms(t.total.percentile(0.99)))  p99.9 \(Produce.ms(t.total.percentile(0.999)))  max \(Produce.ms(t.total.latencies.max() ?? 0))"
            if !t.total.toProduced.isEmpty {
                s += "\n  of which sent-to-verdict-produced (the verdict's Kafka timestamp, whole ms): p50 \(Produce.ms(VerdictTracker.Stats.percentile(0.5, of: t.total.toProduced)))  p99 \(Produce.ms(VerdictTracker.Stats.percentile(0.99, of: t.total.toProduced)))"
            }
            s += "\nverdict mix: " + Action.allCases.map { a in
                let n = t.total.mix[a] ?? 0
                return "\(a.rawValue) \(n) (\(String(format: "%.2f", 100 * Double(n) / Double(max(t.unique, 1))))%)"
            }.joined(separator: ", ")
            s += "\ndegraded: \(t.total.degraded)"
        }
        for (name, used) in cpu {
            s += String(format: "\nCPU of %@ from the first message to the last verdict: %.1f µs per message (librdkafka's threads %.1f)",
                        name, used.seconds * 1e6 / Double(max(sent, 1)), used.librdkafkaSeconds * 1e6 / Double(max(sent, 1)))
        }
        return s
    }

    var json: String {
        var w = JSONWriter()
        w.object { w in
            w.field("sent", sent)
            w.field("malformed", corrupt)
            w.field("send_seconds", sendSeconds)
            w.field("target_rate", targetRate)
            w.field("achieved_rate", Double(sent) / max(sendSeconds, 1e-9))
            if let t = tracker {
                w.field("verdict_seconds", verdictSeconds ?? 0)
                w.field("verdict_rate", Double(t.unique) / max(verdictSeconds ?? 0, 1e-9))
                w.field("expected", t.expected)
                w.field("verdicts", t.unique)
                w.field("missing", t.missing)
                w.field("duplicates", t.duplicates)
                w.field("differing", t.differing)
                w.field("degraded", t.total.degraded)
                w.field("p50_ms", Double(t.total.percentile(0.5)) / 1e6)
                w.field("p99_ms", Double(t.total.percentile(0.99)) / 1e6)
                w.field("p999_ms", Double(t.total.percentile(0.999)) / 1e6)
                w.field("produced_p50_ms", Double(VerdictTracker.Stats.percentile(0.5, of: t.total.toProduced)) / 1e6)
                w.field("produced_p99_ms", Double(VerdictTracker.Stats.percentile(0.99, of: t.total.toProduced)) / 1e6)
                w.key("p99_ms_by_minute")
                w.array { w in for p in t.p99ByMinute { w.element(Double(p) / 1e6) } }
                w.key("mix")
                w.object { w in for a in Action.allCases { w.field(a.rawValue, t.total.mix[a] ?? 0) } }
            }
            if !cpu.isEmpty {
                // CPU seconds per watched process over the run (first message to last verdict).
                w.key("cpu")
                w.object { w in
                    for (name, used) in cpu {
                        w.key(name)
                        w.object { w in
                            w.field("seconds", used.seconds)
                            w.field("librdkafka_seconds", used.librdkafkaSeconds)
                        }
                    }
                }
            }
        }
        return w.text + "\n"
    }
}
