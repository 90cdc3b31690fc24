import Foundation
import Testing
@testable import Vigil
import VigilBacktest
import VigilSimulator

/// Two bundles on the same derived spec (a champion and a challenger), trained once.
enum ShadowFixture {
    static func history(seed: UInt64, days: Int = 30) -> [Transaction] {
        var o = PointOfSaleSimulator.Options()
        (o.customers, o.terminals, o.days, o.seed) = (400, 800, days, seed)
        o.terminalsCompromisedPerDay = 0.5
        o.customersCompromisedPerDay = 1
        return PointOfSaleSimulator(options: o).generate()
    }
    static let training = history(seed: 3)

    static func train(_ baseline: ModelTraining.Baseline?, name: String) -> String {
        let dir = NSTemporaryDirectory() + "vigil-\(name)-\(UUID().uuidString)"
        var o = ModelTraining.Options()
        o.from = training[0].timestamp + 16 * 86_400_000
        (o.rounds, o.searchSeconds, o.baseline, o.name) = (40, 0, baseline, name)
        try! ModelTraining.train(training, specText: nil, options: o, output: dir)
        return dir
    }
    static let champion = train(nil, name: "champion")
    static let challenger = train(.xgboost, name: "challenger")
}

@Suite(.serialized) struct ShadowTests {
    @Test("a challenger scores every transaction on the champion's matrix; the champion's verdicts do not change")
    func challengerBesideTheChampion() throws {
        let stream = Array(ShadowFixture.history(seed: 8, days: 20))
        var c = ScorerConfiguration(modelDirectory: ShadowFixture.champion)
        let alone = try Scorer(configuration: c)
        c.challengers = [ShadowFixture.challenger]
        let withChallenger = try Scorer(configuration: c)
        let challengerAlone = try Scorer(configuration: ScorerConfiguration(modelDirectory: ShadowFixture.challenger))
        var shadowed = 0, disagreements = 0
        for start in stride(from: 0, to: stream.count, by: 256) {
            let batch = Array(stream[start..<min(start + 256, stream.count)])
            let result = withChallenger.evaluate(batch)
            let reference = alone.score(batch), challenger = challengerAlone.score(batch)
            #expect(zip(result.verdicts, reference).allSatisfy { $0.sameDecision(as: $1) })
            let shadows = withChallenger.shadow(batch, decided: result)
            #expect(shadows.count == 1 && shadows[0].skipped == nil && shadows[0].challenger == "challenger@1")
            for (i, s) in shadows[0].verdicts.enumerated() {
                #expect(s.transactionID == batch[i].id)
                #expect(s.champion.action == result.verdicts[i].action && s.champion.probability == result.verdicts[i].probability)
                #expect(s.challenger.probability == challenger[i].probability && s.challenger.action == challenger[i].action)
                if !s.agrees { disagreements += 1 }
            }
            shadowed += shadows[0].verdicts.count
        }
        #expect(shadowed == stream.count)
        #expect(disagreements > 0, "two different models disagree somewhere")
        let line = withChallenger.shadow(Array(stream.prefix(1)), decided: withChallenger.evaluate(Array(stream.prefix(1))))[0].verdicts[0].json()
        #expect(line.hasPrefix("{\"id\":\"") && line.contains(",\"champion\":{\"model\":\"champion@1\",\"action\":\"") && line.contains("\"challenger\":{\"model\":\"challenger@1\""))
    }

