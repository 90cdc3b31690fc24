import Foundation
import Testing
@testable import VigilCore
@testable import VigilFeatures

/// A deterministic generator for test streams.
struct TestRNG: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

let testSpec = """
    entities:
      card: card_id
      device: device_id
    fields: [amount]
    calendar: [hour, weekend]
    aggregates:
      - entity: card
        windows: [1m, 10m, 1h]
        ops: [count, sum, mean, std, max, distinct(merchant_id)]
      - entity: card
        name: big
        filter: amount > 50
        windows: [10m, 1h]
        ops: [count, sum]
      - entity: device
        windows: [1h]
        ops: [count, distinct(card_id)]
    profiles:
      - entity: card
        history: 1h
        features: [amount_zscore, secs_since_last, distance_km]
        first_seen: [device_id]
    risk:
      - entity: card
        windows: [1h]
    derived:
      - name: amount_x2
        expr: amount * 2
    """

func randomStream(count: Int, seed: UInt64, outOfOrder: Bool = false) -> [Transaction] {
    var rng = TestRNG(state: seed)
    var t: Int64 = 1_767_225_600_000
    var out: [Transaction] = []
    for i in 0..<count {
        t += Int64.random(in: 0...40_000, using: &rng)
        var ts = t
        if outOfOrder, Int.random(in: 0..<10, using: &rng) == 0 { ts -= Int64.random(in: 0...300_000, using: &rng) }
        let card: String? = Int.random(in: 0..<20, using: &rng) == 0 ? nil : "card\(Int.random(in: 0..<12, using: &rng))"
        let device: String? = Bool.random(using: &rng) ? "dev\(Int.random(in: 0..<6, using: &rng))" : nil
        let hasLoc = Bool.random(using: &rng)
        out.append(Transaction(
            id: "t\(i)", timestamp: ts, amount: Double(Int.random(in: 1...10_000, using: &rng)) / 100, cardID: card,
            merchantID: Bool.random(using: &rng) ? "m\(Int.random(in: 0..<5, using: &rng))" : nil, deviceID: device,
            lat: hasLoc ? Double.random(in: -60...60, using: &rng) : nil, lon: hasLoc ? Double.random(in: -100...100, using: &rng) : nil))
    }
    return out
}

/// The obvious implementation: for each transaction, look at every earlier one.
func referenceFeatures(_ txs: [Transaction], labelled: Set<String> = []) -> [[String: Double]] {
    var out: [[String: Double]] = []
    for (i, tx) in txs.enumerated() {
        var f: [String: Double] = [:]
        let prior = txs[..<i]
        func cardEvents(_ w: Int64) -> [Transaction] {
            guard let c = tx.cardID else { return [] }
            // Distinct ids: the store keeps the first copy of a redelivered transaction.
            return prior.filter { $0.cardID == c && $0.timestamp < tx.timestamp && tx.timestamp - $0.timestamp <= w }
        }
        for (w, name) in [(Int64(60_000), "1m"), (600_000, "10m"), (3_600_000, "1h")] {
            let ev = cardEvents(w)
            let n = Double(ev.count)
            let s = ev.reduce(0) { $0 + $1.amount }
            let ss = ev.reduce(0) { $0 + $1.amount * $1.amount }
            f["card_count_\(name)"] = n
            f["card_sum_\(name)"] = s
            f["card_mean_\(name)"] = n > 0 ? s / n : .nan
            f["card_std_\(name)"] = n > 0 ? max(0, ss / n - (s / n) * (s / n)).squareRoot() : .nan
            f["card_max_\(name)"] = ev.map(\.amount).max() ?? .nan
            f["card_distinct_merchant_id_\(name)"] = Double(Set(ev.compactMap(\.merchantID)).count)
            if name != "1m" {
                let big = ev.filter { $0.amount > 50 }
                f["card_big_count_\(name)"] = Double(big.count)
                f["card_big_sum_\(name)"] = big.reduce(0) { $0 + $1.amount }
            }
        }
        let hour = cardEvents(3_600_000)
        f["card_secs_since_last"] = hour.map { Double(tx.timestamp - $0.timestamp) / 1000 }.min() ?? .nan
        f["card_new_device_id"] = tx.deviceID == nil || hour.isEmpty ? .nan : (hour.contains { $0.deviceID == tx.deviceID } ? 0 : 1)
        f["card_fraud_rate_1h"] = hour.isEmpty ? .nan : Double(hour.filter { labelled.contains($0.id) }.count) / Double(hour.count)
        if let d = tx.deviceID {
            let ev = prior.filter { $0.deviceID == d && $0.timestamp < tx.timestamp && tx.timestamp - $0.timestamp <= 3_600_000 }
            f["device_count_1h"] = Double(ev.count)
            f["device_distinct_card_id_1h"] = Double(Set(ev.compactMap(\.cardID)).count)
        }
        if tx.cardID == nil { for k in f.keys where k.hasPrefix("card_") { f[k] = .nan } }
        out.append(f)
    }
    return out
}

