@_exported import VigilCore
@_exported import VigilDecision
@_exported import VigilFeatures
@_exported import VigilModels
@_exported import VigilRules
import Logging
import Synchronization

/// What to do when the velocity store fails (down, slow, breaker open).
public enum DegradationPolicy: String, Sendable, Hashable, CaseIterable {
    /// Score with the features that need no store (store features missing), rules and model.
    case scoreWithAvailable = "score"
    /// Send every transaction of the batch to `review`.
    case failClosed = "review"
}

/// How a ``Scorer`` is put together. Paths are read at init and on ``Scorer/reload(_:)``.
public struct ScorerConfiguration: Sendable {
    /// Model bundle directory (`manifest.json`, members, `features.yaml`).
    public var modelDirectory: String
    /// Feature spec; default: the bundle's own. Must produce the bundle's schema.
    public var featureSpecPath: String?
    /// Rule file; default: no rules.
    public var rulesPath: String?
    /// Decision costs; default: ``CostMatrix/default``.
    public var costsPath: String?
    /// Keys entity values before they reach the store. Default: the insecure development key —
    /// the daemon refuses to start with it unless told to.
    public var hasher: KeyedHasher = .insecureDevelopmentKey
    /// Default: ``DegradationPolicy/scoreWithAvailable``.
    public var degradation: DegradationPolicy = .scoreWithAvailable
    /// How many top features to name as reasons on non-approve verdicts. Default: 3.
    public var explainTop: Int = 3
    /// XGBoost threads per call. Default: 1 (batches are the parallelism).
    public var modelThreads: Int = 1
    /// Which evaluator scores the ensemble. Default: ``Ensemble/Evaluator/auto`` (native when the
    /// bundle loads into it, the XGBoost C API otherwise).
    public var evaluator: Ensemble.Evaluator = .auto
    /// Time a member may take on a batch before it is dropped from that batch (degraded verdicts
    /// instead of a late answer). Default: nil, no limit.
    public var memberBudget: Duration?
    /// Challenger bundles scored in shadow beside the champion (``Scorer/shadow(_:decided:)``).
    /// Each must have the champion's feature schema.
    public var challengers: [String] = []
    /// Time a challenger's member may take on a batch; over it, the challenger skips the batch.
    public var challengerBudget: Duration?

    public init(modelDirectory: String, featureSpecPath: String? = nil, rulesPath: String? = nil, costsPath: String? = nil) {
        self.modelDirectory = modelDirectory
        self.featureSpecPath = featureSpecPath
        self.rulesPath = rulesPath
        self.costsPath = costsPath
    }
}

/// The public pipeline: features → rules → ensemble → decision, one batch at a time.
///
/// One code path for the daemon, embedded use and backtests. Thread-safe; ``reload(_:)`` swaps
/// rules, model and costs atomically between batches, and a failed reload keeps what runs.
///
/// ```swift
/// let scorer = try Scorer(configuration: .init(modelDirectory: "models/default"))
/// let verdicts = scorer.score(batch)
/// ```
public final class Scorer: Sendable {
    /// What can be hot-reloaded, swapped as one.
    struct Components: Sendable {
        var ensemble: Ensemble
        var challengers: [Ensemble]
        var rules: RuleSet
        var decider: Decider
        var configuration: ScorerConfiguration
    }

    public let engine: FeatureEngine
    public let store: any VelocityStore
    let components: Mutex<Components>
    let logger: Logger

    /// - Parameters:
    ///   - store: where velocity windows live; default: a new ``InMemoryVelocityStore``. A store
    ///     that fails to open (a damaged journal) fails the init with its error.
    ///   - logger: the library logs through it; it never bootstraps logging itself.
    public init(
        configuration: ScorerConfiguration, store: ((FeaturePlan) throws(ConfigurationError) -> any VelocityStore)? = nil,
        logger: Logger = Logger(label: "vigil.scorer")
    ) throws(ConfigurationError) {
        let specPath = configuration.featureSpecPath ?? (configuration.modelDirectory + "/features.yaml")
        let plan = try FeaturePlan(spec: FeatureSpec.load(path: specPath))
        engine = FeatureEngine(plan: plan, hasher: configuration.hasher)
        self.store = try store?(plan) ?? InMemoryVelocityStore(plan: plan)
        self.logger = logger
        components = Mutex(try Scorer.load(configuration, schema: plan.schema))
    }

