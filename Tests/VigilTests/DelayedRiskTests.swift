import Foundation
import Testing
import Vigil
import VigilCore
import VigilFeatures
import VigilSimulator

/// Risk over windows that end where labels become known: events in [t − W − d, t − d).
@Suite struct DelayedRiskTests {
    static let spec = """
        entities:
          terminal: terminal_id
        risk:
          - entity: terminal
            windows: [1d]
          - entity: terminal
            windows: [1d, 7d]
            delay: 7d
        """
    static let plan = try! FeaturePlan(spec: FeatureSpec.parse(spec))
    static let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
    static let day: Int64 = 86_400_000
    static let base: Int64 = 1_767_225_600_000

    @Test func namesAndLanes() throws {
        #expect(Self.plan.schema.names == [
            "terminal_fraud_rate_1d",
            "terminal_fraud_rate_1d_lag_7d", "terminal_frauds_1d_lag_7d",
            "terminal_fraud_rate_7d_lag_7d", "terminal_frauds_7d_lag_7d",
        ])
        #expect { try FeatureSpec.parse(Self.spec.replacingOccurrences(of: "delay: 7d", with: "delay: soon"), file: "s.yaml") } throws: { e in
            "\(e)".contains("s.yaml:8") && "\(e)".contains("not a duration")
        }
    }

    /// A label that arrives at once (a fast chargeback) must not reach the delayed features
    /// before its event is 7 days old, and must leave them once the event is past the window.
    @Test("a planted label changes the delayed risk only after the delay")
    func plantedLabelOnlyAfterTheDelay() throws {
        let store = InMemoryVelocityStore(plan: Self.plan)
        let fraud = Transaction(id: "f", timestamp: Self.base, amount: 10, terminalID: "T")
        _ = try Self.engine.features([fraud], store: store)
        #expect(try store.apply(labels: [(Self.engine.idHash("f"), true)]) == 1)
        // One probe every 6 hours for 16 days; each probe is itself an (unlabelled) event.
        var seen: [(t: Int64, rate: Float, frauds1d: Float, frauds7d: Float)] = []
        for k in 1...64 {
            let t = Self.base + Int64(k) * Self.day / 4
            let m = try Self.engine.features([Transaction(id: "p\(k)", timestamp: t, amount: 10, terminalID: "T")], store: store)
            seen.append((t, m[0, "terminal_fraud_rate_1d"]!, m[0, "terminal_frauds_1d_lag_7d"]!, m[0, "terminal_frauds_7d_lag_7d"]!))
        }
        for s in seen {
            let age = s.t - Self.base
            #expect(s.frauds1d == (age > 7 * Self.day && age <= 8 * Self.day ? 1 : 0), "age \(age / 3_600_000) h")
            #expect(s.frauds7d == (age > 7 * Self.day && age <= 14 * Self.day ? 1 : 0), "age \(age / 3_600_000) h")
            // The undelayed rate sees the label at once: what the delayed features are for.
            #expect((s.rate > 0) == (age <= Self.day), "age \(age / 3_600_000) h")
        }
    }

    /// Online, labels arrive whenever the topic delivers them; in a replay, exactly at the delay.
    /// The delayed features must not care, as long as each label is in before its delay.
    @Test("delayed risk is the same whether labels arrive early or exactly at the delay")
    func independentOfLabelArrival() throws {
        var rng = SplitMix64(seed: 5)
        var txs: [Transaction] = []
        var t = Self.base
        for i in 0..<1_500 {
            t += Int64.random(in: 0...(Self.day / 40), using: &rng)
            var tx = Transaction(id: "t\(i)", timestamp: t, amount: 10, terminalID: "T\(Int.random(in: 0..<4, using: &rng))")
            tx.label = Int.random(in: 0..<10, using: &rng) == 0 ? 1 : 0
            txs.append(tx)
        }
        func run(early: Bool) throws -> [[Float]] {
            let store = InMemoryVelocityStore(plan: Self.plan)
            var rows: [[Float]] = []
            func apply(_ labels: [Label]) {
                _ = try? store.apply(labels: labels.map { (Self.engine.idHash($0.transactionID), $0.isFraud) })
            }
            try Replay.batches(txs, size: 1, labelDelay: early ? nil : 7 * Self.day, apply: apply) { batch in
                let m = try Self.engine.features(Array(batch), store: store)
                rows.append(m.row(0).map { $0 })
                if early { apply(batch.map { Label(transactionID: $0.id, isFraud: $0.label == 1) }) }
            }
            return rows
        }
        let onTime = try run(early: false), early = try run(early: true)
        let delayed = (1..<Self.plan.schema.count).map { $0 }
        var undelayedDiffers = false
        for r in onTime.indices {
            for c in delayed { #expect(onTime[r][c].bitPattern == early[r][c].bitPattern, "row \(r) \(Self.plan.schema.names[c])") }
            if onTime[r][0].bitPattern != early[r][0].bitPattern { undelayedDiffers = true }
        }
        #expect(undelayedDiffers, "the undelayed rate depends on when labels arrive")
        #expect(onTime.contains { $0[2] > 0 }, "some delayed fraud counts")
    }
}

