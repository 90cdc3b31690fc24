import Foundation
import Testing
@testable import VigilCore
@testable import VigilFeatures

/// The incremental windows (``EntityState``) against the recomputing reference kernel, feature by
/// feature and bit for bit, over random streams with out-of-order and late events, events later
/// than the allowed lateness, redeliveries, same-millisecond ties, labels and trims.
@Suite struct IncrementalWindowTests {
    /// Every kind of output: filters, max, std, distinct, profile with location and country,
    /// first-seen, risk.
    static let spec = """
        entities:
          card: card_id
          merchant: merchant_id
        aggregates:
          - entity: card
            windows: [1m, 10m, 1h, 6h]
            ops: [count, sum, mean, std, max]
          - entity: card
            windows: [10m, 1h]
            ops: [distinct(merchant_id), distinct(country)]
          - entity: card
            name: big
            filter: amount > 50
            windows: [1m, 1h]
            ops: [count, sum, max, std]
          - entity: card
            name: ecom
            filter: channel == "ecom"
            windows: [10m]
            ops: [count, max]
          - entity: merchant
            windows: [5m, 1h]
            ops: [count, mean, max, distinct(card_id)]
        profiles:
          - entity: card
            history: 2h
            features: [amount_zscore, amount_ratio, secs_since_last, distance_km, speed_kmh, cross_border]
            first_seen: [merchant_id, device_id]
        risk:
          - entity: card
            windows: [1h, 6h]
          - entity: merchant
            windows: [1h]
          - entity: merchant
            windows: [10m, 1h]
            delay: 30m
        """