    static func load(_ c: ScorerConfiguration, schema: FeatureSchema) throws(ConfigurationError) -> Components {
        let ensemble = try Ensemble(
            directory: c.modelDirectory, expecting: FeatureSchemaDescription(names: schema.names, hash: schema.hash),
            threads: c.modelThreads, evaluator: c.evaluator)
        var challengers: [Ensemble] = []
        for directory in c.challengers {
            // A schema mismatch names the challenger's manifest and the differing features.
            let challenger = try Ensemble(directory: directory, expecting: ensemble.schema, threads: c.modelThreads, evaluator: c.evaluator)
            guard challenger.version != ensemble.version, !challengers.contains(where: { $0.version == challenger.version }) else {
                throw ConfigurationError(file: directory + "/manifest.json", line: nil,
                                         message: "challenger \(challenger.version) has the version of a model already loaded; give it its own")
            }
            challengers.append(challenger)
        }
        let rules = try c.rulesPath.map { (p) throws(ConfigurationError) in try RuleSet.load(path: p, schema: schema) } ?? .empty(schema: schema)
        let costs = try c.costsPath.map { (p) throws(ConfigurationError) in try CostMatrix.load(path: p) } ?? .default
        return Components(ensemble: ensemble, challengers: challengers, rules: rules, decider: Decider(costs: costs), configuration: c)
    }

    /// Loads new rules, model and costs, and swaps them in between batches.
    /// - Throws: the load error; what was running keeps running.
    public func reload(_ configuration: ScorerConfiguration) throws(ConfigurationError) {
        let next = try Scorer.load(configuration, schema: engine.schema)
        components.withLock { $0 = next }
        logger.info("reloaded", metadata: ["model": "\(next.ensemble.version)", "rules": "\(next.rules.version)", "costs": "\(next.decider.costs.version)",
                                           "challengers": "\(next.challengers.map(\.version))"])
    }

    /// Versions currently in use: (model, rules, costs).
    public var versions: (model: String, rules: String, costs: String) {
        components.withLock { ($0.ensemble.version, $0.rules.version, $0.decider.costs.version) }
    }

    /// The champion's manifest and the challengers' versions currently loaded.
    public var models: (champion: Manifest, challengers: [String]) {
        components.withLock { ($0.ensemble.manifest, $0.challengers.map(\.version)) }
    }

    public var configuration: ScorerConfiguration { components.withLock { $0.configuration } }

    /// The decision costs currently in use.
    public var costs: CostMatrix { components.withLock { $0.decider.costs } }

    /// Scores one transaction (a batch of one).
    public func score(_ transaction: Transaction) -> Verdict { score([transaction])[0] }

    /// Scores a batch in order: the features of each transaction see the ones before it.
    public func score(_ batch: [Transaction]) -> [Verdict] {
        evaluate(batch).verdicts
    }

    /// A scored batch with its feature matrix (for training sets, explanations, `vigil features`).
    public struct Result: Sendable {
        public var verdicts: [Verdict]
        public var features: FeatureMatrix
        public var storeError: StoreError?
        /// What the rules decided per row, for challengers to decide with the same rules.
        var ruleOutcomes: [RuleOutcome] = []
        /// The components the batch was decided with.
        var components: Components?
    }

    /// Scores a batch and returns the feature matrix with the verdicts.
    public func evaluate(_ batch: [Transaction]) -> Result {
        decide(batch, features: features(batch))
    }

    /// A batch's features: the first stage of ``evaluate(_:)``, the one that reads and writes
    /// the velocity store. Batches must go through it in stream order; ``decide(_:features:)``
    /// may then run on another thread while the next batch's features are computed.
    public struct Features: Sendable {
        public var matrix: FeatureMatrix
        public var storeError: StoreError?
        /// Microseconds the stage took.
        var micros: Double
    }

    /// The first stage of ``evaluate(_:)``: features, recorded in the store.
    public func features(_ batch: [Transaction]) -> Features {
        let start = ContinuousClock.now
        var storeError: StoreError?
        var matrix: FeatureMatrix
        do {
            matrix = try engine.features(batch, store: store)
        } catch {
            storeError = error
            logger.warning("velocity store failed; scoring degraded", metadata: ["error": "\(error)", "policy": "\(configuration.degradation.rawValue)"])
            matrix = FeatureMatrix(schema: engine.schema, rows: batch.count)
            engine.transactionFeatures(batch, into: &matrix)
        }
        return Features(matrix: matrix, storeError: storeError, micros: (ContinuousClock.now - start).microseconds)
    }

