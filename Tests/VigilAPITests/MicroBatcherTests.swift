import Foundation
import Synchronization
import Testing
import Vigil
@testable import VigilAPI

struct MicroBatcherTests {
    static func transactions(_ n: Int, from: Int = 0) -> [Transaction] {
        (from..<(from + n)).map { Transaction(id: "t\($0)", timestamp: 1_700_000_000_000 + Int64($0), amount: Double($0)) }
    }

    /// A scorer that records the batches it was given and answers each id with a verdict; with a
    /// gate, it holds each batch until the gate opens.
    final class Recorder: Sendable {
        let batches = Mutex<[[String]]>([])
        let entered = Mutex(0)
        let gate: DispatchSemaphore?
        init(gated: Bool = false) { gate = gated ? DispatchSemaphore(value: 0) : nil }
        func score(_ txs: [Transaction]) -> [Verdict] {
            entered.withLock { $0 += 1 }
            gate?.wait()
            gate?.signal()
            batches.withLock { $0.append(txs.map(\.id)) }
            return txs.map { Verdict(transactionID: $0.id, action: .approve, probability: $0.amount / 1000, modelVersion: "m", rulesVersion: "r") }
        }
        func open() { gate?.signal() }
    }

    /// Waits (without blocking a thread) until `condition` holds.
    static func until(_ condition: () -> Bool) async throws {
        while !condition() { try await Task.sleep(for: .milliseconds(2)) }
    }

    @Test("concurrent requests share batches; each gets its own verdicts, in order")
    func gathersConcurrentRequests() async throws {
        var c = MicroBatchConfiguration()
        c.maxWait = .seconds(2)  // closes 250 ms after the last arrival
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

    @Test("without load a request does not wait out maxWait: the batch closes when arrivals stop")
    func idleRequestIsNotHeld() async throws {
        var c = MicroBatchConfiguration()
        c.maxWait = .seconds(20)  // the quiet-gap rule closes the batch after 2.5 s without arrivals
        let waited = Mutex<[Duration]>([])
        let batcher = MicroBatcher(configuration: c, onBatch: { r in waited.withLock { $0.append(r.waited) } }) { Recorder().score($0) }
        defer { batcher.stop() }
        _ = try await batcher.score(Self.transactions(1))
        let w = try #require(waited.withLock { $0.first })
        #expect(w >= .seconds(2.5) && w < .seconds(20), "closed after \(w)")
    }

    @Test("past maxPending requests are refused at once; past their deadline they are not scored")
    func saturationAndDeadlines() async throws {
        var c = MicroBatchConfiguration()
        c.maxWait = .zero
        c.maxPending = 3
        let recorder = Recorder(gated: true)
        let batcher = MicroBatcher(configuration: c) { recorder.score($0) }
        defer { batcher.stop() }
        // One batch held in the scorer, three transactions waiting behind it: the queue is full.
        async let first = batcher.score(Self.transactions(1))
        try await Self.until { recorder.entered.withLock { $0 } == 1 }
        async let waiting = batcher.score(Self.transactions(3, from: 10))
        try await Self.until { batcher.pending == 3 }
        await #expect(throws: ScoringRefusal.saturated) { try await batcher.score(Self.transactions(1, from: 100)) }
        recorder.open()
        #expect(try await first.count == 1)
        #expect(try await waiting.count == 3)
        let clock = ContinuousClock()
        await #expect(throws: ScoringRefusal.deadlineExceeded) {
            try await batcher.score(Self.transactions(1, from: 300), deadline: clock.now - .milliseconds(1))
        }
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
