import Foundation
import Testing
@testable import Vigil
import VigilSimulator

/// A small bundle trained once for the whole suite on simulated data (the real training path).
enum Fixture {
    static let stream: [Transaction] = {
        var o = Simulator.Options(transactions: 8000, days: 6, seed: 5)
        o.fraudRate = 0.04
        return Simulator(options: o).generate()
    }()

    static let bundle: String = {
        let dir = NSTemporaryDirectory() + "vigil-bundle-\(UUID().uuidString)"
        var options = ModelTraining.Options()
        options.rounds = 30
        options.searchSeconds = 0
        options.members = 2  // the ensemble's mechanics (member scores, dropped members) are under test
        options.labelDelay = 86_400_000
        try! ModelTraining.train(stream, specText: FeatureSpec.defaultYAML, options: options, output: dir)
        return dir
    }()

    static func scorer(rules: String? = nil, store: ((FeaturePlan) -> any VelocityStore)? = nil, degradation: DegradationPolicy = .scoreWithAvailable) throws -> Scorer {
        var c = ScorerConfiguration(modelDirectory: bundle, rulesPath: rules)
        c.degradation = degradation
        return try Scorer(configuration: c, store: store)
    }

    static func write(_ text: String, _ name: String) -> String {
        let path = NSTemporaryDirectory() + "vigil-\(UUID().uuidString)-\(name)"
        try! text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

/// A store that fails, like Redis when it is down.
final class DownStore: VelocityStore {
    let plan: FeaturePlan
    init(plan: FeaturePlan) { self.plan = plan }
    func process(_ batch: EventBatch, into matrix: inout FeatureMatrix) throws(StoreError) { throw StoreError(.unavailable, "connection refused") }
    func apply(labels: [(id: UInt64, fraud: Bool)]) throws(StoreError) -> Int { throw StoreError(.unavailable, "connection refused") }
}

@Suite(.serialized) struct ScorerTests {
    @Test func trainedBundleIsComplete() throws {
        let m = try Manifest.load(directory: Fixture.bundle)
        #expect(m.members.count == 2)
        #expect(m.metrics["holdout_auc"]! > 0.8, "\(m.metrics)")
        #expect(m.provenance["features"] == "given spec" && m.provenance["model"] == "search over 2 candidates")
        for f in ["features.yaml", "MODEL_CARD.md"] + m.members.map(\.file) {
            #expect(FileManager.default.fileExists(atPath: Fixture.bundle + "/" + f), "\(f)")
        }
    }

    @Test func scoresEveryTransactionAndEqualsTheModel() throws {
        let scorer = try Fixture.scorer()
        let batch = Array(Fixture.stream.prefix(512))
        let result = scorer.evaluate(batch)
        #expect(result.verdicts.count == 512)
        #expect(result.verdicts.map(\.transactionID) == batch.map(\.id))
        // The scorer's probability is the calibrated weighted margin of the members as the
        // XGBoost C API computes them (the scorer itself runs the native evaluator).
        let capi = try Ensemble(directory: Fixture.bundle, evaluator: .capi)
        let direct = capi.score(result.features.values, rows: 512)
        for (v, p) in zip(result.verdicts, direct.probabilities) { #expect(abs(v.probability - p) <= 1e-6) }
        let manifest = try Manifest.load(directory: Fixture.bundle)
        for (m, member) in manifest.members.enumerated() {
            let booster = try Booster(path: Fixture.bundle + "/" + member.file)
            let reference = try result.features.values.withUnsafeBufferPointer { try booster.probabilities($0, rows: 512, columns: result.features.columns) }
            for r in 0..<512 { #expect(abs(result.verdicts[r].memberScores[m].probability - Double(reference[r])) <= 1e-6) }
        }
        #expect(result.verdicts.allSatisfy { !$0.degraded && $0.memberScores.count == 2 })
        #expect(Set(result.verdicts.map(\.action)).count >= 2)
    }

    @Test func replayIsDeterministicAndRedeliveryIsSafe() throws {
        let a = try Fixture.scorer(), b = try Fixture.scorer()
        let stream = Array(Fixture.stream.prefix(2000))
        var va: [Verdict] = [], vb: [Verdict] = []
        for chunk in stride(from: 0, to: stream.count, by: 256) { va += a.score(Array(stream[chunk..<min(chunk + 256, stream.count)])) }
        for chunk in stride(from: 0, to: stream.count, by: 100) { vb += b.score(Array(stream[chunk..<min(chunk + 100, stream.count)])) }
        #expect(zip(va, vb).allSatisfy { $0.sameDecision(as: $1) })  // batch size does not change a verdict
        // Redeliver a batch already scored: same verdicts, nothing double counted.
        // Features of a redelivered batch, hours after the fact, are bit-identical.
        let c = try Fixture.scorer()
        _ = c.evaluate(Array(stream[..<1792]))
        let first = c.evaluate(Array(stream[1792..<2000])).features
        let redelivered = c.evaluate(Array(stream[1744..<2000])).features
        for r in 0..<(2000 - 1792) {
            for col in 0..<first.columns where first[r, col].bitPattern != redelivered[r + 48, col].bitPattern {
                Issue.record("\(stream[1792 + r].id) \(first.schema.names[col]): \(first[r, col]) then \(redelivered[r + 48, col])")
            }
        }
        let again = a.score(Array(stream[1744..<2000]))
        for (x, y) in zip(again, va[1744...]) where !x.sameDecision(as: y) {
            Issue.record("redelivered \(x.transactionID): \(x.json()) vs \(y.json())")
            break
        }
        let next = a.score(Array(Fixture.stream[2000..<2100])), fresh = b.score(Array(Fixture.stream[2000..<2100]))
        #expect(zip(next, fresh).allSatisfy { $0.sameDecision(as: $1) })
    }

    @Test func storeOutageDegradesByPolicy() throws {
        let batch = Array(Fixture.stream.prefix(64))
        let open = try Fixture.scorer(store: { DownStore(plan: $0) })
        let v = open.score(batch)
        #expect(v.allSatisfy { $0.degraded && $0.probability.isFinite && $0.reasons.contains { $0.code == "store_unavailable" } })
        let closed = try Fixture.scorer(store: { DownStore(plan: $0) }, degradation: .failClosed)
        #expect(closed.score(batch).allSatisfy { $0.degraded && $0.action >= .review })
    }

    @Test func membersOverTheirBudgetAreDroppedAndVerdictsDegrade() throws {
        var c = ScorerConfiguration(modelDirectory: Fixture.bundle)
        c.memberBudget = .nanoseconds(1)  // no member can make it
        let v = try Scorer(configuration: c).score(Array(Fixture.stream.prefix(50)))
        #expect(v.allSatisfy { $0.degraded && $0.probability.isNaN && $0.action == .review })  // the costs' fallback
        #expect(v.allSatisfy { $0.reasons.filter { $0.code == "member_failed" }.count == 2 })
        #expect(v.allSatisfy { $0.memberScores.allSatisfy { $0.probability.isNaN } })
        c.memberBudget = .seconds(10)
        #expect(try Scorer(configuration: c).score(Array(Fixture.stream.prefix(50))).allSatisfy { !$0.degraded })
        // The verdict JSON stays valid with a missing probability.
        #expect((try? JSONSerialization.jsonObject(with: Data(v[0].json().utf8))) != nil)
    }

    @Test func failedReloadKeepsWhatRuns() throws {
        let good = Fixture.write("version: r1\nrules:\n  - id: big\n    when: amount > 100000\n    action: block\n", "rules.yaml")
        let scorer = try Fixture.scorer(rules: good)
        #expect(scorer.versions.rules == "r1")
        var config = scorer.configuration
        config.rulesPath = Fixture.write("version: r2\nrules:\n  - id: big\n    when: amount >>> 1\n    action: block\n", "bad.yaml")
        #expect(throws: ConfigurationError.self) { try scorer.reload(config) }
        #expect(scorer.versions.rules == "r1")
        config.modelDirectory = "/nonexistent"
        config.rulesPath = good
        #expect(throws: ConfigurationError.self) { try scorer.reload(config) }
        #expect(scorer.score(Fixture.stream[0]).modelVersion == "default@1")
        config.modelDirectory = Fixture.bundle
        config.rulesPath = Fixture.write("version: r3\nrules: []\n", "r3.yaml")
        try scorer.reload(config)
        #expect(scorer.versions.rules == "r3")
    }

    @Test func rulesForceVerdictsAndExplainTheScore() throws {
        let rules = Fixture.write("version: t\nrules:\n  - id: huge\n    when: amount > 0\n    action: block\n    reason: everything\n", "all.yaml")
        let v = try Fixture.scorer(rules: rules).score(Array(Fixture.stream.prefix(20)))
        #expect(v.allSatisfy { $0.action == .block && $0.reasons.first?.code == "huge" })
        #expect(v.contains { $0.reasons.contains { $0.kind == .feature } })
    }

    @Test func verdictsCarryNoRawIdentifiers() throws {
        let batch = Array(Fixture.stream.prefix(300))
        let text = try Fixture.scorer().score(batch).map { $0.json() }.joined(separator: "\n")
        for tx in batch {
            for raw in [tx.cardID, tx.email, tx.ip].compactMap({ $0 }) { #expect(!text.contains(raw)) }
        }
        // And the JSON is valid.
        for line in text.split(separator: "\n") {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil)
        }
    }

    @Test func aSpecThatDoesNotMatchTheModelIsALoadError() throws {
        let spec = Fixture.write("entities:\n  card: card_id\nfields: [amount]\n", "spec.yaml")
        var c = ScorerConfiguration(modelDirectory: Fixture.bundle)
        c.featureSpecPath = spec
        #expect { try Scorer(configuration: c) } throws: { "\($0)".contains("feature schema mismatch") }
    }

    @Test func labelsFeedRiskOnlyAfterTheyArrive() throws {
        // Leakage check: features computed with labels released 1 day late never change when the
        // labels of the future (or the transaction's own) are altered.
        var stream = Array(Fixture.stream.prefix(3000))
        var options = ModelTraining.Options()
        options.labelDelay = 86_400_000
        let a = try ModelTraining.features(stream, spec: .default, options: options)
        let cut = stream[1500].timestamp
        for i in stream.indices where stream[i].timestamp >= cut - 86_400_000 { stream[i].label = stream[i].label == 1 ? 0 : 1 }
        let b = try ModelTraining.features(stream, spec: .default, options: options)
        let rows = a.times.firstIndex { $0 >= cut }!
        for i in 0..<(rows * a.columns) {
            #expect(a.values[i].bitPattern == b.values[i].bitPattern || (a.values[i].isNaN && b.values[i].isNaN))
        }
    }
}

@Suite struct MetricsTests {
    @Test func handComputedAUCAndAP() {
        // Scores 0.9 (+), 0.8 (-), 0.7 (+), 0.1 (-): AUC = 3/4, AP = (1/1 + 2/3)/2.
        let s = [0.9, 0.8, 0.7, 0.1], l = [true, false, true, false]
        #expect(abs(Metrics.auc(scores: s, labels: l) - 0.75) < 1e-12)
        #expect(abs(Metrics.averagePrecision(scores: s, labels: l) - (1 + 2.0 / 3) / 2) < 1e-12)
        #expect(Metrics.auc(scores: [0.5, 0.5], labels: [true, false]) == 0.5)
    }
}

@Suite struct SimulatorTests {
    @Test func deterministicForASeed() {
        let a = Simulator(options: .init(transactions: 3000, days: 3, seed: 9)).generate()
        let b = Simulator(options: .init(transactions: 3000, days: 3, seed: 9)).generate()
        let c = Simulator(options: .init(transactions: 3000, days: 3, seed: 10)).generate()
        #expect(a == b && a != c)
        #expect(zip(a, a.dropFirst()).allSatisfy { $0.timestamp <= $1.timestamp })
        let fraud = Double(a.filter { $0.label == 1 }.count) / Double(a.count)
        #expect(fraud > 0.005 && fraud < 0.03, "\(fraud)")
    }
}