    /// The second stage of ``evaluate(_:)``: rules, model, decisions and reasons over the batch's
    /// ``features(_:)``. Touches no store; safe on any thread.
    public func decide(_ batch: [Transaction], features: Features) -> Result {
        precondition(features.matrix.rows == batch.count, "decide: features of \(features.matrix.rows) rows for a batch of \(batch.count)")
        let c = components.withLock { $0 }
        let clock = ContinuousClock()
        var latency = StageLatency(features: features.micros)
        var start = clock.now
        func lap() -> Double {
            let now = clock.now
            defer { start = now }
            return (now - start).microseconds
        }
        let matrix = features.matrix, storeError = features.storeError

        let outcomes = c.rules.evaluate(batch, features: matrix)
        latency.rules = lap()

        let scores = c.ensemble.score(matrix.values, rows: batch.count, budget: c.configuration.memberBudget)
        if scores.degraded {
            logger.warning("ensemble member failed; dropped for this batch", metadata: ["failures": "\(scores.failures.map(\.member))"])
        }
        latency.model = lap()

        var decisions: [Decision] = []
        decisions.reserveCapacity(batch.count)
        // Transactions are read in place, through the buffer: binding one to a local, or passing
        // `batch[i]` (even to read one field), copies its strings.
        return batch.withUnsafeBufferPointer { batch in
            for i in batch.indices {
                var d = c.decider.decide(probability: scores.probabilities[i], transaction: batch.baseAddress! + i, forced: outcomes[i].forced, floor: outcomes[i].floor)
                if storeError != nil, c.configuration.degradation == .failClosed, outcomes[i].forced == nil {
                    d.action = max(d.action, .review)
                }
                decisions.append(d)
            }
            // Explanations only where someone will look: rows that are not approved.
            let explain = c.configuration.explainTop > 0 ? batch.indices.filter { decisions[$0].action != .approve } : []
            let contributions = c.ensemble.contributions(matrix.values, rows: explain)
            latency.decide = lap()

            let names = engine.schema.names
            let memberNames = c.ensemble.memberNames
            var verdicts: [Verdict] = []
            verdicts.reserveCapacity(batch.count)
            var explained = 0
            for i in batch.indices {
                var reasons = outcomes[i].hits.map { ReasonCode(kind: .rule, code: $0.id, detail: $0.reason) }
                if explained < explain.count, explain[explained] == i {
                    let top = contributions[explained].enumerated().filter { $0.element > 0 }
                        .sorted { $0.element > $1.element || ($0.element == $1.element && $0.offset < $1.offset) }
                        .prefix(c.configuration.explainTop)
                    reasons += top.map { ReasonCode(kind: .feature, code: names[$0.offset], value: ($0.element * 1e6).rounded() / 1e6) }
                    explained += 1
                }
                if let storeError { reasons.append(ReasonCode(kind: .degraded, code: "store_\(storeError.code.rawValue)")) }
                for f in scores.failures { reasons.append(ReasonCode(kind: .degraded, code: "member_failed", detail: f.member)) }
                verdicts.append(Verdict(
                    transactionID: batch[i].id, action: decisions[i].action, probability: scores.probabilities[i],
                    memberScores: MemberScores(names: memberNames) { scores.memberProbabilities[$0][i] },
                    reasons: reasons, tags: outcomes[i].hits.filter { $0.action == .tag }.map(\.id),
                    modelVersion: c.ensemble.version, rulesVersion: c.rules.version,
                    degraded: storeError != nil || scores.degraded, latency: latency, timestamp: batch[i].timestamp))
            }
            return Result(verdicts: verdicts, features: matrix, storeError: storeError, ruleOutcomes: outcomes, components: c)
        }
    }

    /// Applies fraud labels (chargebacks, review outcomes): they feed the entity risk features of
    /// later transactions. Returns how many matched a recorded transaction.
    @discardableResult
    public func apply(labels: [Label]) throws(StoreError) -> Int {
        try store.apply(labels: labels.map { (engine.idHash($0.transactionID), $0.isFraud) })
    }
}

