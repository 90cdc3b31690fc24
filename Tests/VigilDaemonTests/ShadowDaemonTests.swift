import Foundation
import Glibc
import Testing
import Vigil
import VigilKafka
import VigilSimulator
import VigilTestSupport

/// A challenger in shadow inside a running vigild: every transaction's challenger decision on
/// the shadow topic, the verdicts those of the champion alone.
@Suite(.serialized) struct ShadowDaemonTests {
    static func bundles(_ directory: String, _ txs: [Transaction]) throws -> (champion: String, challenger: String) {
        var o = ModelTraining.Options()
        (o.rounds, o.searchSeconds, o.name) = (30, 0, "champion")
        try ModelTraining.train(txs, specText: nil, options: o, output: directory + "/champion")
        (o.baseline, o.name) = (.xgboost, "challenger")
        try ModelTraining.train(txs, specText: nil, options: o, output: directory + "/challenger")
        return (directory + "/champion", directory + "/challenger")
    }

    static func message(_ tx: Transaction) -> OutgoingMessage {
        OutgoingMessage(topic: "transactions", key: Array("pos".utf8), value: Array(Simulator.json(tx).utf8))
    }

    @Test("shadow: every transaction scored by the challenger into verdicts.shadow; verdicts equal the champion's alone; a challenger over budget is skipped and counted")
    func challengerInShadow() throws {
        var o = PointOfSaleSimulator.Options()
        (o.customers, o.terminals, o.days, o.seed) = (150, 60, 12, 4)
        let txs = PointOfSaleSimulator(options: o).generate()
        let stack = try Stack()
        let (champion, challenger) = try Self.bundles(stack.directory, txs)
        let daemon = try stack.startDaemon(config: """
            scoring:
              deadline_ms: 60000
              model: \(champion)
            shadow:
              models: [\(challenger)]
              queue_batches: 100000
            """)
        try daemon.waitReady()
        // The whole stream at once: a queue that holds every batch, so none is skipped for
        // being behind (best effort by design, counted in vigil_monitor_skipped_batches_total).
        try stack.publish(txs.map(Self.message))
        let verdicts = VerdictSet(try stack.read("verdicts", count: txs.count))
        let shadow = try stack.read("verdicts.shadow", count: txs.count)

        // The champion alone, in process, over the same stream in the same order.
        var c = ScorerConfiguration(modelDirectory: champion)
        c.hasher = try KeyedHasher(secret: Array(Stack.hashSecret.utf8))
        let alone = try Scorer(configuration: c)
        c.modelDirectory = challenger
        let challengerAlone = try Scorer(configuration: c)
        struct Line: Decodable {
            struct Model: Decodable, Equatable {
                var model: String
                var action: String
                var probability: Double
            }
            var id: String
            var champion: Model
            var challenger: Model
            var agree: Bool
        }
        var shadowByID: [String: Line] = [:]
        for m in shadow {
            let line = try JSONDecoder().decode(Line.self, from: Data(m.value))
            #expect(String(decoding: m.key ?? [], as: UTF8.self) == line.id, "a shadow verdict is keyed by its transaction id")
            shadowByID[line.id] = line
        }
        var differing = 0, wrongShadow = 0
        for tx in txs {
            let expected = alone.score(tx), expectedChallenger = challengerAlone.score(tx)
            if verdicts.byID[tx.id]?.map(VerdictSet.decision) != [VerdictSet.decision(expected.json())] { differing += 1 }
            let s = shadowByID[tx.id]
            if s?.champion != .init(model: "champion@1", action: expected.action.rawValue, probability: expected.probability)
                || s?.challenger != .init(model: "challenger@1", action: expectedChallenger.action.rawValue, probability: expectedChallenger.probability)
                || s?.agree != (expected.action == expectedChallenger.action) {
                wrongShadow += 1
            }
        }
        #expect(verdicts.missing(txs.map(\.id)).isEmpty, "\(daemon.log.suffix(3000))")
        #expect(differing == 0, "verdicts differ from the champion's alone")
        #expect(try daemon.metric("vigil_monitor_skipped_batches_total") == 0)
        #expect(shadowByID.count == txs.count && wrongShadow == 0, "\(shadowByID.count) shadow decisions for \(txs.count) transactions, \(wrongShadow) wrong")
        #expect(try eventually { try daemon.metric("vigil_shadow_transactions_total{challenger=\"challenger@1\"}") == Double(txs.count) })
        #expect(try eventually { try daemon.metric("vigil_drift_rows") > 0 }, "the champion's features binned for drift")
        daemon.process.signal(SIGTERM)
        daemon.process.wait()

        // The same challenger with a budget no model meets: skipped and counted, verdicts whole.
        let strict = try stack.startDaemon(group: "strict", config: """
            kafka:
              topics: { verdicts: verdicts.strict }
            scoring:
              deadline_ms: 60000
              model: \(champion)
            shadow:
              models: [\(challenger)]
              topic: verdicts.shadow.strict
              budget_us: 1
            """)
        try strict.waitReady()
        let again = VerdictSet(try stack.read("verdicts.strict", count: txs.count))
        #expect(again.missing(txs.map(\.id)).isEmpty && again.differing == 0)
        #expect(try eventually { try strict.metric("vigil_shadow_skipped_total{challenger=\"challenger@1\",reason=\"over_budget\"}") > 0 })
        #expect(try strict.metric("vigil_shadow_transactions_total{challenger=\"challenger@1\"}") == 0)
        strict.process.signal(SIGTERM)
        strict.process.wait()
    }