func close(_ a: Float, _ b: Double) -> Bool {
    if a.isNaN || b.isNaN { return a.isNaN && b.isNaN }
    return abs(Double(a) - b) <= 1e-4 * max(1, abs(b))
}

@Suite struct FeatureEngineTests {
    let plan = try! FeaturePlan(spec: FeatureSpec.parse(testSpec))
    var engine: FeatureEngine { FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey) }

    func run(_ txs: [Transaction], store: InMemoryVelocityStore, batch: Int) throws -> FeatureMatrix {
        var all = FeatureMatrix(schema: plan.schema, rows: txs.count)
        var i = 0
        while i < txs.count {
            let slice = Array(txs[i..<min(i + batch, txs.count)])
            let m = try engine.features(slice, store: store)
            for r in 0..<slice.count {
                for c in 0..<plan.schema.count { all[i + r, c] = m[r, c] }
            }
            i += batch
        }
        return all
    }

    @Test(arguments: [(1, false), (7, false), (64, true)])
    func windowsMatchBruteForce(batch: Int, outOfOrder: Bool) throws {
        var txs = randomStream(count: 1500, seed: UInt64(batch), outOfOrder: outOfOrder)
        if outOfOrder { txs.sort { $0.timestamp < $1.timestamp } }  // the reference needs "earlier in the stream"
        let m = try run(txs, store: InMemoryVelocityStore(plan: plan), batch: batch)
        let ref = referenceFeatures(txs)
        var compared = 0
        for (r, expected) in ref.enumerated() {
            for (name, value) in expected {
                let col = try #require(plan.schema.index(of: name), "\(name)")
                #expect(close(m[r, col], value), "row \(r) \(name): \(m[r, col]) vs \(value)")
                compared += 1
            }
        }
        #expect(compared > 20_000)
    }

    @Test func outOfOrderEventsSeeOnlyEarlierEventTime() throws {
        let base: Int64 = 1_767_225_600_000
        let store = InMemoryVelocityStore(plan: plan)
        let late = Transaction(id: "late", timestamp: base + 30_000, amount: 5, cardID: "c")
        let m = try engine.features([
            Transaction(id: "a", timestamp: base, amount: 10, cardID: "c"),
            Transaction(id: "b", timestamp: base + 60_000, amount: 20, cardID: "c"),
            late,  // arrives after b but happened before it: sees only a
        ], store: store)
        #expect(m[2, "card_count_10m"] == 1 && m[2, "card_sum_10m"] == 10)
        let next = try engine.features([Transaction(id: "d", timestamp: base + 90_000, amount: 1, cardID: "c")], store: store)
        #expect(next[0, "card_count_10m"] == 3 && next[0, "card_sum_10m"] == 35)
    }

    @Test func pointInTimeAndIdempotence() throws {
        let base: Int64 = 1_767_225_600_000
        let store = InMemoryVelocityStore(plan: plan)
        let a = Transaction(id: "a", timestamp: base, amount: 10, cardID: "c", deviceID: "d1")
        let b = Transaction(id: "b", timestamp: base + 1000, amount: 30, cardID: "c", deviceID: "d2")
        let first = try engine.features([a, b], store: store)
        #expect(first[0, "card_count_1m"] == 0)  // never itself
        #expect(first[1, "card_count_1m"] == 1 && first[1, "card_sum_1m"] == 10)  // sees the one before it in the batch
        #expect(first[1, "card_new_device_id"] == 1)
        // Redelivery: the same features, and nothing counted twice.
        let again = try engine.features([a, b], store: store)
        for c in 0..<plan.schema.count {
            #expect(first[1, c].bitPattern == again[1, c].bitPattern || (first[1, c].isNaN && again[1, c].isNaN))
        }
        let c = try engine.features([Transaction(id: "c3", timestamp: base + 2000, amount: 1, cardID: "c", deviceID: "d2")], store: store)
        #expect(c[0, "card_count_1m"] == 2 && c[0, "card_sum_1m"] == 40 && c[0, "card_new_device_id"] == 0)
        // Same timestamp: not "strictly before".
        let tie = try engine.features([Transaction(id: "tie", timestamp: base + 2000, amount: 1, cardID: "c")], store: store)
        #expect(tie[0, "card_count_1m"] == 2)
    }

    /// The store starts loading a batch's entities four transactions ahead of the walk: an entity
    /// first added by the transaction just before (or two, three before) was not there yet then,
    /// and must still be found, not added twice.
    @Test("entities new to the store, repeated within a batch, get the features they get one transaction at a time")
    func newEntitiesRepeatedWithinABatch() throws {
        let base: Int64 = 1_767_225_600_000
        var txs: [Transaction] = []
        for k in 0..<90 {
            // Card k/6 six times in a row, each device for runs of 1 to 5 transactions.
            txs.append(Transaction(id: "n\(k)", timestamp: base + Int64(k) * 1000, amount: Double(k % 17) * 7,
                                   cardID: "card\(k / 6)", deviceID: "dev\(k / (1 + k % 5))"))
        }
        let one = try run(txs, store: InMemoryVelocityStore(plan: plan), batch: 1)
        let whole = try run(txs, store: InMemoryVelocityStore(plan: plan), batch: 90)
        for r in 0..<txs.count {
            for c in 0..<plan.schema.count {
                #expect(one[r, c].bitPattern == whole[r, c].bitPattern || (one[r, c].isNaN && whole[r, c].isNaN), "row \(r) column \(plan.schema.names[c])")
            }
        }
        #expect(whole[5, "card_count_1m"] == 5)
    }

    @Test("a redelivery gets its first features even after a late event arrived in between")
    func redeliveryAfterALateEvent() throws {
        let base: Int64 = 1_767_225_600_000
        let store = InMemoryVelocityStore(plan: plan)
        let a = Transaction(id: "a", timestamp: base, amount: 10, cardID: "c", deviceID: "d1")
        let t = Transaction(id: "t", timestamp: base + 60_000, amount: 20, cardID: "c", deviceID: "d2")
        let first = try engine.features([a, t], store: store)
        #expect(first[1, "card_count_10m"] == 1)
        // From a lagging partition: earlier than t in event time, recorded after it.
        let late = try engine.features([Transaction(id: "late", timestamp: base + 30_000, amount: 5, cardID: "c", deviceID: "d2")], store: store)
        #expect(late[0, "card_count_10m"] == 1)
        let again = try engine.features([t], store: store)
        for c in 0..<plan.schema.count {
            #expect(first[1, c].bitPattern == again[0, c].bitPattern || (first[1, c].isNaN && again[0, c].isNaN), "\(plan.schema.names[c])")
        }
        // A new transaction at t's time sees the late event: only redeliveries look back in arrival order.
        let fresh = try engine.features([Transaction(id: "u", timestamp: base + 60_000, amount: 1, cardID: "c")], store: store)
        #expect(fresh[0, "card_count_10m"] == 2)
    }

    @Test("redeliveries after random late arrivals get their first features, batch by batch", arguments: [1, 5, 40])
    func redeliveriesAreStable(batch: Int) throws {
        var txs = randomStream(count: 1200, seed: 77 + UInt64(batch), outOfOrder: true)
        var shuffler = TestRNG(state: 5)
        txs.shuffle(using: &shuffler)  // plenty of late arrivals
        let store = InMemoryVelocityStore(plan: plan)
        var firstRows: [String: [UInt32]] = [:]
        var rng = TestRNG(state: 9)
        var i = 0
        var checked = 0
        while i < txs.count {
            var slice = Array(txs[i..<min(i + batch, txs.count)])
            // Redeliver a few earlier transactions in the middle of new ones.
            for _ in 0..<Int(rng.next() % 3) where i > 0 { slice.insert(txs[Int(rng.next() % UInt64(i))], at: Int(rng.next() % UInt64(slice.count + 1))) }
            let m = try engine.features(slice, store: store)
            for (r, tx) in slice.enumerated() {
                let row = (0..<plan.schema.count).map { m[r, $0].isNaN ? UInt32.max : m[r, $0].bitPattern }
                if let first = firstRows[tx.id] {
                    #expect(first == row, "\(tx.id) redelivered")
                    checked += 1
                } else {
                    firstRows[tx.id] = row
                }
            }
            i += batch
        }
        #expect(checked > 20)
    }

    @Test func windowEdgesAndExpiry() throws {
        let base: Int64 = 1_767_225_600_000
        let store = InMemoryVelocityStore(plan: plan)
        _ = try engine.features([Transaction(id: "a", timestamp: base, amount: 10, cardID: "c")], store: store)
        let edge = try engine.features([Transaction(id: "b", timestamp: base + 60_000, amount: 1, cardID: "c")], store: store)
        #expect(edge[0, "card_count_1m"] == 1)  // exactly one window old: inside [t - w, t)
        let past = try engine.features([Transaction(id: "c", timestamp: base + 60_001 + 60_000, amount: 1, cardID: "c")], store: store)
        #expect(past[0, "card_count_1m"] == 0 && past[0, "card_count_10m"] == 2)
        let idle = try engine.features([Transaction(id: "d", timestamp: base + 10 * 3_600_000, amount: 1, cardID: "c")], store: store)
        #expect(idle[0, "card_count_1h"] == 0 && idle[0, "card_secs_since_last"]!.isNaN)
    }

    @Test("the in-memory store forgets transaction ids and idle entities past retention plus lateness, batch by batch")
    func memoryStaysBounded() throws {
        let base: Int64 = 1_767_225_600_000
        let plan = try FeaturePlan(spec: .default)
        let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
        // Nothing kept for being among the last transactions (65,536 in production).
        let store = InMemoryVelocityStore(plan: plan, allowedLateness: 86_400_000, remembered: 0)
        let day: Int64 = 86_400_000, perDay = 50, days = 120
        for d in 0..<days {
            // A new card for every transaction: each is idle from the next one on.
            let txs = (0..<perDay).map { k in
                Transaction(id: "t\(d)-\(k)", timestamp: base + Int64(d) * day + Int64(k) * 60_000, amount: 5, cardID: "c\(d)-\(k)", merchantID: "m")
            }
            _ = try engine.features(txs, store: store)
        }
        // Kept: the days within retention plus one day of lateness, and one more for the lazy
        // queue; forgotten: all the days before, which a pass over everything used to drop.
        func kept(_ retention: Int64) -> ClosedRange<Int> { Int(retention / day) * perDay...(Int(retention / day) + 2) * perDay }
        #expect(plan.retention < 40 * day && kept(plan.retention).contains(store.transactionCount), "ids held: \(store.transactionCount)")
        #expect(kept(plan.entities[0].retention).contains(store.entityCounts[0]), "cards held: \(store.entityCounts[0])")
        #expect(store.entityCounts[plan.entities.firstIndex { $0.name == "merchant" }!] == 1, "the merchant, never idle, stays")
    }

    @Test("expiry takes a batch's usual share, more only while a backlog lasts and at most twice what a batch can add; the backlog drains")
    func expiryStepsAreBoundedPerBatch() throws {
        let base: Int64 = 1_767_225_600_000, day: Int64 = 86_400_000
        let plan = try FeaturePlan(spec: .default)
        let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
        let store = InMemoryVelocityStore(plan: plan, allowedLateness: day, remembered: 0)
        let card = plan.entities.firstIndex { $0.name == "card" }!
        // 600 transactions on one day, each with a new card: all due together once the
        // stream is past their retention plus the lateness.
        for start in stride(from: 0, to: 600, by: 200) {
            _ = try engine.features((start..<(start + 200)).map { k in
                Transaction(id: "a\(k)", timestamp: base + Int64(k) * 1000, amount: 5, cardID: "c\(k)", merchantID: "m")
            }, store: store)
        }
        #expect(store.entityCounts[card] == 600)
        let bound = 2 * (plan.entities.count + 1) + 4
        var batches = 0, largest = 0, first = 0
        while store.entityCounts[card] > 1, batches < 2000 {
            let before = store.expiryStepsTaken
            _ = try engine.features([
                Transaction(id: "b\(batches)", timestamp: base + 40 * day + Int64(batches) * 1000, amount: 5, cardID: "late", merchantID: "m")
            ], store: store)
            largest = max(largest, store.expiryStepsTaken - before)
            if batches == 0 { first = largest }
            batches += 1
        }
        #expect(first <= 4, "the first batch of one to find the backlog due took \(first) steps, not its usual share")
        #expect(largest == bound, "a batch of one took at most \(largest) steps; the allowance grows to \(bound) while behind")
        #expect(store.entityCounts[card] == 1, "the backlog drains: \(store.entityCounts[card]) cards left after \(batches) batches")
        #expect(store.transactionCount == batches, "the day's ids forgotten, the batches' kept")
        // Caught up: a batch of one takes its usual share again (1 + 3 steps at most), whatever
        // the stream keeps forgetting.
        var steady = 0
        for k in 0..<50 {
            let before = store.expiryStepsTaken
            _ = try engine.features([
                Transaction(id: "s\(k)", timestamp: base + 40 * day + Int64(batches + k) * 1000, amount: 5, cardID: "s\(k % 7)", merchantID: "m")
            ], store: store)
            steady = max(steady, store.expiryStepsTaken - before)
        }
        #expect(steady <= 4, "caught up, a batch of one took \(steady) steps")
    }

    @Test func missingFieldsGiveMissingValues() throws {
        let m = try engine.features([Transaction(id: "x", timestamp: 1_767_225_600_000, amount: 3)], store: InMemoryVelocityStore(plan: plan))
        #expect(m[0, "card_count_1m"]!.isNaN && m[0, "device_count_1h"]!.isNaN && m[0, "card_distance_km"]!.isNaN)
        #expect(m[0, "amount"] == 3 && m[0, "amount_x2"] == 6 && m[0, "hour"] == 0)
    }

    @Test func locationFeatures() throws {
        let base: Int64 = 1_767_225_600_000
        let store = InMemoryVelocityStore(plan: plan)
        let m = try engine.features([
            Transaction(id: "p", timestamp: base, amount: 1, cardID: "c", lat: 48.8566, lon: 2.3522),       // Paris
            Transaction(id: "q", timestamp: base + 600_000, amount: 1, cardID: "c"),                         // online: no location
            Transaction(id: "l", timestamp: base + 3_600_000, amount: 1, cardID: "c", lat: 51.5074, lon: -0.1278),  // London
        ], store: store)
        #expect(m[1, "card_distance_km"]!.isNaN)  // a missing coordinate never means "far away"
        #expect(abs(m[2, "card_distance_km"]! - 343.5) < 1)  // from the last event with a location
        #expect(abs(EntityKernel.haversineKm(0, 0, 0, 180) - 20_015.1) < 1)
        #expect(EntityKernel.haversineKm(.nan, 0, 0, 0).isNaN)
    }

    @Test func labelsCountOnlyOnceApplied() throws {
        let txs = randomStream(count: 400, seed: 99)
        let store = InMemoryVelocityStore(plan: plan)
        let half = Array(txs[..<200])
        _ = try engine.features(half, store: store)
        let fraudIDs = Set(half.filter { $0.amount > 60 }.map(\.id))
        let matched = try store.apply(labels: half.map { (engine.idHash($0.id), fraudIDs.contains($0.id)) })
        #expect(matched == 200)
        let m = try engine.features(Array(txs[200...]), store: store)
        let ref = referenceFeatures(txs, labelled: fraudIDs)
        let col = plan.schema.index(of: "card_fraud_rate_1h")!
        for r in 0..<200 { #expect(close(m[r, col], ref[200 + r]["card_fraud_rate_1h"]!), "row \(r)") }
    }

    @Test func specErrorsNameTheLine() {
        let bad = testSpec.replacingOccurrences(of: "filter: amount > 50", with: "filter: amount > fifty")
        #expect { try FeatureSpec.parse(bad, file: "spec.yaml") } throws: { e in
            "\(e)".contains("spec.yaml:12") && "\(e)".contains("unknown name 'fifty'")
        }
        #expect { try FeatureSpec.parse("entities:\n  card: card_id\naggregates:\n  - entity: crad\n    windows: [1m]\n    ops: [count]\n", file: "s.yaml") } throws: { e in
            "\(e)".contains("s.yaml:4") && "\(e)".contains("unknown entity 'crad'")
        }
        #expect { try FeatureSpec.parse("entities:\n  card: card_id\naggregates:\n  - entity: card\n    windows: [90d]\n    ops: [count]\n", file: "s.yaml") } throws: { e in
            "\(e)".contains("outside 1m … 30d")
        }
    }

    @Test func defaultSpecLoads() {
        let plan = try! FeaturePlan(spec: .default)
        #expect(plan.schema.count > 40)
        #expect(plan.schema.names.contains("card_small_count_10m") && plan.schema.names.contains("merchant_fraud_rate_30d"))
    }
}