    @Test("a challenger with another feature schema is refused at load, with the reason; a failed reload keeps what runs")
    func schemaMismatchRefused() throws {
        var c = ScorerConfiguration(modelDirectory: ShadowFixture.champion)
        c.challengers = [Fixture.bundle]
        #expect { try Scorer(configuration: c) } throws: { e in
            "\(e)".contains(Fixture.bundle + "/manifest.json") && "\(e)".contains("feature schema mismatch")
        }
        let scorer = try Scorer(configuration: ScorerConfiguration(modelDirectory: ShadowFixture.champion))
        #expect(throws: ConfigurationError.self) { try scorer.reload(c) }
        #expect(scorer.models.challengers.isEmpty)
    }

    @Test("a challenger over its budget skips the batch, and the champion's verdicts are whole")
    func slowChallengerSkipped() throws {
        var c = ScorerConfiguration(modelDirectory: ShadowFixture.champion)
        c.challengers = [ShadowFixture.challenger]
        c.challengerBudget = .nanoseconds(1)
        let scorer = try Scorer(configuration: c)
        let batch = Array(ShadowFixture.training.prefix(300))
        let result = scorer.evaluate(batch)
        #expect(result.verdicts.allSatisfy { !$0.degraded })
        let shadows = scorer.shadow(batch, decided: result)
        #expect(shadows.map(\.skipped) == ["over_budget"] && shadows[0].verdicts.isEmpty)
    }

    @Test("outcomes per model join labels with remembered decisions, time-decayed and bounded")
    func outcomesPerModel() {
        var outcomes = ModelOutcomes(capacity: 3, halfLife: 1000)
        let txs = (0..<4).map { Transaction(id: "t\($0)", timestamp: 0, amount: 100) }
        func verdict(_ i: Int, _ action: Action, _ model: String) -> Verdict {
            Verdict(transactionID: "t\(i)", action: action, probability: 0.5, modelVersion: model, rulesVersion: "r", timestamp: 0)
        }
        let champion = [verdict(0, .block, "a@1"), verdict(1, .approve, "a@1"), verdict(2, .block, "a@1"), verdict(3, .approve, "a@1")]
        let shadow = champion.enumerated().map { i, v in
            ShadowVerdict(transactionID: v.transactionID, timestamp: 0, champion: .init(version: "a@1", action: v.action, probability: 0.5),
                          challenger: .init(version: "b@1", action: i == 1 ? .review : .approve, probability: 0.5))
        }
        outcomes.record(txs, keys: [10, 11, 12, 13], champion: champion, shadows: [shadow], costs: .default)
        #expect(outcomes.remembered == 3, "the oldest is forgotten past the capacity")
        let forgotten = outcomes.label(10, fraud: true, at: 0)
        let matched = [outcomes.label(11, fraud: true, at: 0), outcomes.label(12, fraud: false, at: 0), outcomes.label(13, fraud: false, at: 0)]
        #expect(!forgotten && matched == [true, true, true])
        let f = outcomes.figures(at: 0)
        // a: blocks 12 (legit), approves 11 (fraud) and 13 → precision 0, recall 0. b: reviews 11 (fraud) → 1, 1.
        #expect(f["a@1"]?.labelled == 3 && f["a@1"]?.precision == 0 && f["a@1"]?.recall == 0)
        #expect(f["b@1"]?.precision == 1 && f["b@1"]?.recall == 1)
        #expect(abs(outcomes.figures(at: 1000)["a@1"]!.labelled - 1.5) < 1e-9, "half the weight one half-life later")
    }
}

/// PSI of live data against the bundle's training reference.
@Suite(.serialized) struct DriftTests {
    static let from = ShadowFixture.training[0].timestamp + 16 * 86_400_000

    static func report(_ txs: [Transaction]) throws -> DriftReport {
        let scorer = try Scorer(configuration: ScorerConfiguration(modelDirectory: ShadowFixture.champion))
        return try DriftReport.run(txs, scorer: scorer, from: from)
    }

    @Test("the bundle records a reference per feature and for the score")
    func referenceInTheManifest() throws {
        let m = try Manifest.load(directory: ShadowFixture.champion)
        let r = try #require(m.reference)
        #expect(r.features.map(\.name) == m.features.names)
        #expect(r.score.shares.count == r.score.edges.count + 1 && abs(r.score.shares.reduce(0, +) - 1) < 1e-9)
        #expect(r.features.first { $0.name == "customer_secs_since_last" }!.missing > 0, "first transactions have no previous one")
    }

    @Test("a manifest whose reference does not match its features fails at load")
    func corruptReferenceRefused() throws {
        let dir = NSTemporaryDirectory() + "vigil-badref-\(UUID().uuidString)"
        try FileManager.default.copyItem(atPath: ShadowFixture.champion, toPath: dir)
        var m = try Manifest.load(directory: dir)
        m.reference!.features.removeLast()
        try m.write(directory: dir)
        #expect { try Manifest.load(directory: dir) } throws: { e in
            "\(e)".contains(dir + "/manifest.json") && "\(e)".contains("reference: one histogram per feature")
        }
    }

    @Test("PSI stays near 0 on data drawn like the training data")
    func stableOnLikeData() throws {
        let r = try Self.report(ShadowFixture.history(seed: 21))
        #expect(r.rows > 5_000)
        #expect(r.scorePSI < 0.1, "score PSI \(r.scorePSI)")
        let high = r.features.filter { $0.psi >= 0.1 }
        #expect(high.isEmpty, "\(high.map { "\($0.name) \($0.psi)" })")
    }

    @Test("PSI crosses 0.25 when amounts shift and when a field goes missing")
    func driftDetected() throws {
        let shifted = try Self.report(ShadowFixture.history(seed: 21).map { tx in
            var t = tx
            if t.timestamp >= Self.from { t.amount *= 3 }
            return t
        })
        #expect(shifted.features.first { $0.name == "amount" }!.psi > 0.25)
        #expect(shifted.scorePSI > 0.25, "score PSI \(shifted.scorePSI)")

        let missing = try Self.report(ShadowFixture.history(seed: 21).map { tx in
            var t = tx
            if t.timestamp >= Self.from { t.terminalID = nil }
            return t
        })
        let terminal = missing.features.filter { $0.name.hasPrefix("terminal_") }
        #expect(!terminal.isEmpty && terminal.allSatisfy { $0.psi > 0.25 && $0.missing == 1 }, "\(terminal.map { "\($0.name) \($0.psi)" })")
        #expect(missing.features.first { $0.name == "amount" }!.psi < 0.1)
        let json = try missing.json()
        #expect(json.contains("\"score_psi\":") && json.contains("\"terminal_count_1d\":"))
    }
}