    /// `sparse`: few events with a location or a country, far apart (most windows have none).
    static func stream(count: Int, seed: UInt64, entities: Int, sparse: Bool = false) -> [Transaction] {
        var rng = TestRNG(state: seed)
        var t: Int64 = 1_767_225_600_000
        var out: [Transaction] = []
        for i in 0..<count {
            t += Int64.random(in: 0...(sparse ? 1_200_000 : 20_000), using: &rng)
            var ts = t
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<12: ts -= Int64.random(in: 0...600_000, using: &rng)  // out of order, minutes
            case 12..<14: ts -= Int64.random(in: 0...10_800_000, using: &rng)  // hours late (beyond some windows)
            case 14..<16: ts = out.last?.timestamp ?? t  // same millisecond as the previous one
            default: break
            }
            if Int.random(in: 0..<25, using: &rng) == 0, let old = out.randomElement(using: &rng) {
                out.append(old)  // a redelivery
                continue
            }
            let hasLoc = Int.random(in: 0..<6, using: &rng) >= (sparse ? 5 : 2)
            out.append(Transaction(
                id: "t\(i)", timestamp: ts, amount: Double(Int.random(in: 0...20_000, using: &rng)) / 100,
                currency: "EUR", cardID: "c\(Int.random(in: 0..<entities, using: &rng))",
                merchantID: Int.random(in: 0..<8, using: &rng) == 0 ? nil : "m\(Int.random(in: 0..<entities, using: &rng))",
                deviceID: Bool.random(using: &rng) ? "d\(Int.random(in: 0..<5, using: &rng))" : nil,
                country: Int.random(in: 0..<8, using: &rng) < (sparse ? 7 : 2) ? nil : ["FR", "DE", "US"].randomElement(using: &rng),
                channel: Bool.random(using: &rng) ? "ecom" : "pos",
                lat: hasLoc ? Double.random(in: -60...60, using: &rng) : nil, lon: hasLoc ? Double.random(in: -100...100, using: &rng) : nil))
        }
        return out
    }

    @Test(arguments: [(UInt64(1), 3, Int64(0)), (2, 1, 0), (3, 12, 3_600_000), (4, 2, 1_800_000), (5, 1, 86_400_000)])
    func incrementalEqualsRecomputation(seed: UInt64, entities: Int, lateness: Int64) throws {
        let plan = try FeaturePlan(spec: FeatureSpec.parse(Self.spec))
        let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
        let txs = Self.stream(count: 3_000, seed: seed, entities: entities)
        let batch = engine.events(for: txs)
        var rng = TestRNG(state: seed &* 77)
        var states: [[UInt64: EntityState]] = Array(repeating: [:], count: plan.entities.count)
        let columns = plan.schema.count
        var incremental = [Float](repeating: .nan, count: columns)
        var reference = [Float](repeating: .nan, count: columns)
        var compared = 0
        var recorded: [(id: UInt64, time: Int64, keys: [UInt64])] = []
        // One scratch per entity type, shared by all its entities, as the stores' walk does.
        var scratch = plan.entities.map { WindowAggregates(plan: $0) }
        for i in 0..<batch.count {
            for (e, ep) in plan.entities.enumerated() {
                let key = batch.keys[i * batch.entityCount + e]
                guard key != 0 else { continue }
                var state = states[e][key, default: EntityState(plan: ep)]
                let base = i * batch.trackedTotal + batch.trackedOffsets[e]
                batch.tracked.withUnsafeBufferPointer { tracked in
                    let own = UnsafeBufferPointer(rebasing: tracked[base..<(base + ep.tracked.count)])
                    let c = CurrentEvent(time: batch.times[i], amount: batch.amounts[i], lat: batch.lats[i], lon: batch.lons[i], tracked: own)
                    state.trimToCanonical(plan: ep, lateness: lateness, at: batch.times[i])
                    incremental.withUnsafeMutableBufferPointer { state.evaluate(plan: ep, current: c, row: $0.baseAddress!, scratch: &scratch[e]) }
                    reference.withUnsafeMutableBufferPointer { EntityKernel.evaluate(state.events, plan: ep, current: c, row: $0.baseAddress!) }
                    state.insert(
                        plan: ep, time: batch.times[i], id: batch.ids[i], amount: batch.amounts[i], lat: batch.lats[i],
                        lon: batch.lons[i], filterBits: batch.filterBits[i * batch.entityCount + e], tracked: own)
                }
                states[e][key] = state
                for o in ep.outputs {
                    #expect(incremental[o.column].bitPattern == reference[o.column].bitPattern,
                            "tx \(i) \(plan.schema.names[o.column]): incremental \(incremental[o.column]) reference \(reference[o.column])")
                    compared += 1
                }
            }
            recorded.append((batch.ids[i], batch.times[i], (0..<batch.entityCount).map { batch.keys[i * batch.entityCount + $0] }))
            // Labels arrive for random earlier transactions, fraud or legitimate, sometimes flipping.
            if Int.random(in: 0..<6, using: &rng) == 0, let tx = recorded.randomElement(using: &rng) {
                let label: UInt8 = Int.random(in: 0..<3, using: &rng) == 0 ? 1 : 2
                for (e, key) in tx.keys.enumerated() where key != 0 {
                    guard let j = states[e][key]?.events.index(time: tx.time, id: tx.id) else { continue }
                    states[e][key]!.setLabel(label, at: j, plan: plan.entities[e])
                }
            }
        }
        #expect(compared > 50_000)
    }

    /// Windows moved back and forth at random, far more than late events move them: every split
    /// of the sliding maxima from either side, lanes emptied and refilled, the history lane's
    /// location and country markers scanning both ways. Each evaluation equals the reference.
    @Test(arguments: [(UInt64(7), false), (8, false), (9, true), (10, true)])
    func windowsMovedBackAndForth(seed: UInt64, sparse: Bool) throws {
        let plan = try FeaturePlan(spec: FeatureSpec.parse(Self.spec))
        let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
        let txs = Self.stream(count: 600, seed: seed, entities: 1, sparse: sparse)
        let batch = engine.events(for: txs)
        var rng = TestRNG(state: seed)
        let e = 0, ep = plan.entities[e]
        var state = EntityState(plan: ep)
        batch.tracked.withUnsafeBufferPointer { tracked in
            func own(_ i: Int) -> UnsafeBufferPointer<UInt64> {
                let base = i * batch.trackedTotal + batch.trackedOffsets[e]
                return UnsafeBufferPointer(rebasing: tracked[base..<(base + ep.tracked.count)])
            }
            // Events recorded in random order (as a store catching up on another instance's
            // log records them), evaluations at random times in between.
            var order = Array(0..<batch.count).shuffled(using: &rng)
            let first = batch.times.min()!, last = batch.times.max()!
            var incremental = [Float](repeating: .nan, count: plan.schema.count), reference = incremental
            var scratch = WindowAggregates(plan: ep)
            var t = first
            for step in 0..<3_000 {
                for _ in 0..<Int.random(in: 0...2, using: &rng) {
                    guard let i = order.popLast() else { break }
                    state.insert(plan: ep, time: batch.times[i], id: batch.ids[i], amount: batch.amounts[i], lat: batch.lats[i],
                                 lon: batch.lons[i], filterBits: batch.filterBits[i * batch.entityCount + e], tracked: own(i))
                }
                // Now and then the oldest events are dropped, from inside the windows too.
                if Int.random(in: 0..<40, using: &rng) == 0, let newest = state.events.newestTime {
                    state.trim(plan: ep, before: newest - Int64.random(in: 0...(3 * ep.retention), using: &rng))
                }
                // Mostly short steps either way, sometimes a jump past every window.
                t = Int.random(in: 0..<10, using: &rng) == 0
                    ? Int64.random(in: first...(last + 3_600_000), using: &rng)
                    : min(max(first, t + Int64.random(in: -900_000...900_000, using: &rng)), last + 3_600_000)
                let i = Int.random(in: 0..<batch.count, using: &rng)
                // Always located, so that distance and speed show the window's latest location.
                let c = CurrentEvent(time: t, amount: batch.amounts[i], lat: 48.85, lon: 2.35, tracked: own(i))
                incremental.withUnsafeMutableBufferPointer { state.evaluate(plan: ep, current: c, row: $0.baseAddress!, scratch: &scratch) }
                reference.withUnsafeMutableBufferPointer { EntityKernel.evaluate(state.events, plan: ep, current: c, row: $0.baseAddress!) }
                for o in ep.outputs where incremental[o.column].bitPattern != reference[o.column].bitPattern {
                    Issue.record("step \(step) at \(t): \(plan.schema.names[o.column]) incremental \(incremental[o.column]) reference \(reference[o.column])")
                }
            }
        }
    }

    /// The reference-count table against a dictionary: colliding keys under several tags,
    /// growing and shrinking through backward-shift deletions.
    @Test func refTableMatchesDictionary() {
        var rng = TestRNG(state: 5)
        var table = RefTable()
        var model: [Pair: Int] = [:]
        for step in 0..<200_000 {
            // Few distinct keys (collisions and long probe runs), sometimes a burst of new ones.
            let key = UInt64.random(in: 1...(step % 20_000 < 10_000 ? 64 : 5_000), using: &rng)
            let tag = Int.random(in: 0..<3, using: &rng)
            let p = Pair(key: key, tag: tag)
            if Int.random(in: 0..<100, using: &rng) < (step % 20_000 < 10_000 ? 55 : 45) {
                #expect(table.increment(key, tag: tag) == (model[p] == nil))
                model[p, default: 0] += 1
            } else if model[p] != nil {
                #expect(table.decrement(key, tag: tag) == (model[p] == 1))
                model[p] = model[p]! > 1 ? model[p]! - 1 : nil
            }
            #expect(table.contains(key, tag: tag) == (model[p] != nil))
            #expect(table.count == model.count)
        }
        for (p, n) in model { for _ in 0..<n { table.decrement(p.key, tag: p.tag) } }
        #expect(table.count == 0 && table.slots.count <= 16)
    }

    /// The remembered transactions against a queue and a dictionary: appends, the oldest
    /// forgotten, lookups of held and forgotten ids, growth past many resizes and shrinking to
    /// empty, ids coming back after they were forgotten.
    @Test func rememberedTransactionsMatchAQueue() {
        var rng = TestRNG(state: 11)
        var remembered = RememberedTransactions(keyCount: 2)
        var queue: [(seq: Int, id: UInt64)] = [], front = 0
        var held: [UInt64: Int] = [:]
        var forgotten: [UInt64] = []
        var seq = 0
        var firstDifference: String?
        func check(_ ok: Bool, _ what: @autoclosure () -> String) { if !ok && firstDifference == nil { firstDifference = what() } }
        for step in 0..<150_000 {
            // Grows for the first half, then shrinks to nothing.
            let append = step < 75_000 ? Int.random(in: 0..<100, using: &rng) < 70 : Int.random(in: 0..<100, using: &rng) < 25
            if append || front == queue.count {
                // Now and then an id forgotten earlier comes back (a redelivery past its retention).
                let id = !forgotten.isEmpty && Int.random(in: 0..<10, using: &rng) == 0
                    ? forgotten.removeLast() : UInt64.random(in: 1...UInt64.max, using: &rng)
                guard held[id] == nil else { continue }
                remembered.append(.init(time: Int64(seq), seq: seq, id: id), keys: [id, UInt64(seq)])
                queue.append((seq, id))
                held[id] = seq
                seq += 1
            } else {
                remembered.removeFirst()
                let gone = queue[front]
                front += 1
                held[gone.id] = nil
                forgotten.append(gone.id)
            }
            check(remembered.count == queue.count - front, "step \(step): \(remembered.count) held, the queue \(queue.count - front)")
            check(remembered.entries.first?.seq == (front < queue.count ? queue[front].seq : nil), "step \(step): another oldest")
            let probe = queue[Int.random(in: 0..<queue.count, using: &rng)]
            let entry = remembered[probe.id]
            check(remembered.contains(probe.id) == (held[probe.id] != nil), "step \(step): contains differs")
            check(entry?.seq == held[probe.id] && entry.map { $0.id == probe.id && remembered.key(0, of: $0) == $0.id && remembered.key(1, of: $0) == UInt64($0.seq) } ?? true,
                  "step \(step): the entry found for an id is another's")
        }
        #expect(firstDifference == nil, "\(firstDifference ?? "")")
        while remembered.count > 0 { remembered.removeFirst() }
        #expect(queue.allSatisfy { !remembered.contains($0.id) })
    }

    /// The store's entity table (on a `SlotIndex`) against a dictionary: inserts and removals by
    /// key and by position (the last value moving into the hole), lookups of absent keys, growth,
    /// and keys crowded into few slots (long probe runs, removals shifting them back, wrapping
    /// round the end).
    @Test func hashedTableMatchesDictionary() {
        var rng = TestRNG(state: 9)
        var table = HashedTable<Int>()
        var model: [UInt64: Int] = [:]
        // A pool of keys sharing their top bits after the multiplication would be contrived;
        // random keys from a small pool collide often enough at 70% load, and the pool grows.
        // `#expect` per step made the test take half a minute: the first difference is kept instead.
        var firstDifference: String?
        func check(_ ok: Bool, _ what: @autoclosure () -> String) { if !ok && firstDifference == nil { firstDifference = what() } }
        var pool = (0..<64).map { _ in UInt64.random(in: 0...UInt64.max, using: &rng) }
        for step in 0..<200_000 {
            if step % 20_000 == 10_000 { pool += (0..<5_000).map { _ in UInt64.random(in: 0...UInt64.max, using: &rng) } }
            let key = pool[Int.random(in: 0..<pool.count, using: &rng)]
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<50:
                if model[key] == nil {
                    let p = table.insert(key, step)
                    check(table.keys[p] == key && table.values[p] == step, "step \(step): inserted at \(p), reads back otherwise")
                    model[key] = step
                } else {
                    table.values[table.position(of: key)!] = step
                    model[key] = step
                }
            case 50..<80:
                let removed = table.removeValue(forKey: key), expected = model.removeValue(forKey: key)
                check(removed == expected, "step \(step): removing a key gave \(String(describing: removed)), not \(String(describing: expected))")
            default:
                // By position, as expiry removes an entity it has looked up.
                guard !model.isEmpty else { continue }
                let p = Int.random(in: 0..<table.count, using: &rng)
                let k = table.keys[p]
                check(model.removeValue(forKey: k) == table.values[p], "step \(step): position \(p) holds another key's value")
                table.remove(at: p)
            }
            check(table.count == model.count, "step \(step): \(table.count) values, the dictionary \(model.count)")
            check(table[key] == model[key], "step \(step): lookup after the step differs")
            if step % 10_000 == 0 {
                check(Dictionary(uniqueKeysWithValues: zip(table.keys, table.values)) == model, "step \(step): keys and values differ")
                for (k, v) in model { check(table[k] == v, "step \(step): a held key is not found") }
            }
        }
        #expect(firstDifference == nil, "\(firstDifference ?? "")")
        for k in Array(model.keys) {
            table.removeValue(forKey: k)
            model[k] = nil
        }
        #expect(table.count == 0 && table.keys.isEmpty && table.values.isEmpty)
        #expect(pool.allSatisfy { table.position(of: $0) == nil })
    }

    struct Pair: Hashable {
        var key: UInt64
        var tag: Int
    }

    /// Exactness that floating-point running sums would lose: adding and removing 0.1 a million
    /// times leaves exactly the last window's sum.
    @Test func sumsStayExactUnderLongSlides() throws {
        let plan = try FeaturePlan(spec: FeatureSpec.parse("""
            entities:
              card: card_id
            aggregates:
              - entity: card
                windows: [1m]
                ops: [sum, mean, std]
            """))
        let store = InMemoryVelocityStore(plan: plan)
        let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
        var txs: [Transaction] = []
        for i in 0..<20_000 { txs.append(Transaction(id: "t\(i)", timestamp: 1_767_225_600_000 + Int64(i) * 10_000, amount: 0.1 + Double(i % 3) * 1e-4, cardID: "c")) }
        let m = try engine.features(txs, store: store)
        let last = txs.count - 1
        // Six events in the minute before the last one (at 10 s steps: t−60 s … t−10 s).
        let expected = (last - 6..<last).reduce(0.0) { $0 + Double(Int((0.1 + Double($1 % 3) * 1e-4) * 10_000)) } / 10_000
        #expect(m[last, "card_sum_1m"] == Float(expected))
    }
}
