import Foundation
import Testing
@testable import VigilCore
@testable import VigilFeatures

/// The in-memory store's journal: a store reopened from it continues exactly where the killed
/// one stopped (features bit for bit, redeliveries included), a torn last record is cut off, and
/// anything else wrong with the files fails at open with the file and the byte.
@Suite struct StoreJournalTests {
    enum Op {
        case batch([Transaction])
        case labels([(id: String, fraud: Bool)])
    }

    /// Batches of 1–40 transactions (the stream has out-of-order, late and redelivered ones),
    /// labels for earlier transactions now and then, and whole batches delivered again.
    static func operations(seed: UInt64) -> [Op] {
        let txs = IncrementalWindowTests.stream(count: 3_000, seed: seed, entities: 6)
        var rng = TestRNG(state: seed &* 31)
        var ops: [Op] = []
        var i = 0
        while i < txs.count {
            let n = min(txs.count - i, Int.random(in: 1...40, using: &rng))
            ops.append(.batch(Array(txs[i..<(i + n)])))
            i += n
            if Int.random(in: 0..<3, using: &rng) == 0 {
                ops.append(.labels((0..<5).map { _ in (txs[Int.random(in: 0..<i, using: &rng)].id, Bool.random(using: &rng)) }))
            }
            if Int.random(in: 0..<10, using: &rng) == 0, let again = ops.last(where: { if case .batch = $0 { true } else { false } }) {
                ops.append(again)
            }
        }
        return ops
    }

    static let lateness: Int64 = 3_600_000

    /// Runs `ops` on `store`, returning each batch's matrix.
    static func run(_ ops: ArraySlice<Op>, on store: InMemoryVelocityStore, engine: FeatureEngine) throws -> [[Float]] {
        var out: [[Float]] = []
        for op in ops {
            switch op {
            case .batch(let txs):
                var m = FeatureMatrix(schema: engine.schema, rows: txs.count)
                try store.process(engine.events(for: txs), into: &m)
                out.append(m.values)
            case .labels(let l):
                try store.apply(labels: l.map { (engine.idHash($0.id), $0.fraud) })
            }
        }
        return out
    }

    static func directory() -> String {
        NSTemporaryDirectory() + "vigil-journal-\(UUID().uuidString.prefix(8))"
    }

