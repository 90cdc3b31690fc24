import Foundation
import Vigil
import VigilAPI
import VigilKafka
import VigilRedis
import Yams

/// Everything `vigild` needs, from `vigil.yaml` and flags. Every option has a default, so a daemon
/// starts without a file; secrets never come from here (see ``Secrets``).
///
/// The reference, with each default, is `docs/configuration.md`; `config/vigil.yaml` is a
/// commented example that parses to exactly these defaults.
public struct DaemonConfiguration: Sendable, Equatable {
    public struct Kafka: Sendable, Equatable {
        /// `bootstrap.servers`. Default: `localhost:9092`.
        public var brokers = "localhost:9092"
        /// Consumer group id. Default: `vigil`.
        public var group = "vigil"
        public var topics = Topics()
        /// librdkafka properties passed through to both clients (SASL, TLS, timeouts, …); they
        /// override what Vigil sets, except that offsets are always committed by Vigil.
        public var properties: [String: String] = [:]
        /// Most transactions scored as one batch. Default: 512.
        public var batchSize = 512
        /// Batches whose verdicts are not yet acknowledged, at most; past it the daemon stops
        /// fetching (backpressure). Default: 4.
        public var maxInFlight = 4
        /// How long the daemon waits before pausing its partitions when the broker does not
        /// acknowledge (ms). Default: 1000.
        public var pauseAfterMs = 1000
        /// How long a stop may take in all: finishing and acknowledging what is in flight,
        /// committing, leaving the group (ms). Past it the daemon exits anyway, and what it had not
        /// committed is redelivered. Default: 20000.
        public var shutdownTimeoutMs = 20_000
        public init() {}
    }

    public struct Topics: Sendable, Equatable {
        public var transactions = "transactions"
        public var verdicts = "verdicts"
        public var deadLetters = "transactions.dlq"
        public var labels = "labels"
        public init() {}
    }

    public struct Store: Sendable, Equatable {
        /// `memory`, or `redis://[user@]host:port/db` / `unix:///path?db=N`. The password comes
        /// from `VIGIL_REDIS_PASSWORD` or `VIGIL_REDIS_PASSWORD_FILE`. Default: `memory`.
        public var url = "memory"
        /// Key prefix in Redis. Default: `vigil`.
        public var prefix = "vigil"
        public var connectTimeoutMs = 200
        /// A Redis reply slower than this fails the batch's store step (verdicts degrade). Default: 50.
        public var timeoutMs = 50
        /// Memory for the cache of entity windows (Redis store), in MiB. Default: 1024.
        public var cacheMB = 1024
        /// In-memory store only: a directory where the store journals what it records and
        /// rebuilds its state from at start, so a restart loses no history. Default: none (a
        /// restart starts empty).
        public var journal: String?
        /// `fdatasync` the journal after every batch (survives a machine crash). Default: false.
        public var journalSync = false
        public init() {}
    }

    public struct Scoring: Sendable, Equatable {
        /// Model bundle directory. Default: `models/default`.
        public var model = "models/default"
        /// Feature spec; default: the bundle's `features.yaml`.
        public var features: String?
        /// Rule file (its lists are named inside it). Default: none.
        public var rules: String?
        /// Decision costs. Default: the built-in cost matrix.
        public var costs: String?
        /// Per-transaction budget (ms): a model member slower than this on a batch is dropped
        /// and the verdicts are marked degraded. Default: 100.
        public var deadlineMs = 100
        /// When the store fails: `score` (score without velocity features) or `review`
        /// (fail closed). Default: `score`.
        public var degradation = DegradationPolicy.scoreWithAvailable
        /// `auto`, `native` or `capi`. Default: `auto`.
        public var evaluator = Ensemble.Evaluator.auto
        /// Features named as reasons on non-approve verdicts. Default: 3.
        public var explainTop = 3
        /// 2: a batch's decisions (rules, model, reasons, verdict JSON) run on a thread of their
        /// own while the next batch's features are computed; 1: one thread does both. Default: 2
        /// on a machine with two or more cores.
        public var threads = min(2, ProcessInfo.processInfo.activeProcessorCount)
        public init() {}
    }

