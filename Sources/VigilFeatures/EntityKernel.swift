internal import CPrefetch
import Foundation

/// One recorded event of an entity: what its windows aggregate.
public struct EntityEvent: Sendable, Equatable {
    public var time: Int64
    public var id: UInt64
    public var amount: Double
    public var lat: Double
    public var lon: Double
    /// The order in which the events were recorded (the entity log's order): larger is later.
    /// Only the order matters; stores number the events they hold from wherever they start.
    public var arrival: UInt64
    public var filterBits: UInt8
    /// 0 unknown, 1 legitimate, 2 fraud.
    public var label: UInt8
}

/// The events recorded for one entity, sorted by (time, id).
///
/// Stored as rows, not columns: adding an event to a window or taking it out reads its time,
/// amount, filter bits, label and location together, which is one or two cache lines here where
/// parallel columns cost one miss per column for an entity that is not in cache (most are, in a
/// stream over many cards). Each event's other per-event values sit in one more buffer, `stride`
/// slots per event: its tracked fields' hashed values, then the working values its entity's
/// windows keep per event (the sliding maxima's running maxima, see ``WindowState``). So an
/// entity's events are two allocations whatever its spec.
///
/// Both stores keep (or rebuild) exactly this layout and call the same ``EntityKernel``, which is
/// what makes their features identical bit for bit.
public struct EntityEvents: Sendable {
    public private(set) var rows: [EntityEvent] = []
    /// Event `i`'s value of tracked field `k` is at `i * stride + k` (0 when absent); its working
    /// value `m` at `i * stride + trackedCount + m`.
    private var slots: [UInt64] = []
    public let trackedCount: Int
    /// Slots per event: `trackedCount` plus the working values.
    let stride: Int
    /// Events trimmed from the front so far: `dropped + i` is event `i`'s position for good.
    public private(set) var dropped = 0

    public init(trackedCount: Int) { self.init(trackedCount: trackedCount, workCount: 0) }

    /// Events with `workCount` working slots each, for an entity's windows to use.
    init(trackedCount: Int, workCount: Int) {
        self.trackedCount = trackedCount
        stride = trackedCount + workCount
    }

    public var count: Int { rows.count }

    @inline(__always)
    public subscript(i: Int) -> EntityEvent { rows[i] }

    /// The time of event `i`.
    @inline(__always)
    public func time(_ i: Int) -> Int64 { rows[i].time }

    /// The hashed value of tracked field `k` for event `i`, 0 when absent.
    @inline(__always)
    public func tracked(_ k: Int, _ i: Int) -> UInt64 { slots[i &* stride &+ k] }

    /// Slot `k` of event `i`: tracked values first, then working values.
    @inline(__always)
    func slot(_ k: Int, _ i: Int) -> UInt64 { slots[i &* stride &+ k] }

    func prefetchHeaders() {
        Prefetch.header(of: rows)
        Prefetch.header(of: slots)
    }

    /// Prefetches the events at `marks` (a window's end each) and at `tail` and the newest one,
    /// and the row of the last event of the first quarter (what trimming reads, see
    /// ``EntityState/trimToCanonical(plan:lateness:at:)``).
    func prefetch(at marks: UnsafeBufferPointer<Int>, tail: Int) {
        rows.withUnsafeBufferPointer { r in
            slots.withUnsafeBufferPointer { s in
                guard let rb = r.baseAddress, let sb = s.baseAddress, r.count > 0 else { return }
                func at(_ i: Int) {
                    guard i >= 0 && i < r.count else { return }
                    vigil_prefetch(rb + i)
                    vigil_prefetch(sb + i &* stride)
                }
                for m in marks { at(m) }
                at(tail)
                at(r.count - 1)
                vigil_prefetch(rb + firstQuarterEnd)
            }
        }
    }

    /// The last event of the first quarter: once it has expired, a quarter of the events has
    /// (what ``EntityState/trimToCanonical(plan:lateness:at:)`` reads, and the prefetch loads).
    var firstQuarterEnd: Int { (count + 3) / 4 - 1 }

    public var newestTime: Int64? { rows.last?.time }
    public var oldestTime: Int64? { rows.first?.time }

