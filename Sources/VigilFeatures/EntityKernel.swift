import Foundation

/// The events recorded for one entity, sorted by (time, id), as parallel columns.
///
/// Both stores keep (or rebuild) exactly this layout and call the same ``EntityKernel``, which is
/// what makes their features identical bit for bit.
public struct EntityEvents: Sendable {
    public var times: [Int64] = []
    public var ids: [UInt64] = []
    public var amounts: [Double] = []
    public var lats: [Double] = []
    public var lons: [Double] = []
    public var filterBits: [UInt8] = []
    /// 0 unknown, 1 legitimate, 2 fraud.
    public var labels: [UInt8] = []
    /// `tracked[k][i]`: hashed value of tracked field `k` for event `i`, 0 when absent.
    public var tracked: [[UInt64]]

    public init(trackedCount: Int) { tracked = Array(repeating: [], count: trackedCount) }

    public var count: Int { times.count }

    /// The index of the first event at or after `(time, id)`.
    public func lowerBound(time: Int64, id: UInt64 = 0) -> Int {
        var lo = 0, hi = times.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if times[mid] < time || (times[mid] == time && ids[mid] < id) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The index of an event by id, searching around its time.
    public func index(time: Int64, id: UInt64) -> Int? {
        let i = lowerBound(time: time, id: id)
        return i < count && times[i] == time && ids[i] == id ? i : nil
    }

    /// Inserts an event keeping (time, id) order; appends in the common in-order case.
    public mutating func insert(
        time: Int64, id: UInt64, amount: Double, lat: Double, lon: Double, filterBits f: UInt8, label: UInt8,
        tracked values: UnsafeBufferPointer<UInt64>
    ) {
        let i = (times.last.map { $0 < time || ($0 == time && ids[ids.count - 1] < id) } ?? true) ? count : lowerBound(time: time, id: id)
        times.insert(time, at: i)
        ids.insert(id, at: i)
        amounts.insert(amount, at: i)
        lats.insert(lat, at: i)
        lons.insert(lon, at: i)
        filterBits.insert(f, at: i)
        labels.insert(label, at: i)
        for k in tracked.indices { tracked[k].insert(values[k], at: i) }
    }

    /// Drops events older than `cutoff`.
    public mutating func trim(before cutoff: Int64) {
        let n = lowerBound(time: cutoff)
        guard n > 0 else { return }
        times.removeFirst(n)
        ids.removeFirst(n)
        amounts.removeFirst(n)
        lats.removeFirst(n)
        lons.removeFirst(n)
        filterBits.removeFirst(n)
        labels.removeFirst(n)
        for k in tracked.indices { tracked[k].removeFirst(n) }
    }
}

/// What the kernel needs to know about the transaction being scored.
public struct CurrentEvent {
    public var time: Int64
    public var amount: Double
    public var lat: Double
    public var lon: Double
    /// Hashed values of the entity's tracked fields for this transaction, 0 when absent.
    public var tracked: UnsafeBufferPointer<UInt64>

    public init(time: Int64, amount: Double, lat: Double, lon: Double, tracked: UnsafeBufferPointer<UInt64>) {
        self.time = time
        self.amount = amount
        self.lat = lat
        self.lon = lon
        self.tracked = tracked
    }
}

/// Computes an entity's features at time `t` from its events strictly before `t`.
public enum EntityKernel {
    /// Working memory for ``evaluate(_:plan:current:row:scratch:)``, reused across calls so the
    /// hot path does not allocate.
    public struct Scratch {
        var count: [SIMD8<Double>]
        var sum: [SIMD8<Double>]
        var sumsq: [SIMD8<Double>]
        var maxv: [SIMD8<Double>]
        var distinct: [Set<UInt64>]
        var seen: [Bool]

        public init(plan: EntityPlan) {
            let groups = plan.filterCount + 1
            count = Array(repeating: .zero, count: groups)
            sum = count
            sumsq = count
            maxv = Array(repeating: SIMD8(repeating: -.infinity), count: groups)
            distinct = Array(repeating: Set(minimumCapacity: 16), count: plan.distinct.count)
            seen = Array(repeating: false, count: plan.firstSeen.count)
        }

        mutating func reset() {
            for g in count.indices {
                count[g] = .zero
                sum[g] = .zero
                sumsq[g] = .zero
                maxv[g] = SIMD8(repeating: -.infinity)
            }
            for r in distinct.indices { distinct[r].removeAll(keepingCapacity: true) }
            for k in seen.indices { seen[k] = false }
        }
    }