    public struct Admin: Sendable, Equatable {
        /// Default: `127.0.0.1` (loopback only).
        public var host = "127.0.0.1"
        /// Default: 9464. 0 picks a free port (printed in the log).
        public var port = 9464
        public init() {}
    }

    /// Challenger models scored in shadow beside the champion, and drift monitoring; both run on
    /// a monitoring thread of their own, off the champion's path.
    public struct Shadow: Sendable, Equatable {
        /// Challenger bundle directories. Default: none.
        public var models: [String] = []
        /// Where challengers' decisions go, each beside the champion's. Default: `verdicts.shadow`.
        public var topic = "verdicts.shadow"
        /// A challenger member slower than this on a batch skips the batch (µs). Default: 50000.
        public var budgetUs = 50_000
        /// Batches waiting for the monitoring thread, at most; past it a batch is not monitored
        /// (counted), never waited for. Default: 64.
        public var queueBatches = 64
        /// Window of live traffic that drift is measured over (s). Default: 3600.
        public var driftWindowS = 3600
        /// Half-life of the labelled outcome figures per model (s). Default: 86400.
        public var outcomesHalfLifeS = 86_400
        public init() {}
    }

    public struct Limits: Sendable, Equatable {
        /// Largest transaction message accepted; larger ones are dead-lettered. Default: 65536.
        public var maxMessageBytes = 65536
        public init() {}
    }

    public var kafka = Kafka()
    public var store = Store()
    public var scoring = Scoring()
    public var admin = Admin()
    public var limits = Limits()
    /// The synchronous scoring API; off unless a port is set.
    public var api = APIConfiguration()
    public var shadow = Shadow()

    public init() {}

    public static func load(path: String) throws(ConfigurationError) -> DaemonConfiguration {
        try parse(TextFile.read(path), file: path)
    }

