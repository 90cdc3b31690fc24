import Foundation
import Glibc
import Testing
import Vigil
import VigilKafka
import VigilTestSupport

@Suite("The daemon's decision thread", .serialized)
struct PipelineThreadsTests {
    @Test("one thread and two threads give identical verdicts on a stream where per-entity order matters, equal to an in-process replay")
    func threadsKeepOrder() throws {
        // One partition: the stream's order is every entity's order, for both daemons.
        let stack = try Stack(partitions: 1)
        // Each daemon its own verdicts topic: a redelivery (a rebalance under load) stays a
        // duplicate of its own daemon's verdict.
        func config(threads: Int) -> String {
            "kafka:\n  topics: { verdicts: verdicts.\(threads) }\nscoring:\n  deadline_ms: 60000\n  model: \(BuiltProduct.packageRoot)/models/default\n  rules: \(BuiltProduct.packageRoot)/rules/default.yaml\n  threads: \(threads)\n"
        }
        // Two groups: each daemon reads the whole stream into its own in-memory store.
        let one = try stack.startDaemon(group: "one-thread", config: config(threads: 1))
        let two = try stack.startDaemon(group: "two-threads", config: config(threads: 2))
        try one.waitReady()
        try two.waitReady()
        var txs = Stack.transactions(4000, seed: 57, days: 1)
        // Few cards and merchants: each transaction's velocity features depend on many before it.
        for i in txs.indices {
            txs[i].cardID = "card_\(i % 25)"
            txs[i].merchantID = "merchant_\(i % 4)"
        }
        // All at once, so batches queue up and the two stages overlap.
        try stack.publish(txs.map { Stack.message($0) })
        let byOne = VerdictSet(try stack.read("verdicts.1", count: txs.count, timeout: .seconds(120)))
        let byTwo = VerdictSet(try stack.read("verdicts.2", count: txs.count, timeout: .seconds(120)))
        #expect(byOne.missing(txs.map(\.id)).isEmpty && byTwo.missing(txs.map(\.id)).isEmpty)
        #expect(byOne.differing == 0 && byTwo.differing == 0, "a redelivery got another verdict")
        var verdicts = byOne
        for (id, v) in byTwo.byID { verdicts.byID[id, default: []] += v }
        #expect(verdicts.differing == 0, "the two daemons disagree on \(verdicts.differing) transactions")
        #expect(try two.metric("vigil_batches_total") > 1, "the two-thread daemon scored several batches")

        var configuration = ScorerConfiguration(modelDirectory: BuiltProduct.packageRoot + "/models/default",
                                                rulesPath: BuiltProduct.packageRoot + "/rules/default.yaml")
        configuration.hasher = try KeyedHasher(secret: Array(Stack.hashSecret.utf8))
        let replay = try Scorer(configuration: configuration)
        let differing = txs.filter { tx in
            verdicts.byID[tx.id]?.first.map { VerdictSet.decision($0) != VerdictSet.decision(replay.score([tx])[0].json()) } ?? true
        }
        #expect(differing.isEmpty, "\(differing.count) verdicts differ from the replay in stream order")
        let actions = Set(txs.compactMap { verdicts.byID[$0.id]?.first }.map { $0.contains("\"action\":\"approve\"") })
        #expect(actions.count == 2, "the stream gets more than one kind of verdict")
        one.process.signal(SIGTERM)
        two.process.signal(SIGTERM)
        one.process.wait()
        two.process.wait()
    }
}