    @Test("promotion is a reload: the challenger becomes the champion under load, nothing lost or scored twice")
    func promotionByReload() throws {
        var o = PointOfSaleSimulator.Options()
        (o.customers, o.terminals, o.days, o.seed) = (150, 60, 12, 5)
        let txs = PointOfSaleSimulator(options: o).generate()
        let stack = try Stack()
        let (champion, challenger) = try Self.bundles(stack.directory, txs)
        func config(model: String, shadow: String) -> String {
            "scoring:\n  deadline_ms: 60000\n  model: \(model)\nshadow:\n  models: [\(shadow)]\n"
        }
        let file = stack.directory + "/promote.yaml"
        try config(model: champion, shadow: challenger).write(toFile: file, atomically: true, encoding: .utf8)
        let daemon = try stack.startDaemon(configFile: file)
        try daemon.waitReady()
        let publisher = Thread { try? stack.publish(txs.map(Self.message), rate: 400) }
        publisher.start()
        #expect(try eventually { try daemon.metric("vigil_transactions_total") > Double(txs.count / 3) })
        // Promote: the challenger becomes the champion, the old champion its shadow.
        try config(model: challenger, shadow: champion).write(toFile: file, atomically: true, encoding: .utf8)
        let r = try HTTP.request(port: daemon.adminPort, "POST", "/admin/reload", headers: ["Authorization": "Bearer \(Stack.adminToken)"])
        #expect(r.status == 200, "\(r.body)")
        while !publisher.isFinished { Thread.sleep(forTimeInterval: 0.1) }
        let verdicts = VerdictSet(try stack.read("verdicts", count: txs.count))
        #expect(verdicts.missing(txs.map(\.id)).isEmpty && verdicts.duplicates == 0)
        let models = txs.compactMap { verdicts.byID[$0.id]?.first }.map { $0.contains("\"model\":\"challenger@1\"") }
        let switchedAt = try #require(models.firstIndex(of: true), "verdicts from the promoted model")
        #expect(switchedAt > 0 && models[switchedAt...].allSatisfy { $0 }, "one switch, between batches, in stream order")
        #expect(try eventually { try daemon.metric("vigil_shadow_transactions_total{challenger=\"champion@1\"}") > 0 }, "the old champion in shadow")
        daemon.process.signal(SIGTERM)
        daemon.process.wait()
    }
}