/// `vigil train` on history with only a customer, a terminal, an amount, a time and a label.
@Suite struct SparseHistoryTrainingTests {
    static let history: [Transaction] = {
        var o = PointOfSaleSimulator.Options()
        o.customers = 400
        o.terminals = 800
        o.days = 30
        o.seed = 3
        o.terminalsCompromisedPerDay = 0.5
        o.customersCompromisedPerDay = 1
        return PointOfSaleSimulator(options: o).generate()
    }()

    static func options(baseline: ModelTraining.Baseline? = nil) -> ModelTraining.Options {
        var o = ModelTraining.Options()
        o.from = history[0].timestamp + 16 * 86_400_000
        o.rounds = 40
        o.searchSeconds = 0
        o.baseline = baseline
        return o
    }

    @Test("without a spec, training derives one from the fields, writes it into the bundle and its model card")
    func derivedSpecBundle() throws {
        let dir = NSTemporaryDirectory() + "vigil-pos-\(UUID().uuidString)"
        var log: [String] = []
        let manifest = try ModelTraining.train(Self.history, specText: nil, options: Self.options(), output: dir) { log.append($0) }
        #expect(manifest.features.names.contains("terminal_fraud_rate_7d_lag_7d"))
        #expect(!manifest.features.names.contains { $0.hasPrefix("card_") || $0.hasPrefix("merchant_") })
        #expect(log.contains { $0.hasPrefix("no --features: derived this spec") })
        #expect(manifest.provenance["features"] == "derived from the data's fields")
        let card = try String(contentsOfFile: dir + "/MODEL_CARD.md", encoding: .utf8)
        #expect(card.contains("## Feature importance") && card.contains("terminal_") && card.contains("```yaml\n# Derived by vigil train"))
        #expect(card.contains("## Candidates"))
        // The bundle's spec is the one printed; a Scorer loads it and scores the data.
        let scorer = try Scorer(configuration: ScorerConfiguration(modelDirectory: dir))
        #expect(scorer.score(Array(Self.history.suffix(50))).allSatisfy { !$0.degraded })
    }

    @Test("a given spec whose entities the data lacks trains with a warning naming them")
    func warningForTheDefaultSpec() throws {
        var log: [String] = []
        _ = try ModelTraining.spec(for: Self.history, given: FeatureSpec.defaultYAML, labelDelay: 0) { log.append($0) }
        #expect(log.contains("warning: entity 'card' (card_id) is missing in 100% of rows; its features will be missing there"))
        #expect(!log.contains { $0.contains("'customer'") })
    }

    @Test("the logistic baseline (a linear booster) trains, loads and scores through the C API")
    func logisticBaseline() throws {
        let dir = NSTemporaryDirectory() + "vigil-pos-lr-\(UUID().uuidString)"
        let manifest = try ModelTraining.train(Self.history, specText: nil, options: Self.options(baseline: .logistic), output: dir)
        #expect(manifest.members.map(\.name) == ["logistic"])
        let scorer = try Scorer(configuration: ScorerConfiguration(modelDirectory: dir))
        let verdicts = scorer.score(Array(Self.history.suffix(200)))
        #expect(verdicts.allSatisfy { !$0.degraded && $0.probability.isFinite })
        #expect(Set(verdicts.map(\.probability)).count > 10, "scores vary")
    }
}
