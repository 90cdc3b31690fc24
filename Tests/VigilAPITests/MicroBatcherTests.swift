import Foundation
import Synchronization
import Testing
import Vigil
@testable import VigilAPI

struct MicroBatcherTests {
    static func transactions(_ n: Int, from: Int = 0) -> [Transaction] {
        (from..<(from + n)).map { Transaction(id: "t\($0)", timestamp: 1_700_000_000_000 + Int64($0), amount: Double($0)) }
    }

    /// A scorer that records the batches it was given and answers each id with a verdict.
    final class Recorder: Sendable {
        let batches = Mutex<[[String]]>([])
        let delay: Duration
        init(delay: Duration = .zero) { self.delay = delay }
        func score(_ txs: [Transaction]) -> [Verdict] {
            if delay > .zero { Thread.sleep(forTimeInterval: delay.seconds) }
            batches.withLock { $0.append(txs.map(\.id)) }
            return txs.map { Verdict(transactionID: $0.id, action: .approve, probability: $0.amount / 1000, modelVersion: "m", rulesVersion: "r") }
        }
    }

    @Test("concurrent requests share batches; each gets its own verdicts, in order")
    func gathersConcurrentRequests() async throws {
        var c = MicroBatchConfiguration()
        c.maxWait = .milliseconds(50)
        c.maxBatch = 64
        let recorder = Recorder()
        let batcher = MicroBatcher(configuration: c) { recorder.score($0) }
        defer { batcher.stop() }
        let answers = try await withThrowingTaskGroup(of: (Int, [Verdict]).self) { group in
            for r in 0..<40 {
                group.addTask { (r, try await batcher.score(Self.transactions(r % 3 + 1, from: r * 10))) }
            }
            var out: [Int: [Verdict]] = [:]
            for try await (r, v) in group { out[r] = v }
            return out
        }
        for r in 0..<40 {
            #expect(answers[r]?.map(\.transactionID) == Self.transactions(r % 3 + 1, from: r * 10).map(\.id))
        }
        let batches = recorder.batches.withLock { $0 }
        #expect(batches.flatMap { $0 }.count == answers.values.map(\.count).reduce(0, +))
        #expect(batches.count < 40, "requests were gathered: \(batches.map(\.count))")
        #expect(batches.allSatisfy { $0.count <= 64 })
    }

    @Test("without load a request does not wait out maxWait")
    func idleRequestIsNotHeld() async throws {
        var c = MicroBatchConfiguration()
        c.maxWait = .seconds(2)  // the burst rule closes the batch after 250 ms of quiet
        let batcher = MicroBatcher(configuration: c) { Recorder().score($0) }
        defer { batcher.stop() }
        let clock = ContinuousClock()
        let start = clock.now
        _ = try await batcher.score(Self.transactions(1))
        #expect(clock.now - start < .seconds(1.5))
    }

    @Test("past maxPending requests are refused at once; past their deadline they are not scored")
    func saturationAndDeadlines() async throws {
        var c = MicroBatchConfiguration()
        c.maxWait = .milliseconds(300)
        c.maxPending = 3
        let recorder = Recorder(delay: .milliseconds(200))
        let batcher = MicroBatcher(configuration: c) { recorder.score($0) }
        defer { batcher.stop() }
        async let first = batcher.score(Self.transactions(3))
        try await Task.sleep(for: .milliseconds(20))
        await #expect(throws: ScoringRefusal.saturated) { try await batcher.score(Self.transactions(1, from: 100)) }
        #expect(try await first.count == 3)
        // The batch in front takes 200 ms to score; a 50 ms budget cannot wait for it.
        async let busy = batcher.score(Self.transactions(1, from: 200))
        try await Task.sleep(for: .milliseconds(120))
        let clock = ContinuousClock()
        await #expect(throws: ScoringRefusal.deadlineExceeded) {
            try await batcher.score(Self.transactions(1, from: 300), deadline: clock.now + .milliseconds(50))
        }
        #expect(try await busy.count == 1)
        #expect(!recorder.batches.withLock { $0 }.flatMap { $0 }.contains("t300"), "an expired request is never scored")
    }

    @Test("stop scores what is queued, then refuses")
    func stopDrains() async throws {
        var c = MicroBatchConfiguration()
        c.maxWait = .seconds(5)
        let batcher = MicroBatcher(configuration: c) { Recorder().score($0) }
        async let queued = batcher.score(Self.transactions(2))
        try await Task.sleep(for: .milliseconds(50))
        batcher.stop()
        #expect(try await queued.count == 2)
        await #expect(throws: ScoringRefusal.stopping) { try await batcher.score(Self.transactions(1)) }
    }

    @Test("a JSON array splits into its elements; anything else is not an array")
    func arraySplitting() {
        let text = #"  [ {"a":"x,]}"} , {"b":[1,2,{"c":"\"]"}]},3 ]  "#
        let bytes = Array(text.utf8)
        let parts = jsonArrayElements(bytes)?.map { String(decoding: bytes[$0], as: UTF8.self).trimmingCharacters(in: .whitespaces) }
        #expect(parts == [#"{"a":"x,]}"}"#, #"{"b":[1,2,{"c":"\"]"}]}"#, "3"])
        #expect(jsonArrayElements(Array("[]".utf8)) == [])
        #expect(jsonArrayElements(Array(#"{"id":"t"}"#.utf8)) == nil)
        #expect(jsonArrayElements(Array("[1,2".utf8)) == nil)
        #expect(jsonArrayElements(Array("[1] x".utf8)) == nil)
        #expect(jsonArrayElements(Array("[1,]".utf8))?.count == 2, "an empty element is the decoder's to refuse")
    }
}
