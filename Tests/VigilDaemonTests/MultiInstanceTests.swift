import Foundation
import Glibc
import Testing
import Vigil
import VigilFeatures
import VigilKafka
import VigilRedis
import VigilTestSupport

@Suite("Several vigild instances on one Redis", .serialized)
struct MultiInstanceTests {
    /// The order of every entity's log in Redis, merged into one order of the stream that keeps
    /// each of them (smallest publish position first among the candidates); nil if none exists.
    static func logOrder(_ stack: Stack, _ txs: [Transaction], hasher: KeyedHasher) throws -> [Int]? {
        let store = RedisVelocityStore(plan: try FeaturePlan(spec: .default), configuration: try RedisConfiguration.forTests(stack.redis!.url))
        var position: [UInt64: Int] = [:]
        for (i, tx) in txs.enumerated() where position[hasher.hash(tx.id) | 1] == nil { position[hasher.hash(tx.id) | 1] = i }
        var after = [[Int]](repeating: [], count: txs.count)
        var before = [Int](repeating: 0, count: txs.count)
        for key in try stack.entityLogs("vigil:x:*") {
            let ids = try store.streamContents(key).events.compactMap { position[$0] }
            for (x, y) in zip(ids, ids.dropFirst()) {
                after[x].append(y)
                before[y] += 1
            }
        }
        var ready = (0..<txs.count).filter { before[$0] == 0 }.sorted(by: >)
        var order: [Int] = []
        while let x = ready.popLast() {
            order.append(x)
            for y in after[x] {
                before[y] -= 1
                if before[y] == 0 {
                    let at = ready.firstIndex { $0 < y } ?? ready.endIndex
                    ready.insert(y, at: at)
                }
            }
        }
        return order.count == txs.count ? order : nil
    }

    @Test("two instances, three merchants on every partition, one killed mid-stream: nothing lost, every verdict equal to an in-memory replay in the entities' log order")
    func instancesShareOneRedis() throws {
        let stack = try Stack(redis: true, partitions: 4)
        // A generous store timeout and model budget: a degraded batch would rightly differ from the replay.
        let config = "store:\n  timeout_ms: 2000\nscoring:\n  deadline_ms: 60000\n  model: \(BuiltProduct.packageRoot)/models/default\n  rules: \(BuiltProduct.packageRoot)/rules/default.yaml\n"
        var a = try stack.startDaemon(config: config)
        let b = try stack.startDaemon(config: config)
        try a.waitReady()
        try b.waitReady()
        var txs = Stack.transactions(5000, seed: 93, days: 1)
        // Three merchants: each one's transactions come through every partition, so both
        // instances append to the same merchant logs all the time.
        for i in txs.indices where txs[i].merchantID != nil { txs[i].merchantID = "merchant_\(i % 3)" }
        let messages = txs.map { Stack.message($0) }
        let publisher = Thread { try? stack.publish(messages, rate: 1000) }
        publisher.start()
        #expect(try eventually(timeout: .seconds(20)) { try a.metric("vigil_transactions_total") > 0 && b.metric("vigil_transactions_total") > 0 },
                "both instances score")
        Thread.sleep(forTimeInterval: 0.8)
        a.process.kill()
        a = try stack.startDaemon(config: config)
        try a.waitReady()
        while !publisher.isFinished { Thread.sleep(forTimeInterval: 0.1) }
        let verdicts = VerdictSet(try stack.read("verdicts", count: txs.count, timeout: .seconds(120)))
        #expect(verdicts.missing(txs.map(\.id)).isEmpty, "lost: \(verdicts.missing(txs.map(\.id)).count)")
        #expect(verdicts.differing == 0, "for example \(verdicts.firstDiffering.map { "\n  \($0[0])\n  \($0[1])" } ?? "")")
        #expect(try eventually { try b.metric("vigil_store_cache_entities") > 0 && b.metric("vigil_store_append_conflicts") > 0 },
                "the cache and the conflicts with the other instance show in the metrics")
        a.process.signal(SIGTERM)
        b.process.signal(SIGTERM)
        a.process.wait()
        b.process.wait()

        let hasher = try KeyedHasher(secret: Array(Stack.hashSecret.utf8))
        guard let order = try Self.logOrder(stack, txs, hasher: hasher) else {
            // Rare: a SIGKILL mid-pipeline left some of a transaction's appends for its
            // redelivery, after appends the other instance made meanwhile, so two entity logs
            // order a pair of transactions both ways and no single replay reproduces them all.
            // Nothing is lost and no redelivery differs (checked above); docs/reliability.md.
            withKnownIssue("the entity logs admit no single order after a kill mid-pipeline", isIntermittent: true) {
                Issue.record("no single order of the entity logs")
            }
            return
        }
        var configuration = ScorerConfiguration(modelDirectory: BuiltProduct.packageRoot + "/models/default",
                                                rulesPath: BuiltProduct.packageRoot + "/rules/default.yaml")
        configuration.hasher = hasher
        let replay = try Scorer(configuration: configuration)
        var compared = 0, differing = 0
        for i in order {
            let expected = replay.score([txs[i]])[0]
            guard let online = verdicts.byID[txs[i].id]?.first else { continue }
            compared += 1
            if VerdictSet.decision(online) != VerdictSet.decision(expected.json()) {
                if differing < 3 { Issue.record("\(txs[i].id): online \(VerdictSet.decision(online)) replay \(VerdictSet.decision(expected.json()))") }
                differing += 1
            }
        }
        // What the logs' order is worth: the same replay in publish order differs (instances saw
        // the shared merchants' events in another order than they were published).
        let naive = try Scorer(configuration: configuration)
        let naiveDiffering = txs.filter { tx in
            verdicts.byID[tx.id]?.first.map { VerdictSet.decision($0) != VerdictSet.decision(naive.score([tx])[0].json()) } ?? false
        }.count
        print("multi-instance: \(compared) verdicts compared with the replay in log order, \(differing) differing (in publish order: \(naiveDiffering)), \(verdicts.duplicates) duplicates")
        #expect(compared == txs.count && differing == 0)
    }
}
