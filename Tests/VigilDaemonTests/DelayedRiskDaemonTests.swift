import Foundation
import Glibc
import Testing
import Vigil
import VigilKafka
import VigilSimulator
import VigilTestSupport

/// Delay-aware risk online, where labels come from the labels topic whenever they are sent,
/// against a replay that releases each label exactly its delay after its transaction.
@Suite(.serialized) struct DelayedRiskDaemonTests {
    @Test("delay-aware risk: vigild with labels sent early gives the verdicts of a replay with labels released at the delay")
    func onlineEqualsReplay() throws {
        var o = PointOfSaleSimulator.Options()
        (o.customers, o.terminals, o.days, o.seed) = (150, 60, 15, 9)
        o.terminalsCompromisedPerDay = 0.4
        o.customersCompromisedPerDay = 0.6
        let txs = PointOfSaleSimulator(options: o).generate()
        // Days 0–7 online, their labels, then days 8–14: every delayed window of the second part
        // ends before day 8, so its labels are all in online; none is due yet in the replay for
        // the events of the last 7 days.
        let split = o.start + 8 * 86_400_000
        let first = txs.filter { $0.timestamp < split }, second = txs.filter { $0.timestamp >= split }

        let stack = try Stack(redis: true)
        // A bundle on the spec `vigil train` derives for these fields: its risk ends 7 days back.
        let bundle = stack.directory + "/pos-bundle"
        var options = ModelTraining.Options()
        (options.rounds, options.searchSeconds) = (20, 0)
        try ModelTraining.train(txs, specText: nil, options: options, output: bundle)
        let rules = stack.directory + "/risk-tags.yaml"
        try """
            version: "risk-tags"
            rules:
              - id: terminal_known_fraud
                when: terminal_frauds_7d_lag_7d >= 1
                action: tag
                reason: terminal
              - id: customer_known_fraud
                when: customer_frauds_30d_lag_7d >= 1
                action: tag
                reason: customer
            """.write(toFile: rules, atomically: true, encoding: .utf8)
        let daemon = try stack.startDaemon(config: """
            store:
              timeout_ms: 2000
            scoring:
              deadline_ms: 60000
              model: \(bundle)
              rules: \(rules)
            """)
        try daemon.waitReady()

        // Online: the first 8 days, then every label at once (most far earlier than 7 days after
        // their transaction), then the next 8 days. One key, so one partition keeps the stream's
        // order for every customer and terminal, as the replay has it.
        func message(_ tx: Transaction) -> OutgoingMessage {
            OutgoingMessage(topic: "transactions", key: Array("pos".utf8), value: Array(Simulator.json(tx).utf8))
        }
        try stack.publish(first.map(message))
        _ = try stack.read("verdicts", count: first.count)
        try stack.publish(first.map { OutgoingMessage(topic: "labels", key: nil, value: Array("{\"id\":\"\($0.id)\",\"label\":\($0.label ?? 0)}".utf8)) })
        #expect(try eventually { try daemon.metric("vigil_labels_total") == Double(first.count) })
        try stack.publish(second.map(message))
        let online = VerdictSet(try stack.read("verdicts", count: txs.count))

        // Replay: one transaction at a time, each label released 7 days after its transaction.
        var c = ScorerConfiguration(modelDirectory: bundle, rulesPath: rules)
        c.hasher = try KeyedHasher(secret: Array(Stack.hashSecret.utf8))
        let replay = try Scorer(configuration: c)
        var expected: [String: String] = [:]
        Replay.batches(txs, size: 1, labelDelay: 7 * 86_400_000, apply: { _ = try? replay.apply(labels: $0) }) { batch in
            let tx = batch.first!
            let verdict = replay.score(tx)
            if tx.timestamp >= split { expected[tx.id] = verdict.json() }
        }
        var differing: [String] = []
        for tx in second where online.byID[tx.id].map({ $0.map(VerdictSet.decision) }) != [VerdictSet.decision(expected[tx.id]!)] {
            differing.append(tx.id)
        }
        #expect(online.missing(second.map(\.id)).isEmpty)
        #expect(differing.isEmpty, "\(differing.count) of \(second.count) differ, e.g. \(differing.first.map { "\(online.byID[$0] ?? []) vs \(expected[$0]!)" } ?? "")")
        let tagged = second.filter { expected[$0.id]!.contains("terminal_known_fraud") }.count
        #expect(tagged > 0 && tagged < second.count, "known terminal frauds shape some verdicts (\(tagged) of \(second.count))")
        daemon.process.signal(SIGTERM)
        daemon.process.wait()
    }
}