    /// Writes every feature of `plan` for the current event into `row` (at the plan's columns).
    /// `events` may hold events at or after `t`; they are ignored.
    public static func evaluate(
        _ events: EntityEvents, plan: EntityPlan, current c: CurrentEvent, row: UnsafeMutablePointer<Float>
    ) {
        var scratch = Scratch(plan: plan)
        evaluate(events, plan: plan, current: c, row: row, scratch: &scratch)
    }

    public static func evaluate(
        _ events: EntityEvents, plan: EntityPlan, current c: CurrentEvent, row: UnsafeMutablePointer<Float>,
        scratch: inout Scratch
    ) {
        scratch.reset()
        let t = c.time
        let end = events.lowerBound(time: t)
        let lanes = plan.lanes
        let zero = SIMD8<Double>(repeating: 0)
        let groups = plan.filterCount + 1
        var fraud = zero
        var lastTime: Int64?
        var lastLat = Double.nan, lastLon = Double.nan, lastLocTime: Int64 = 0
        var homeCountry: UInt64 = 0
        let historyLane = plan.historyLane ?? 0
        let horizon = Double(plan.retention)

        var i = end - 1
        while i >= 0 {
            let age = Double(t - events.times[i])
            if age > horizon { break }
            let inLane = SIMD8<Double>(repeating: age) .<= lanes
            let one = zero.replacing(with: 1, where: inLane)
            let a = events.amounts[i]
            let av = SIMD8<Double>(repeating: a)
            scratch.count[0] += one
            scratch.sum[0] += one * av
            scratch.sumsq[0] += one * av * av
            scratch.maxv[0] = scratch.maxv[0].replacing(with: pointwiseMax(scratch.maxv[0], av), where: inLane)
            let bits = events.filterBits[i]
            if bits != 0 {
                for g in 1..<groups where bits & (1 << UInt8(g - 1)) != 0 {
                    scratch.count[g] += one
                    scratch.sum[g] += one * av
                    scratch.sumsq[g] += one * av * av
                    scratch.maxv[g] = scratch.maxv[g].replacing(with: pointwiseMax(scratch.maxv[g], av), where: inLane)
                }
            }
            if events.labels[i] == 2 { fraud += one }
            for (r, req) in plan.distinct.enumerated() where inLane[req.lane] {
                let h = events.tracked[req.tracked][i]
                if h != 0 { scratch.distinct[r].insert(h) }
            }
            if plan.historyLane != nil, inLane[historyLane] {
                if lastTime == nil { lastTime = events.times[i] }
                if lastLat.isNaN, !events.lats[i].isNaN, !events.lons[i].isNaN {
                    lastLat = events.lats[i]
                    lastLon = events.lons[i]
                    lastLocTime = events.times[i]
                }
                for (k, tr) in plan.firstSeen.enumerated() where !scratch.seen[k] {
                    let h = c.tracked[tr]
                    if h != 0, events.tracked[tr][i] == h { scratch.seen[k] = true }
                }
                if let ct = plan.countryTracked, events.tracked[ct][i] != 0 { homeCountry = events.tracked[ct][i] }
            }
            i -= 1
        }

        // Unfiltered history statistics for the profile features.
        let hCount = scratch.count[0][historyLane]
        let hMean = hCount > 0 ? scratch.sum[0][historyLane] / hCount : .nan
        let hStd = hCount > 1 ? max(0, scratch.sumsq[0][historyLane] / hCount - hMean * hMean).squareRoot() : .nan

        for o in plan.outputs {
            let v: Double
            switch o.kind {
            case .count(let g, let l): v = scratch.count[g][l]
            case .sum(let g, let l): v = scratch.sum[g][l]
            case .mean(let g, let l): v = scratch.count[g][l] > 0 ? scratch.sum[g][l] / scratch.count[g][l] : .nan
            case .std(let g, let l):
                let n = scratch.count[g][l]
                let m = scratch.sum[g][l] / n
                v = n > 0 ? max(0, scratch.sumsq[g][l] / n - m * m).squareRoot() : .nan
            case .max(let g, let l): v = scratch.count[g][l] > 0 ? scratch.maxv[g][l] : .nan
            case .distinct(let r): v = Double(scratch.distinct[r].count)
            case .zscore: v = hStd > 0 ? (c.amount - hMean) / hStd : .nan
            case .ratio: v = hMean > 0 ? c.amount / hMean : .nan
            case .secondsSinceLast: v = lastTime.map { Double(t - $0) / 1000 } ?? .nan
            case .distance: v = haversineKm(lastLat, lastLon, c.lat, c.lon)
            case .speed:
                let d = haversineKm(lastLat, lastLon, c.lat, c.lon)
                // At least a minute apart, so two swipes at one terminal are not "infinitely fast".
                let hours = max(Double(t - lastLocTime), 60_000) / 3_600_000
                v = d / hours
            case .crossBorder:
                let here = plan.countryTracked.map { c.tracked[$0] } ?? 0
                v = here == 0 || homeCountry == 0 ? .nan : (here == homeCountry ? 0 : 1)
            case .newValue(let tr):
                let k = plan.firstSeen.firstIndex(of: tr)!
                v = c.tracked[tr] == 0 || hCount == 0 ? .nan : (scratch.seen[k] ? 0 : 1)
            case .fraudRate(let l): v = scratch.count[0][l] > 0 ? fraud[l] / scratch.count[0][l] : .nan
            }
            row[o.column] = Float(v)
        }
    }

