import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import Vigil
import VigilAPI
import VigilKafka
import VigilRedis

/// Secrets the daemon reads from the environment (or `NAME_FILE`), never from its configuration.
public struct Secrets: Sendable {
    /// Keys card numbers, emails and IPs before they reach Redis or leave the process
    /// (`VIGIL_HASH_SECRET`, at least 16 bytes). Nil: the development key, refused unless allowed.
    public var hashSecret: [UInt8]?
    /// `VIGIL_REDIS_PASSWORD`.
    public var redisPassword: String?
    /// `VIGIL_ADMIN_TOKEN`: mutating admin endpoints need it as a bearer token; without it they
    /// are disabled.
    public var adminToken: String?
    /// `VIGIL_API_TOKEN`: the scoring API needs it as a bearer token; without it the API listens
    /// on loopback only.
    public var apiToken: String?

    public init(hashSecret: [UInt8]? = nil, redisPassword: String? = nil, adminToken: String? = nil, apiToken: String? = nil) {
        self.hashSecret = hashSecret
        self.redisPassword = redisPassword
        self.adminToken = adminToken
        self.apiToken = apiToken
    }

    public static func fromEnvironment() throws(ConfigurationError) -> Secrets {
        Secrets(hashSecret: try Secret.read("VIGIL_HASH_SECRET"), redisPassword: try Secret.string("VIGIL_REDIS_PASSWORD"),
                adminToken: try Secret.string("VIGIL_ADMIN_TOKEN"), apiToken: try Secret.string("VIGIL_API_TOKEN"))
    }
}

/// `vigild`: the pipeline, the admin server and signal handling, run as one service group.
public final class Daemon: Sendable {
    public let configuration: DaemonConfiguration
    public let metrics = DaemonMetrics()
    let scorer: Scorer
    let pipeline: Pipeline
    /// The synchronous scoring API, when a port is configured.
    let api: ScoringAPI?
    let adminToken: String?
    let logger: Logger
    /// Re-reads the configuration (file and flags) for a reload.
    let reread: @Sendable () throws(ConfigurationError) -> DaemonConfiguration

    /// Loads model, rules, costs and store settings; fails with file and line on a bad one.
    public init(
        configuration: DaemonConfiguration, secrets: Secrets, allowDevelopmentHashKey: Bool = false, logger: Logger,
        reread: @escaping @Sendable () throws(ConfigurationError) -> DaemonConfiguration
    ) throws(ConfigurationError) {
        self.configuration = configuration
        self.logger = logger
        self.reread = reread
        adminToken = secrets.adminToken.flatMap { $0.isEmpty ? nil : $0 }
        let hasher: KeyedHasher
        if let s = secrets.hashSecret {
            hasher = try KeyedHasher(secret: s)
        } else if allowDevelopmentHashKey {
            logger.warning("using the development hash key: fine for simulated data, never for real cards (set VIGIL_HASH_SECRET)")
            hasher = .insecureDevelopmentKey
        } else {
            throw ConfigurationError(file: nil, line: nil, message: "no hash secret: set VIGIL_HASH_SECRET or VIGIL_HASH_SECRET_FILE (at least 16 bytes)")
        }
        let store = try Self.storeFactory(configuration.store, password: secrets.redisPassword, hasher: hasher)
        scorer = try Scorer(configuration: configuration.scorerConfiguration(hasher: hasher), store: store,
                            logger: Logger(label: "vigil.scorer"))
        pipeline = Pipeline(configuration: configuration, scorer: scorer, hasher: hasher, metrics: metrics, logger: logger)
        let apiToken = secrets.apiToken.flatMap { $0.isEmpty ? nil : $0 }
        if configuration.api.isEnabled {
            guard apiToken != nil || APIConfiguration.isLoopback(configuration.api.host) else {
                throw ConfigurationError(file: nil, line: nil, message: "api.host \(configuration.api.host) is not loopback: set VIGIL_API_TOKEN (or VIGIL_API_TOKEN_FILE) so callers must authenticate")
            }
            var limits = DecoderLimits()
            limits.maxBytes = configuration.limits.maxMessageBytes
            let scorer = scorer
            api = ScoringAPI(configuration: configuration.api, decoderLimits: limits, token: apiToken,
                             metrics: APIMetrics(registry: metrics.registry), score: { scorer.score($0) })
        } else {
            api = nil
        }
        if let redis = scorer.store as? RedisVelocityStore { Self.checkEviction(redis, logger: logger) }
        let v = scorer.versions
        logger.info("loaded", metadata: ["model": "\(v.model)", "rules": "\(v.rules)", "costs": "\(v.costs)", "store": "\(storeDescription)"])
    }