    /// Parses a configuration file; unknown keys and wrong types fail with file and line.
    public static func parse(_ text: String, file: String?) throws(ConfigurationError) -> DaemonConfiguration {
        var c = DaemonConfiguration()
        let root = try YAMLSupport.compose(text, file: file)
        let r = Reader(file: file)
        let top = try r.section(root, "configuration", keys: ["kafka", "store", "scoring", "admin", "limits", "api", "shadow"])
        if let k = top["kafka"] {
            let m = try r.section(k, "kafka", keys: ["brokers", "group", "topics", "properties", "batch_size", "max_in_flight", "pause_after_ms", "shutdown_timeout_ms"])
            try r.string(m["brokers"], "kafka.brokers", into: &c.kafka.brokers)
            try r.string(m["group"], "kafka.group", into: &c.kafka.group)
            try r.int(m["batch_size"], "kafka.batch_size", 1...100_000, into: &c.kafka.batchSize)
            try r.int(m["max_in_flight"], "kafka.max_in_flight", 1...1024, into: &c.kafka.maxInFlight)
            try r.int(m["pause_after_ms"], "kafka.pause_after_ms", 1...3_600_000, into: &c.kafka.pauseAfterMs)
            // Below the service group's own limit (45 s), past which the process is crashed.
            try r.int(m["shutdown_timeout_ms"], "kafka.shutdown_timeout_ms", 100...40_000, into: &c.kafka.shutdownTimeoutMs)
            if let t = m["topics"] {
                let tm = try r.section(t, "kafka.topics", keys: ["transactions", "verdicts", "dead_letters", "labels"])
                try r.string(tm["transactions"], "kafka.topics.transactions", into: &c.kafka.topics.transactions)
                try r.string(tm["verdicts"], "kafka.topics.verdicts", into: &c.kafka.topics.verdicts)
                try r.string(tm["dead_letters"], "kafka.topics.dead_letters", into: &c.kafka.topics.deadLetters)
                try r.string(tm["labels"], "kafka.topics.labels", into: &c.kafka.topics.labels)
            }
            if let p = m["properties"] {
                guard let pm = p.mapping else { throw r.fail(p, "kafka.properties maps librdkafka property names to values") }
                for (k, v) in pm {
                    guard let key = k.string, let value = v.string else { throw r.fail(k, "kafka.properties: each value is a string") }
                    c.kafka.properties[key] = value
                }
            }
        }
        if let s = top["store"] {
            let m = try r.section(s, "store", keys: ["url", "prefix", "connect_timeout_ms", "timeout_ms", "cache_mb", "journal", "journal_sync"])
            try r.string(m["url"], "store.url", into: &c.store.url)
            try r.string(m["prefix"], "store.prefix", into: &c.store.prefix)
            try r.int(m["connect_timeout_ms"], "store.connect_timeout_ms", 1...60_000, into: &c.store.connectTimeoutMs)
            try r.int(m["timeout_ms"], "store.timeout_ms", 1...60_000, into: &c.store.timeoutMs)
            try r.int(m["cache_mb"], "store.cache_mb", 1...1_048_576, into: &c.store.cacheMB)
            try r.optionalString(m["journal"], "store.journal", into: &c.store.journal)
            try r.bool(m["journal_sync"], "store.journal_sync", into: &c.store.journalSync)
            if c.store.journal != nil, c.store.url != "memory" {
                throw r.fail(m["journal"], "store.journal is for the in-memory store (url: memory); Redis keeps its own state")
            }
            if c.store.url != "memory", (try? RedisURL(c.store.url))?.password != nil {
                throw r.fail(m["url"], "store.url must not carry a password: set VIGIL_REDIS_PASSWORD or VIGIL_REDIS_PASSWORD_FILE")
            }
        }
        if let s = top["scoring"] {
            let m = try r.section(s, "scoring", keys: ["model", "features", "rules", "costs", "deadline_ms", "degradation", "evaluator", "explain_top", "threads"])
            try r.string(m["model"], "scoring.model", into: &c.scoring.model)
            try r.optionalString(m["features"], "scoring.features", into: &c.scoring.features)
            try r.optionalString(m["rules"], "scoring.rules", into: &c.scoring.rules)
            try r.optionalString(m["costs"], "scoring.costs", into: &c.scoring.costs)
            try r.int(m["deadline_ms"], "scoring.deadline_ms", 1...60_000, into: &c.scoring.deadlineMs)
            try r.int(m["explain_top"], "scoring.explain_top", 0...50, into: &c.scoring.explainTop)
            try r.int(m["threads"], "scoring.threads", 1...2, into: &c.scoring.threads)
            if let d = m["degradation"] {
                guard let v = d.string.flatMap(DegradationPolicy.init(rawValue:)) else { throw r.fail(d, "scoring.degradation is score or review") }
                c.scoring.degradation = v
            }
            if let e = m["evaluator"] {
                guard let v = e.string.flatMap(Ensemble.Evaluator.init(rawValue:)) else { throw r.fail(e, "scoring.evaluator is auto, native or capi") }
                c.scoring.evaluator = v
            }
        }
        if let a = top["admin"] {
            let m = try r.section(a, "admin", keys: ["host", "port"])
            try r.string(m["host"], "admin.host", into: &c.admin.host)
            try r.int(m["port"], "admin.port", 0...65535, into: &c.admin.port)
        }
        if let l = top["limits"] {
            let m = try r.section(l, "limits", keys: ["max_message_bytes"])
            try r.int(m["max_message_bytes"], "limits.max_message_bytes", 256...10_485_760, into: &c.limits.maxMessageBytes)
        }
        if let a = top["api"] {
            let m = try r.section(a, "api", keys: ["host", "http_port", "grpc_port", "max_wait_us", "max_batch", "max_pending", "max_body_bytes", "max_request_transactions"])
            try r.string(m["host"], "api.host", into: &c.api.host)
            var port = -1
            try r.int(m["http_port"], "api.http_port", 0...65535, into: &port)
            if port >= 0 { c.api.httpPort = port }
            port = -1
            try r.int(m["grpc_port"], "api.grpc_port", 0...65535, into: &port)
            if port >= 0 { c.api.grpcPort = port }
            var waitUs = Int(c.api.batching.maxWait.microseconds)
            try r.int(m["max_wait_us"], "api.max_wait_us", 0...10_000_000, into: &waitUs)
            c.api.batching.maxWait = .microseconds(waitUs)
            try r.int(m["max_batch"], "api.max_batch", 1...10_000, into: &c.api.batching.maxBatch)
            try r.int(m["max_pending"], "api.max_pending", 1...1_000_000, into: &c.api.batching.maxPending)
            try r.int(m["max_body_bytes"], "api.max_body_bytes", 1024...104_857_600, into: &c.api.maxBodyBytes)
            try r.int(m["max_request_transactions"], "api.max_request_transactions", 1...100_000, into: &c.api.maxRequestTransactions)
        }
        if let sh = top["shadow"] {
            let m = try r.section(sh, "shadow", keys: ["models", "topic", "budget_us", "queue_batches", "drift_window_s", "outcomes_half_life_s"])
            if let models = m["models"] {
                guard let list = models.sequence else { throw r.fail(models, "shadow.models is a list of bundle directories") }
                c.shadow.models = []
                for n in list {
                    var dir = ""
                    try r.string(n, "shadow.models[]", into: &dir)
                    c.shadow.models.append(dir)
                }
            }
            try r.string(m["topic"], "shadow.topic", into: &c.shadow.topic)
            try r.int(m["budget_us"], "shadow.budget_us", 1...60_000_000, into: &c.shadow.budgetUs)
            try r.int(m["queue_batches"], "shadow.queue_batches", 1...100_000, into: &c.shadow.queueBatches)
            try r.int(m["drift_window_s"], "shadow.drift_window_s", 60...2_592_000, into: &c.shadow.driftWindowS)
            try r.int(m["outcomes_half_life_s"], "shadow.outcomes_half_life_s", 60...31_536_000, into: &c.shadow.outcomesHalfLifeS)
        }
        return c
    }