    /// Great-circle distance in km; NaN when a coordinate is missing.
    @inlinable
    public static func haversineKm(_ lat1: Double, _ lon1: Double, _ lat2: Double, _ lon2: Double) -> Double {
        // `min` below would turn a NaN into 1 (half the globe): a missing coordinate must stay missing.
        guard !(lat1.isNaN || lon1.isNaN || lat2.isNaN || lon2.isNaN) else { return .nan }
        let r = 6371.0088
        let p1 = lat1 * .pi / 180, p2 = lat2 * .pi / 180
        let dp = p2 - p1, dl = (lon2 - lon1) * .pi / 180
        let h = sin(dp / 2) * sin(dp / 2) + cos(p1) * cos(p2) * sin(dl / 2) * sin(dl / 2)
        return 2 * r * asin(min(1, h.squareRoot()))
    }

    /// Marks every output of the entity missing (the entity's key is absent from the transaction).
    public static func missing(plan: EntityPlan, row: UnsafeMutablePointer<Float>) {
        for o in plan.outputs { row[o.column] = .nan }
    }
}

extension EventBatch {
    /// The walk every store does: for each transaction in order and each of its entities,
    /// evaluate the kernel on the entity's events (strictly before the transaction), then record
    /// the transaction locally unless it was seen before — so later transactions of the batch see
    /// earlier ones. Before evaluating, the entity's events older than its newest event minus its
    /// retention and `lateness` are dropped. Stores differ only in where the events live
    /// (`withEvents`); trimming here, per event, keeps features independent of batch boundaries
    /// and identical across stores even for events later than the allowed lateness.
    ///
    /// - Parameters:
    ///   - lateness: the store's allowed lateness (ms).
    ///   - duplicate: whether transaction `i` was recorded before (a redelivery).
    ///   - withEvents: gives in-place access to an entity's events (creating them if new).
    public func walk(
        plan: FeaturePlan, lateness: Int64, into matrix: inout FeatureMatrix, duplicate: (Int) -> Bool,
        withEvents: (_ entity: Int, _ key: UInt64, _ body: (inout EntityEvents) -> Void) -> Void
    ) {
        let columns = matrix.columns
        var scratch = plan.entities.map(EntityKernel.Scratch.init)
        matrix.values.withUnsafeMutableBufferPointer { values in
            tracked.withUnsafeBufferPointer { tracked in
                for i in 0..<count {
                    let row = values.baseAddress! + i * columns
                    let seen = duplicate(i)
                    for (e, ep) in plan.entities.enumerated() {
                        let key = keys[i * entityCount + e]
                        guard key != 0 else {
                            EntityKernel.missing(plan: ep, row: row)
                            continue
                        }
                        let own = UnsafeBufferPointer(rebasing: tracked[(i * trackedTotal + trackedOffsets[e])...].prefix(ep.tracked.count))
                        let current = CurrentEvent(time: times[i], amount: amounts[i], lat: lats[i], lon: lons[i], tracked: own)
                        withEvents(e, key) { events in
                            // Trim to the canonical set first: events older than the entity's
                            // newest one minus retention and lateness. A store may hold more (the
                            // Redis store trims once per batch, less eagerly), never less, so both
                            // stores evaluate exactly the same events.
                            if let newest = events.times.last, let first = events.times.first, first < newest - ep.retention - lateness {
                                events.trim(before: newest - ep.retention - lateness)
                            }
                            EntityKernel.evaluate(events, plan: ep, current: current, row: row, scratch: &scratch[e])
                            if !seen, events.index(time: times[i], id: ids[i]) == nil {
                                events.insert(
                                    time: times[i], id: ids[i], amount: amounts[i], lat: lats[i], lon: lons[i],
                                    filterBits: filterBits[i * entityCount + e], label: 0, tracked: own)
                            }
                        }
                    }
                }
            }
        }
    }
}