    /// Says so at start when Redis may evict the store's keys (`docs/operations.md`): windows
    /// would then lose history without any error.
    static func checkEviction(_ redis: RedisVelocityStore, logger: Logger) {
        switch try? redis.evictionCheck() {
        case .evicts(let policy, let limit):
            logger.warning("Redis may evict entity logs: windows would silently lose history; set maxmemory-policy noeviction",
                           metadata: ["maxmemory-policy": "\(policy)", "maxmemory": "\(limit)"])
        case .unknown(let why):
            logger.notice("could not read Redis's maxmemory-policy; it must be noeviction", metadata: ["reply": "\(why)"])
        case .safe, nil:
            break
        }
    }

    static func storeFactory(
        _ s: DaemonConfiguration.Store, password: String?, hasher: KeyedHasher
    ) throws(ConfigurationError) -> ((FeaturePlan) throws(ConfigurationError) -> any VelocityStore)? {
        guard s.url != "memory" else {
            guard let directory = s.journal else { return nil }
            var journal = JournalConfiguration(directory: directory, keyCheck: hasher.check)
            journal.sync = s.journalSync
            return { (plan) throws(ConfigurationError) in try InMemoryVelocityStore(plan: plan, journal: journal) }
        }
        guard s.journal == nil else {
            throw ConfigurationError(file: nil, line: nil, message: "store.journal is for the in-memory store; the store is \(s.url)")
        }
        var url: RedisURL
        do {
            url = try RedisURL(s.url)
        } catch {
            throw ConfigurationError(file: nil, line: nil, message: "store.url: \(error)")
        }
        if let password { url.password = password }
        var c = RedisConfiguration(url: url)
        c.prefix = s.prefix
        c.connectTimeout = .milliseconds(s.connectTimeoutMs)
        c.readTimeout = .milliseconds(s.timeoutMs)
        c.cacheBytes = s.cacheMB << 20
        return { RedisVelocityStore(plan: $0, configuration: c) }
    }

    var storeDescription: String {
        (scorer.store as? RedisVelocityStore).map { "\($0.configuration.url)" } ?? configuration.store.journal.map { "memory, journal \($0)" } ?? "memory"
    }

    /// Reloads rules, lists, model bundle and costs (paths from the re-read configuration). On
    /// failure what runs keeps running and the error is returned.
    @discardableResult
    public func reload() -> Result<(model: String, rules: String, costs: String), ConfigurationError> {
        do {
            let next = try reread()
            var s = next.scorerConfiguration(hasher: scorer.configuration.hasher)
            s.featureSpecPath = scorer.configuration.featureSpecPath  // the plan is fixed for the process's life
            try scorer.reload(s)
            metrics.reloadsOK.increment()
            if next.kafka != configuration.kafka || next.store != configuration.store || next.admin != configuration.admin {
                logger.warning("kafka, store and admin settings changed on disk take effect on restart")
            }
            return .success(scorer.versions)
        } catch {
            metrics.reloadsFailed.increment()
            logger.error("reload failed; keeping what runs", metadata: ["error": "\(error)"])
            return .failure(error)
        }
    }

    public var isReady: Bool { pipeline.isReady }
    public var isHealthy: Bool { pipeline.isHealthy }

    /// Runs until SIGTERM or SIGINT: then stops fetching, finishes the batches in flight, commits
    /// and leaves the group. SIGHUP reloads.
    public func run() async throws {
        let admin = try AdminServer(daemon: self).application()
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: PipelineService(pipeline: pipeline), successTerminationBehavior: .gracefullyShutdownGroup,
                  failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: ReloadOnHangup(daemon: self)),
            .init(service: admin),
        ]
        if let api {
            // Last in, first to shut down: the listeners stop taking requests and answer the
            // ones in flight while the store and the pipeline are still up.
            services.append(.init(service: APIService(api: api, logger: logger), failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        var configuration = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // The pipeline bounds its own stop (`kafka.shutdown_timeout_ms`, at most 40 s: drain,
        // commit, leave the group) and then returns, whatever the broker does; whatever was not
        // committed is redelivered, with the same verdicts. The service group's limits are the
        // backstop past that (it ends the process with a crash report).
        configuration.maximumGracefulShutdownDuration = .seconds(45)
        configuration.maximumCancellationDuration = .seconds(5)
        try await ServiceGroup(configuration: configuration).run()
    }
}

/// Runs the pipeline on a thread of its own; graceful shutdown asks it to drain and commit.
struct PipelineService: Service {
    let pipeline: Pipeline

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
                let thread = Thread {
                    do {
                        try pipeline.run()
                        done.resume()
                    } catch {
                        done.resume(throwing: error)
                    }
                }
                thread.name = "vigil-pipeline"
                thread.stackSize = 8 << 20
                thread.start()
            }
        } onGracefulShutdown: {
            pipeline.stop()
        }
    }
}

/// SIGHUP reloads rules, lists, model and costs.
struct ReloadOnHangup: Service {
    let daemon: Daemon

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            daemon.logger.info("SIGHUP: reloading")
            daemon.reload()
        }
    }
}