    /// librdkafka properties for both clients: Vigil's settings, then the pass-through map.
    public var kafkaProperties: KafkaProperties {
        var p: KafkaProperties = ["bootstrap.servers": kafka.brokers, "client.id": "vigild"]
        for (k, v) in kafka.properties { p[k] = v }
        return p
    }

    /// The scorer's configuration; `hasher` from ``Secrets``.
    public func scorerConfiguration(hasher: KeyedHasher) -> ScorerConfiguration {
        var s = ScorerConfiguration(modelDirectory: scoring.model, featureSpecPath: scoring.features,
                                    rulesPath: scoring.rules, costsPath: scoring.costs)
        s.hasher = hasher
        s.degradation = scoring.degradation
        s.evaluator = scoring.evaluator
        s.explainTop = scoring.explainTop
        s.memberBudget = .milliseconds(scoring.deadlineMs)
        s.challengers = shadow.models
        s.challengerBudget = .microseconds(shadow.budgetUs)
        return s
    }
}

/// Reads typed values out of YAML nodes, failing with file and line.
struct Reader {
    let file: String?

    func fail(_ n: Node?, _ message: String) -> ConfigurationError {
        ConfigurationError(file: file, line: n?.mark?.line, message: message)
    }

    func section(_ n: Node, _ name: String, keys: Set<String>) throws(ConfigurationError) -> Node.Mapping {
        guard let m = n.mapping else { throw fail(n, "\(name) must be a mapping") }
        for (k, _) in m where !keys.contains(k.string ?? "") {
            throw fail(k, "unknown key '\(k.string ?? "?")' in \(name) (allowed: \(keys.sorted().joined(separator: ", ")))")
        }
        return m
    }

    func string(_ n: Node?, _ name: String, into value: inout String) throws(ConfigurationError) {
        guard let n else { return }
        guard let s = n.string, n.scalar != nil, !s.isEmpty else { throw fail(n, "\(name) must be a non-empty string") }
        value = s
    }

    func optionalString(_ n: Node?, _ name: String, into value: inout String?) throws(ConfigurationError) {
        guard let n else { return }
        if n.null != nil { value = nil; return }
        var s = ""
        try string(n, name, into: &s)
        value = s
    }

    func bool(_ n: Node?, _ name: String, into value: inout Bool) throws(ConfigurationError) {
        guard let n else { return }
        guard let v = n.bool else { throw fail(n, "\(name) must be true or false") }
        value = v
    }

    func int(_ n: Node?, _ name: String, _ range: ClosedRange<Int>, into value: inout Int) throws(ConfigurationError) {
        guard let n else { return }
        guard let v = n.int, range.contains(v) else { throw fail(n, "\(name) must be an integer in \(range.lowerBound)…\(range.upperBound)") }
        value = v
    }
}