    /// The index of the first event at or after `(time, id)`.
    public func lowerBound(time: Int64, id: UInt64 = 0) -> Int {
        rows.withUnsafeBufferPointer { r in
            var lo = 0, hi = r.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if r[mid].time < time || (r[mid].time == time && r[mid].id < id) { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
    }

    /// The index of an event by id, searching around its time.
    public func index(time: Int64, id: UInt64) -> Int? {
        let i = lowerBound(time: time, id: id)
        return i < count && rows[i].time == time && rows[i].id == id ? i : nil
    }

    /// Where an event goes to keep (time, id) order: the end in the common in-order case.
    public func insertionIndex(time: Int64, id: UInt64) -> Int {
        (rows.last.map { $0.time < time || ($0.time == time && $0.id < id) } ?? true) ? count : lowerBound(time: time, id: id)
    }

    /// Inserts an event at `i` (from ``insertionIndex(time:id:)``) with its tracked values
    /// (`trackedCount` of them); its working values start at 0.
    public mutating func insert(_ event: EntityEvent, tracked values: UnsafeBufferPointer<UInt64>, at i: Int) {
        if i == rows.count {
            // The common case, an event in time order: appended slot by slot (the generic
            // collection appends and inserts cost several hundred instructions per event).
            rows.append(event)
            for k in 0..<trackedCount { slots.append(values[k]) }
            for _ in trackedCount..<stride { slots.append(0) }
        } else {
            rows.insert(event, at: i)
            slots.insert(contentsOf: repeatElement(0, count: stride), at: i * stride)
            for k in 0..<trackedCount { slots[i * stride + k] = values[k] }
        }
    }

    /// Sets the label of event `i` (0 unknown, 1 legitimate, 2 fraud).
    public mutating func setLabel(_ label: UInt8, at i: Int) { rows[i].label = label }

    /// The events of `self` selected by `keep`, in order (for the reference kernel).
    public func filter(_ keep: (Int) -> Bool) -> EntityEvents {
        var out = EntityEvents(trackedCount: trackedCount)
        slots.withUnsafeBufferPointer { t in
            for i in 0..<count where keep(i) {
                out.insert(rows[i], tracked: UnsafeBufferPointer(rebasing: t[(i * stride)..<(i * stride + trackedCount)]), at: out.count)
            }
        }
        return out
    }

    /// Drops events older than `cutoff`.
    public mutating func trim(before cutoff: Int64) {
        let n = lowerBound(time: cutoff)
        guard n > 0 else { return }
        rows.removeFirst(n)
        slots.removeFirst(n * stride)
        dropped += n
    }

    /// The rows, and the slots to read and write in place, for one window operation.
    @inline(__always)
    mutating func withBuffers<R>(_ body: (UnsafeBufferPointer<EntityEvent>, UnsafeMutableBufferPointer<UInt64>) -> R) -> R {
        // The rows are only read, but opened as mutable: a uniqueness check, where reading
        // retained and released the buffer (two atomic operations per window operation).
        rows.withUnsafeMutableBufferPointer { r in slots.withUnsafeMutableBufferPointer { s in body(UnsafeBufferPointer(r), s) } }
    }

    /// Heap bytes of the two buffers (see ``HeapBytes``).
    var approximateBytes: Int { HeapBytes.of(rows) + HeapBytes.of(slots) }
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

/// Amounts are aggregated as whole numbers of 1/10,000 of a currency unit (finer than any ISO 4217
/// currency's minor unit), in 128-bit integers. Integer sums do not depend on the order in which
/// events are added and removed, so a window kept up to date as events enter and leave it holds
/// exactly what a recomputation over the same events gives, bit for bit.
public enum FixedAmount {
    public static let scale: Double = 10_000

    @inline(__always)
    public static func units(_ amount: Double) -> Int64 {
        // Decoded amounts are finite and at most 1e9 (1e13 units); anything else counts as 0.
        guard amount.isFinite && abs(amount) <= 1e14 else { return 0 }
        // Rounded half away from zero, as `rounded()` does, without its call into libm (an event
        // pays it entering and leaving each lane): below 2⁵³ the fraction left by truncation is exact.
        let x = amount * scale, whole = Int64(x), fraction = x - Double(whole)
        return whole + (fraction >= 0.5 ? 1 : fraction <= -0.5 ? -1 : 0)
    }
}

/// The count, sum and sum of squares of the amounts in one window (one filter group and lane),
/// in exact integer units (``FixedAmount``), side by side so an event entering or leaving the
/// window updates one cell.
public struct WindowCell: Sendable, Equatable {
    public var count: Int64 = 0
    /// Events labelled fraud; kept in the unfiltered group's cells, one per lane (it fills what
    /// would be padding before the 16-byte aligned sums).
    public var fraud: Int64 = 0
    public var sum: Int128 = 0
    public var sumsq: Int128 = 0

    public init() {}

    @inline(__always)
    mutating func add(_ u: Int128) {
        count += 1
        sum &+= u
        sumsq &+= u &* u
    }

    @inline(__always)
    mutating func remove(_ u: Int128) {
        count -= 1
        sum &-= u
        sumsq &-= u &* u
    }
}

/// What an entity's windows hold at one point in time: everything its features are computed from.
///
/// Both the incremental windows (``EntityState``) and the recomputing reference
/// (``EntityKernel/evaluate(_:plan:current:row:scratch:)``) fill one of these and hand it to
/// ``EntityKernel/write(_:cells:plan:current:row:)``, so the two can only differ if their sums differ.
public struct WindowAggregates: Sendable {
    /// Per filter group and lane, at ``EntityPlan/cell(_:_:)``.
    public var cells: [WindowCell]
    public var maxv: [Double]
    /// Distinct values per distinct request.
    public var distinct: [Int]
    /// Whether the transaction's value of each first-seen field occurs in the history window.
    public var seen: [Bool]
    /// The latest event in the history window, and the latest one with a location.
    public var lastTime: Int64?
    public var lastLat = Double.nan, lastLon = Double.nan
    public var lastLocTime: Int64 = 0
    /// The country of the earliest event in the history window that has one; 0 when none.
    public var homeCountry: UInt64 = 0

    public init(plan: EntityPlan) {
        let cells = plan.cellCount
        self.cells = Array(repeating: WindowCell(), count: cells)
        maxv = Array(repeating: -.infinity, count: cells)
        distinct = Array(repeating: 0, count: plan.distinct.count)
        seen = Array(repeating: false, count: plan.firstSeen.count)
    }

    mutating func reset() {
        for c in cells.indices {
            cells[c] = WindowCell()
            maxv[c] = -.infinity
        }
        for r in distinct.indices { distinct[r] = 0 }
        for k in seen.indices { seen[k] = false }
        lastTime = nil
        lastLat = .nan
        lastLon = .nan
        lastLocTime = 0
        homeCountry = 0
    }
}

/// Computes an entity's features at time `t` from its events strictly before `t`.
public enum EntityKernel {
    /// Working memory for ``evaluate(_:plan:current:row:scratch:)``, reused across calls so the
    /// hot path does not allocate.
    public struct Scratch {
        var aggregates: WindowAggregates
        var distinct: [Set<UInt64>]

        public init(plan: EntityPlan) {
            aggregates = WindowAggregates(plan: plan)
            distinct = Array(repeating: Set(minimumCapacity: 16), count: plan.distinct.count)
        }
    }

    /// The reference: recomputes every window from the entity's events by walking them backwards
    /// from `t` (cost grows with the entity's history). The stores use the incremental
    /// ``EntityState``; tests check the two agree on every feature.
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
        scratch.aggregates.reset()
        for r in scratch.distinct.indices { scratch.distinct[r].removeAll(keepingCapacity: true) }
        let t = c.time
        let end = events.lowerBound(time: t)
        let lanes = plan.lanes
        let groups = plan.filterCount + 1
        let historyLane = plan.historyLane ?? 0
        let horizon = Double(plan.retention)
        var found = false
        withUnsafeMutablePointer(to: &scratch.aggregates) { agg in
            var i = end - 1
            while i >= 0 {
                let ev = events[i]
                let age = Double(t - ev.time)
                if age > horizon { break }
                let inLane = SIMD8<Double>(repeating: age) .<= lanes
                let a = ev.amount
                let u = Int128(FixedAmount.units(a))
                let bits = ev.filterBits
                for l in 0..<plan.laneCount where inLane[l] {
                    for g in 0..<groups where g == 0 || bits & (1 << UInt8(g - 1)) != 0 {
                        let cell = plan.cell(g, l)
                        agg.pointee.cells[cell].add(u)
                        agg.pointee.maxv[cell] = Swift.max(agg.pointee.maxv[cell], a)
                    }
                    if ev.label == 2 { agg.pointee.cells[l].fraud += 1 }
                }
                for (r, req) in plan.distinct.enumerated() where inLane[req.lane] {
                    let h = events.tracked(req.tracked, i)
                    if h != 0 { scratch.distinct[r].insert(h) }
                }
                if plan.historyLane != nil, inLane[historyLane] {
                    if agg.pointee.lastTime == nil { agg.pointee.lastTime = ev.time }
                    if !found, !ev.lat.isNaN, !ev.lon.isNaN {
                        found = true
                        agg.pointee.lastLat = ev.lat
                        agg.pointee.lastLon = ev.lon
                        agg.pointee.lastLocTime = ev.time
                    }
                    for (k, tr) in plan.firstSeen.enumerated() where !agg.pointee.seen[k] {
                        let h = c.tracked[tr]
                        if h != 0, events.tracked(tr, i) == h { agg.pointee.seen[k] = true }
                    }
                    if let ct = plan.countryTracked, events.tracked(ct, i) != 0 { agg.pointee.homeCountry = events.tracked(ct, i) }
                }
                i -= 1
            }
        }
        for r in scratch.distinct.indices { scratch.aggregates.distinct[r] = scratch.distinct[r].count }
        scratch.aggregates.cells.withUnsafeBufferPointer { write(scratch.aggregates, cells: $0, plan: plan, current: c, row: row) }
    }

    /// `Double(x)`, rounded exactly as the standard library rounds it, through the 64-bit
    /// conversion whenever `x` fits: the generic 128-bit one costs ~200 ns a call, ~10% of a
    /// transaction's features.
    @inline(__always)
    static func double(_ x: Int128) -> Double {
        x >= Int128(Int64.min) && x <= Int128(Int64.max) ? Double(Int64(truncatingIfNeeded: x)) : Double(x)
    }

    /// Mean amount of `n` events summing to `sum` units; NaN when empty.
    @inline(__always)
    static func mean(_ n: Int64, _ sum: Int128) -> Double {
        n > 0 ? double(sum) / Double(n) / FixedAmount.scale : .nan
    }

    /// Population standard deviation, from the exact integer numerator `n·Σx² − (Σx)²` while it fits
    /// in 128 bits (always, for decoded amounts and up to ~10¹¹ events); NaN when empty.
    static func std(_ n: Int64, _ sum: Int128, _ sumsq: Int128) -> Double {
        guard n > 0 else { return .nan }
        let (nq, o1) = Int128(n).multipliedReportingOverflow(by: sumsq)
        let (s2, o2) = sum.multipliedReportingOverflow(by: sum)
        if !o1, !o2 { return double(nq - s2).squareRoot() / Double(n) / FixedAmount.scale }
        let m = double(sum) / Double(n)
        return Swift.max(0, double(sumsq) / Double(n) - m * m).squareRoot() / FixedAmount.scale
    }

    /// Writes every feature of `plan` for the current event into `row` (at the plan's columns),
    /// from `a` and the window cells `cells` (the aggregates' own, or an entity's windows' read in place).
    public static func write(
        _ a: WindowAggregates, cells: UnsafeBufferPointer<WindowCell>, plan: EntityPlan, current c: CurrentEvent, row: UnsafeMutablePointer<Float>
    ) {
        let t = c.time
        let h = plan.historyLane ?? 0
        // Unfiltered history statistics for the profile features.
        let history = plan.laneCount > 0 ? cells[h] : WindowCell()
        let hCount = history.count
        let hMean = hCount > 0 ? mean(hCount, history.sum) : .nan
        let hStd = hCount > 1 ? std(hCount, history.sum, history.sumsq) : .nan
        // The distance is read by two outputs (distance, speed): its trigonometry runs once.
        var km: Double?
        func distance() -> Double {
            if let km { return km }
            let d = haversineKm(a.lastLat, a.lastLon, c.lat, c.lon)
            km = d
            return d
        }
        for o in plan.outputs {
            let v: Double
            switch o.kind {
            case .count(let g, let l): v = Double(cells[plan.cell(g, l)].count)
            case .sum(let g, let l): v = double(cells[plan.cell(g, l)].sum) / FixedAmount.scale
            case .mean(let g, let l): v = mean(cells[plan.cell(g, l)].count, cells[plan.cell(g, l)].sum)
            case .std(let g, let l):
                let x = cells[plan.cell(g, l)]
                v = std(x.count, x.sum, x.sumsq)
            case .max(let g, let l): v = cells[plan.cell(g, l)].count > 0 ? a.maxv[plan.cell(g, l)] : .nan
            case .distinct(let r): v = Double(a.distinct[r])
            case .zscore: v = hStd > 0 ? (c.amount - hMean) / hStd : .nan
            case .ratio: v = hMean > 0 ? c.amount / hMean : .nan
            case .secondsSinceLast: v = a.lastTime.map { Double(t - $0) / 1000 } ?? .nan
            case .distance: v = distance()
            case .speed:
                let d = distance()
                // At least a minute apart, so two swipes at one terminal are not "infinitely fast".
                let hours = Swift.max(Double(t - a.lastLocTime), 60_000) / 3_600_000
                v = d / hours
            case .crossBorder:
                let here = plan.countryTracked.map { c.tracked[$0] } ?? 0
                v = here == 0 || a.homeCountry == 0 ? .nan : (here == a.homeCountry ? 0 : 1)
            case .newValue(let tr):
                let k = plan.firstSeen.firstIndex(of: tr)!
                v = c.tracked[tr] == 0 || hCount == 0 ? .nan : (a.seen[k] ? 0 : 1)
            case .fraudRate(let l): v = cells[l].count > 0 ? Double(cells[l].fraud) / Double(cells[l].count) : .nan
            case .delayedFraudRate(let long, let short):
                let n = cells[long].count - cells[short].count
                v = n > 0 ? Double(cells[long].fraud - cells[short].fraud) / Double(n) : .nan
            case .delayedFrauds(let long, let short): v = Double(cells[long].fraud - cells[short].fraud)
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
    /// evaluate the entity's windows at the transaction's time (events strictly before it; a
    /// redelivery as of its first recording), then record its event (once: an event already held
    /// is not added again) — so later transactions of the batch see earlier ones. Before evaluating, the entity's events older than its newest event minus its
    /// retention and `lateness` are dropped. Stores differ only in where the entity state lives
    /// (`withState`); trimming here, per event, keeps features independent of batch boundaries
    /// and identical across stores even for events later than the allowed lateness.
    ///
    /// - Parameters:
    ///   - lateness: the store's allowed lateness (ms).
    ///   - duplicate: whether transaction `i` was recorded before (a redelivery).
    ///   - withState: gives in-place access to an entity's state (creating it if new); `position`
    ///     is `i * entityCount + e`, the entity's place in ``keys``, for stores that resolved the
    ///     batch's entities up front.
    ///   - evaluate: false to only record (trim and insert, as above) without computing features,
    ///     as a store rebuilding its state from a journal does; `matrix` is then left as it is.
    ///   - scratch: working memory, one ``WindowAggregates`` per entity type of `plan`; a store
    ///     keeps it across batches, so that a batch of one allocates none.
    public func walk(
        plan: FeaturePlan, lateness: Int64, into matrix: inout FeatureMatrix, duplicate: (Int) -> Bool, evaluate: Bool = true,
        scratch: inout [WindowAggregates],
        lookahead: Int = 0,
        ahead: (_ entity: Int, _ key: UInt64, _ distance: Int) -> Void = { _, _, _ in },
        withState: (_ entity: Int, _ key: UInt64, _ position: Int, _ body: (inout EntityState) -> Void) -> Void
    ) {
        precondition(scratch.count == plan.entities.count, "walk: scratch for \(scratch.count) entity types, plan has \(plan.entities.count)")
        let columns = matrix.columns
        matrix.values.withUnsafeMutableBufferPointer { values in
            tracked.withUnsafeBufferPointer { tracked in
                // While one transaction is worked on, the store may start loading the entities
                // of the next `lookahead` ones, each a step further the closer it is (what the
                // step before loaded tells where to look next).
                func prefetch(_ i: Int, distance: Int) {
                    guard i < count else { return }
                    for e in 0..<entityCount where keys[i * entityCount + e] != 0 { ahead(e, keys[i * entityCount + e], distance) }
                }
                // Started as if the walk had begun `lookahead` transactions earlier, so the first
                // ones' entities load together, several misses at once rather than one after
                // another: a batch of one too.
                for i in -lookahead..<0 {
                    for d in Swift.stride(from: lookahead, through: 1, by: -1) where i + d >= 0 { prefetch(i + d, distance: d) }
                }
                for i in 0..<count {
                    let row = values.baseAddress! + i * columns
                    let seen = duplicate(i)
                    for d in Swift.stride(from: lookahead, through: 1, by: -1) { prefetch(i + d, distance: d) }
                    // Each entity's plan borrowed, not retained: a retain and a release per
                    // entity are two atomic operations, and each waits for every load before it,
                    // the entities loaded ahead included.
                    for e in 0..<entityCount { plan.unretainedEntities[e]._withUnsafeGuaranteedRef { ep in
                        let key = keys[i * entityCount + e]
                        guard key != 0 else {
                            if evaluate { EntityKernel.missing(plan: ep, row: row) }
                            return
                        }
                        let own = UnsafeBufferPointer(rebasing: tracked[(i * trackedTotal + trackedOffsets[e])...].prefix(ep.tracked.count))
                        let current = CurrentEvent(time: times[i], amount: amounts[i], lat: lats[i], lon: lons[i], tracked: own)
                        withState(e, key, i * entityCount + e) { state in
                            // Trim to the canonical set first: events older than the entity's
                            // newest one minus retention and lateness cannot be in this
                            // transaction's windows. A store may hold more (trimming lazily),
                            // never less, so every store evaluates exactly the same events.
                            state.trimToCanonical(plan: ep, lateness: lateness, at: times[i])
                            if evaluate, seen {
                                state.evaluateRedelivered(plan: ep, current: current, id: ids[i], row: row, scratch: &scratch[e])
                            } else if evaluate {
                                state.evaluate(plan: ep, current: current, row: row, scratch: &scratch[e])
                            }
                            // Recorded whether or not the transaction was seen: the store's log
                            // has its event now either way (a redelivered batch appends it again),
                            // and an event already held is not added twice. So a transaction whose
                            // first recording reached only some of its entities (an instance
                            // killed mid-write) gets its event into every one, as the log has it.
                            state.insert(
                                plan: ep, time: times[i], id: ids[i], amount: amounts[i], lat: lats[i], lon: lons[i],
                                filterBits: filterBits[i * entityCount + e], tracked: own)
                        }
                    } }
                }
            }
        }
    }
}

extension EntityState {
    /// Makes the events a transaction at time `t` is evaluated against the canonical set: the
    /// events older than the newest one minus the entity's retention and `lateness` are dropped.
    ///
    /// Those events are in no window of a transaction at or after `newest − lateness`, so for
    /// such a transaction they may stay; dropping them shifts every event kept, so it waits until
    /// they are a quarter of the entity's events (amortised O(1) per event, where dropping one at
    /// a time would cost a busy entity its whole history per transaction). A transaction later
    /// than the lateness drops them first.
    public mutating func trimToCanonical(plan: EntityPlan, lateness: Int64, at t: Int64) {
        guard let newest = events.newestTime, let first = events.oldestTime else { return }
        let cutoff = newest - plan.retention - lateness
        guard first < cutoff else { return }
        // At least a quarter of the events are older than the cutoff when the last event of
        // the first quarter is: one probe, where counting them (a binary search over a busy
        // entity's history, a miss per step) cost every transaction of a busy merchant.
        if t < newest - lateness || events.time(events.firstQuarterEnd) < cutoff {
            trim(plan: plan, before: cutoff)
        }
    }
}