    static func segments(_ dir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".journal") }.sorted()
    }

    func setUp() throws -> (FeaturePlan, FeatureEngine, JournalConfiguration) {
        let plan = try FeaturePlan(spec: FeatureSpec.parse(IncrementalWindowTests.spec))
        var journal = JournalConfiguration(directory: Self.directory(), keyCheck: KeyedHasher.insecureDevelopmentKey.check)
        journal.segmentBytes = 16 << 10  // many segments, so old ones get deleted during the stream
        return (plan, FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey), journal)
    }

    func expectSame(_ a: [[Float]], _ b: [[Float]], _ what: String) {
        #expect(a.count == b.count)
        for (k, (x, y)) in zip(a, b).enumerated() where x.map(\.bitPattern) != y.map(\.bitPattern) {
            Issue.record("\(what): batch \(k) differs")
            return
        }
    }

    @Test("a store reopened from its journal, at any point of a stream, computes what one that never stopped computes", arguments: [UInt64(1), 2, 3])
    func reopenContinuesExactly(seed: UInt64) throws {
        let (plan, engine, journal) = try setUp()
        defer { try? FileManager.default.removeItem(atPath: journal.directory) }
        let ops = Self.operations(seed: seed)
        let reference = try Self.run(ops[...], on: InMemoryVelocityStore(plan: plan, allowedLateness: Self.lateness), engine: engine)
        var rng = TestRNG(state: seed)
        // Stop and reopen at three random points.
        var cuts = (0..<3).map { _ in Int.random(in: 1..<ops.count, using: &rng) }.sorted()
        cuts.append(ops.count)
        var got: [[Float]] = []
        var from = 0
        for cut in cuts {
            let store = try InMemoryVelocityStore(plan: plan, allowedLateness: Self.lateness, journal: journal)
            got += try Self.run(ops[from..<cut], on: store, engine: engine)
            from = cut
        }
        expectSame(got, reference, "reopened")
        // The stream spans ~8 hours against 6 hours of retention and 1 of lateness: the oldest
        // segments were deleted along the way.
        let files = try Self.segments(journal.directory)
        #expect(!files.contains("000000000001.journal"), "old segments deleted: \(files.prefix(3))")
        #expect(files.count > 1)
    }

    @Test("a record torn by a kill is cut off at open; its batch, delivered again, gets what it got the first time")
    func tornTail() throws {
        var (plan, engine, journal) = try setUp()
        journal.segmentBytes = 64 << 20  // one segment: the torn record is in the last file
        defer { try? FileManager.default.removeItem(atPath: journal.directory) }
        let ops = Self.operations(seed: 5)
        let reference = try Self.run(ops[...], on: InMemoryVelocityStore(plan: plan, allowedLateness: Self.lateness), engine: engine)
        let cut = ops.lastIndex { if case .batch(let b) = $0 { b.count > 10 } else { false } }! / 2
        var k = cut
        while case .labels = ops[k] { k += 1 }
        do {
            let store = try InMemoryVelocityStore(plan: plan, allowedLateness: Self.lateness, journal: journal)
            _ = try Self.run(ops[..<(k + 1)], on: store, engine: engine)
        }
        // The process died inside the last write: part of batch k's record is on disk.
        let last = journal.directory + "/" + (try Self.segments(journal.directory).last!)
        let size = try FileManager.default.attributesOfItem(atPath: last)[.size] as! Int
        #expect(truncate(last, off_t(size - 9)) == 0)
        let store = try InMemoryVelocityStore(plan: plan, allowedLateness: Self.lateness, journal: journal)
        let after = try FileManager.default.attributesOfItem(atPath: last)[.size] as! Int
        #expect(after < size - 9, "the torn record was cut off")
        let got = try Self.run(ops[k...], on: store, engine: engine)
        let batchesBefore = ops[..<k].filter { if case .batch = $0 { true } else { false } }.count
        expectSame(got, Array(reference[batchesBefore...]), "after the torn record")
    }

    @Test("damage other than a torn tail, a journal of another spec or secret, and a foreign file fail at open with the file and the cause")
    func refusedAtOpen() throws {
        let (plan, engine, journal) = try setUp()
        defer { try? FileManager.default.removeItem(atPath: journal.directory) }
        let ops = Self.operations(seed: 6)
        do {
            let store = try InMemoryVelocityStore(plan: plan, allowedLateness: Self.lateness, journal: journal)
            _ = try Self.run(ops[..<60], on: store, engine: engine)
        }
        let first = journal.directory + "/" + (try Self.segments(journal.directory).first!)

        // One store per journal: a second one is refused while the first is open.
        do {
            let holder = try InMemoryVelocityStore(plan: plan, journal: journal)
            #expect(performing: { _ = try InMemoryVelocityStore(plan: plan, journal: journal) }, throws: { error in
                (error as! ConfigurationError).message.contains("another store holds this journal")
            })
            withExtendedLifetime(holder) {}
        }

        // Another hash secret, then another spec.
        var other = journal
        other.keyCheck = try KeyedHasher(secret: Array("another secret, 32 bytes long...".utf8)).check
        #expect(performing: { _ = try InMemoryVelocityStore(plan: plan, journal: other) }, throws: { error in
            let e = error as! ConfigurationError
            return e.file == first && e.message.contains("another feature spec or hash secret")
        })
        let otherPlan = try FeaturePlan(spec: FeatureSpec.parse(IncrementalWindowTests.spec.replacingOccurrences(of: "amount > 50", with: "amount > 60")))
        #expect(throws: ConfigurationError.self) { _ = try InMemoryVelocityStore(plan: otherPlan, journal: journal) }

        // A flipped byte in the middle of a closed segment.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: first))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: first))
        #expect(performing: { _ = try InMemoryVelocityStore(plan: plan, journal: journal) }, throws: { error in
            let e = error as! ConfigurationError
            return e.file == first && e.message.contains("corrupt record at byte")
        })

        // Not a journal at all.
        try Data("hello".utf8).write(to: URL(fileURLWithPath: first))
        #expect(performing: { _ = try InMemoryVelocityStore(plan: plan, journal: journal) }, throws: { error in
            (error as! ConfigurationError).message.contains("not a Vigil store journal")
        })
    }
}
