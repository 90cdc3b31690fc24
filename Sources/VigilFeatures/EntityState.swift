import DequeModule

/// An entity's events together with its windows kept up to date incrementally.
///
/// Each lane's window is the index range `[head, tail)` of the entity's sorted events: the events
/// in `[t − w, t)` for the last time `t` it was evaluated at. Evaluating at a new time moves the
/// range's two ends, adding the events that enter and removing the ones that leave: in event-time
/// order every event enters and leaves each lane once, so the cost per transaction is amortised
/// O(lanes), whatever the entity's history. A late event (earlier than the last evaluation) moves
/// the ends back, costing the events between the two times, never the whole history.
///
/// Sums are exact integers (``FixedAmount``), so the result equals the recomputing reference
/// ``EntityKernel/evaluate(_:plan:current:row:scratch:)`` bit for bit, which tests check.
public struct EntityState: Sendable {
    public private(set) var events: EntityEvents
    var windows: WindowState
    /// The arrival number the next recorded event gets.
    private var nextArrival: UInt64 = 0
    /// The arrival number of the latest event recorded out of time order, if any: while no event
    /// arrived late after a transaction, its windows now hold exactly what they held when it was
    /// first recorded.
    private var latestLateArrival: UInt64?

    public init(plan: EntityPlan) {
        events = EntityEvents(trackedCount: plan.tracked.count)
        windows = WindowState(plan: plan)
    }

    /// Writes the entity's features at `current.time` (from its events strictly before it) into
    /// `row`. `scratch` (made for `plan`) is working memory, reused across calls and entities:
    /// what is read off the windows at evaluation time is not kept per entity.
    public mutating func evaluate(plan: EntityPlan, current c: CurrentEvent, row: UnsafeMutablePointer<Float>, scratch: inout WindowAggregates) {
        windows.move(to: c.time, events, plan)
        windows.fill(&scratch, plan: plan, current: c, events: events)
        EntityKernel.write(scratch, plan: plan, current: c, row: row)
        // The scratch shared the windows' cells; let go so the next update does not copy them.
        scratch.cells = []
    }

    /// Writes the features a redelivered transaction got when it was first recorded: from the
    /// events strictly before it in event time that had *arrived* before it. Events that came in
    /// late since (earlier in event time, from a lagging partition or another instance) are left
    /// out, so a redelivery gets the verdict it got the first time. Costs a normal evaluation
    /// unless such a late event exists; then the reference kernel over the events that qualify.
    public mutating func evaluateRedelivered(
        plan: EntityPlan, current c: CurrentEvent, id: UInt64, row: UnsafeMutablePointer<Float>, scratch: inout WindowAggregates
    ) {
        guard let i = events.index(time: c.time, id: id), let late = latestLateArrival, late > events[i].arrival else {
            evaluate(plan: plan, current: c, row: row, scratch: &scratch)
            return
        }
        let arrival = events[i].arrival
        let before = events.filter { $0 < i && events[$0].arrival < arrival }
        EntityKernel.evaluate(before, plan: plan, current: c, row: row)
    }

    /// Records an event unless one with the same time and id is there already. Returns whether it was added.
    @discardableResult
    public mutating func insert(
        plan: EntityPlan, time: Int64, id: UInt64, amount: Double, lat: Double, lon: Double, filterBits: UInt8,
        label: UInt8 = 0, tracked: UnsafeBufferPointer<UInt64>
    ) -> Bool {
        let i = events.insertionIndex(time: time, id: id)
        if i < events.count, events[i].time == time, events[i].id == id { return false }
        // An event earlier than the windows' end: move the windows back to its time first, so it
        // lands outside every window (they hold events strictly before their time).
        if i < windows.tail { windows.move(to: time, events, plan) }
        if i < events.count { latestLateArrival = nextArrival }
        let event = EntityEvent(time: time, id: id, amount: amount, lat: lat, lon: lon, arrival: nextArrival, filterBits: filterBits, label: label)
        events.insert(event, tracked: tracked, at: i)
        nextArrival += 1
        return true
    }

    /// Drops the events older than `cutoff`, taking them out of any window that holds them.
    public mutating func trim(plan: EntityPlan, before cutoff: Int64) {
        let n = events.lowerBound(time: cutoff)
        guard n > 0 else { return }
        windows.dropFront(n, events, plan)
        events.trim(before: cutoff)
    }

    /// Sets the label of event `i` (0 unknown, 1 legitimate, 2 fraud), updating the fraud counts
    /// of the windows that hold it.
    public mutating func setLabel(_ label: UInt8, at i: Int, plan: EntityPlan) {
        let was = events[i].label == 2, now = label == 2
        if was != now {
            for l in 0..<plan.laneCount where windows.heads[l] <= i && i < windows.tail {
                windows.cells[l].fraud += now ? 1 : -1
            }
        }
        events.setLabel(label, at: i)
    }

    /// The newest event's time, read in place: `mutating` only so that a caller reaches the
    /// state where it is stored (`dictionary.values[i]`). Read through a getter, the state is
    /// copied, which retains and releases each of its buffers: for an entity out of cache, a miss
    /// per buffer, where this reads one.
    mutating func newestTimeInPlace() -> Int64? { events.newestTime }

    /// Bytes held on the heap (events, window structures), for cache budgets: every buffer's
    /// capacity plus what an allocation costs beyond its payload, so that a budget bounds the
    /// process's memory (an entity with a few events is mostly allocation overhead).
    public var approximateBytes: Int {
        // Read in place, buffer by buffer: a copy of the state (or of its events) would retain
        // and release every one of its buffers, which a cache re-counting its entities after
        // every batch paid for each entity it touched.
        events.approximateBytes + windows.approximateBytes
    }
}

/// The incremental window state of one entity (see ``EntityState``).
struct WindowState: Sendable {
    /// The time the windows were last moved to; `.min` before the first evaluation.
    var time: Int64 = .min
    var tail = 0
    var heads: [Int]
    /// Per filter group and lane, at ``EntityPlan/cell(_:_:)``.
    var cells: [WindowCell]
    /// One per ``EntityPlan/maxCells`` entry.
    var maxima: [SlidingMax]
    /// Reference counts of the tracked values in each distinct request's lane.
    var distinctRefs: [[UInt64: Int32]]
    /// Reference counts of each first-seen field's values in the history lane.
    var seenRefs: [[UInt64: Int32]]
    /// Positions (``EntityEvents/dropped`` + index) of the history lane's events that have a
    /// location, and of those that have a country, in order.
    var located: Deque<Int> = []
    var countried: Deque<Int> = []

    init(plan: EntityPlan) {
        heads = Array(repeating: 0, count: plan.laneCount)
        cells = Array(repeating: WindowCell(), count: plan.cellCount)
        maxima = Array(repeating: SlidingMax(), count: plan.maxCells.count)
        distinctRefs = Array(repeating: [:], count: plan.distinct.count)
        seenRefs = Array(repeating: [:], count: plan.firstSeen.count)
    }

    var approximateBytes: Int {
        var b = HeapBytes.of(heads) + HeapBytes.of(cells) + HeapBytes.of(maxima)
        for k in maxima.indices { b += maxima[k].approximateBytes }
        b += HeapBytes.of(distinctRefs) + HeapBytes.of(seenRefs)
        for k in distinctRefs.indices { b += HeapBytes.of(distinctRefs[k]) }
        for k in seenRefs.indices { b += HeapBytes.of(seenRefs[k]) }
        return b + HeapBytes.of(located) + HeapBytes.of(countried)
    }

    /// Runs `body` with ``cells`` taken out into a buffer: updating them then costs no
    /// uniqueness check per event (the array is put back after).
    @inline(__always)
    mutating func withCells<R>(_ body: (inout WindowState, UnsafeMutableBufferPointer<WindowCell>) -> R) -> R {
        var cells = self.cells
        self.cells = []
        defer { self.cells = cells }
        return cells.withUnsafeMutableBufferPointer { body(&self, $0) }
    }

    /// Moves every lane to `[t − w, t)`, stepping each end over the events that enter or leave.
    mutating func move(to t: Int64, _ ev: EntityEvents, _ plan: EntityPlan) {
        guard t != time else { return }
        withCells { w, cells in w.move(to: t, ev, plan, cells) }
    }

    private mutating func move(to t: Int64, _ ev: EntityEvents, _ plan: EntityPlan, _ cells: UnsafeMutableBufferPointer<WindowCell>) {
        var newTail = tail
        while newTail < ev.count && ev.time(newTail) < t { newTail += 1 }
        while newTail > 0 && ev.time(newTail - 1) >= t { newTail -= 1 }
        for l in 0..<plan.laneCount {
            let start = t - Int64(plan.lanes[l])
            let h = heads[l]
            var nh = h
            while nh < ev.count && ev.time(nh) < start { nh += 1 }
            while nh > 0 && ev.time(nh - 1) >= start { nh -= 1 }
            if nh == h && newTail == tail { continue }
            if newTail <= h || nh >= tail {
                // No overlap with the old window: start the lane afresh. An empty lane is clear
                // already (every structure is kept exact), which is the common case of an entity
                // seen again after longer than the window.
                if h < tail { clear(lane: l, plan, cells) }
                for i in nh..<newTail { add(i, lane: l, front: false, ev, plan, cells) }
            } else {
                // Adds before removals, so the sliding maxima never pop an empty side.
                if newTail > tail { for i in tail..<newTail { add(i, lane: l, front: false, ev, plan, cells) } }
                if nh < h { for i in stride(from: h - 1, through: nh, by: -1) { add(i, lane: l, front: true, ev, plan, cells) } }
                if nh > h { for i in h..<nh { remove(i, lane: l, front: true, ev, plan, cells) } }
                if newTail < tail { for i in stride(from: tail - 1, through: newTail, by: -1) { remove(i, lane: l, front: false, ev, plan, cells) } }
            }
            heads[l] = nh
        }
        tail = newTail
        time = t
    }

    /// The first `n` events are about to be dropped: take them out of the windows, shift indices.
    mutating func dropFront(_ n: Int, _ ev: EntityEvents, _ plan: EntityPlan) {
        withCells { w, cells in
            for l in 0..<plan.laneCount {
                let end = min(n, w.tail)
                if w.heads[l] < end {
                    for i in w.heads[l]..<end { w.remove(i, lane: l, front: true, ev, plan, cells) }
                    w.heads[l] = end
                }
                w.heads[l] = max(w.heads[l], n) - n
            }
            w.tail = max(w.tail, n) - n
        }
    }

    @inline(__always)
    mutating func add(_ i: Int, lane l: Int, front: Bool, _ ev: EntityEvents, _ plan: EntityPlan, _ cells: UnsafeMutableBufferPointer<WindowCell>) {
        let x = ev[i]
        let a = x.amount
        let u = Int128(FixedAmount.units(a))
        let bits = x.filterBits
        for g in 0...plan.filterCount where g == 0 || bits & (1 << UInt8(g - 1)) != 0 {
            let cell = plan.cell(g, l)
            cells[cell].add(u)
            let m = plan.maxSlot[cell]
            if m >= 0 { if front { maxima[m].pushFront(a) } else { maxima[m].pushBack(a) } }
        }
        if x.label == 2 { cells[l].fraud += 1 }
        for (r, req) in plan.distinct.enumerated() where req.lane == l {
            let h = ev.tracked(req.tracked, i)
            if h != 0 { distinctRefs[r][h, default: 0] += 1 }
        }
        if l == plan.historyLane {
            for (k, tr) in plan.firstSeen.enumerated() {
                let h = ev.tracked(tr, i)
                if h != 0 { seenRefs[k][h, default: 0] += 1 }
            }
            let position = ev.dropped + i
            if !x.lat.isNaN, !x.lon.isNaN {
                if front { located.prepend(position) } else { located.append(position) }
            }
            if let ct = plan.countryTracked, ev.tracked(ct, i) != 0 {
                if front { countried.prepend(position) } else { countried.append(position) }
            }
        }
    }

    @inline(__always)
    mutating func remove(_ i: Int, lane l: Int, front: Bool, _ ev: EntityEvents, _ plan: EntityPlan, _ cells: UnsafeMutableBufferPointer<WindowCell>) {
        let x = ev[i]
        let a = x.amount
        let u = Int128(FixedAmount.units(a))
        let bits = x.filterBits
        for g in 0...plan.filterCount where g == 0 || bits & (1 << UInt8(g - 1)) != 0 {
            let cell = plan.cell(g, l)
            cells[cell].remove(u)
            let m = plan.maxSlot[cell]
            if m >= 0 { if front { maxima[m].popFront() } else { maxima[m].popBack() } }
        }
        if x.label == 2 { cells[l].fraud -= 1 }
        for (r, req) in plan.distinct.enumerated() where req.lane == l {
            let h = ev.tracked(req.tracked, i)
            if h != 0 { Self.release(h, in: &distinctRefs[r]) }
        }
        if l == plan.historyLane {
            for (k, tr) in plan.firstSeen.enumerated() {
                let h = ev.tracked(tr, i)
                if h != 0 { Self.release(h, in: &seenRefs[k]) }
            }
            if !x.lat.isNaN, !x.lon.isNaN {
                if front { located.removeFirst() } else { located.removeLast() }
            }
            if let ct = plan.countryTracked, ev.tracked(ct, i) != 0 {
                if front { countried.removeFirst() } else { countried.removeLast() }
            }
        }
    }

    @inline(__always)
    static func release(_ h: UInt64, in refs: inout [UInt64: Int32]) {
        guard let n = refs[h] else { return }
        if n <= 1 { refs.removeValue(forKey: h) } else { refs[h] = n - 1 }
    }

    mutating func clear(lane l: Int, _ plan: EntityPlan, _ cells: UnsafeMutableBufferPointer<WindowCell>) {
        for g in 0...plan.filterCount {
            let cell = plan.cell(g, l)
            cells[cell] = WindowCell()  // the unfiltered cell's fraud count too
            let m = plan.maxSlot[cell]
            if m >= 0 { maxima[m].removeAll() }
        }
        for (r, req) in plan.distinct.enumerated() where req.lane == l { distinctRefs[r].removeAll(keepingCapacity: true) }
        if l == plan.historyLane {
            for k in seenRefs.indices { seenRefs[k].removeAll(keepingCapacity: true) }
            located.removeAll(keepingCapacity: true)
            countried.removeAll(keepingCapacity: true)
        }
    }

    /// Fills `aggregates` for an evaluation: the cells, and what is read off the window structures.
    func fill(_ aggregates: inout WindowAggregates, plan: EntityPlan, current c: CurrentEvent, events ev: EntityEvents) {
        aggregates.cells = cells
        for (k, cell) in plan.maxCells.enumerated() { aggregates.maxv[cell] = maxima[k].value }
        for r in distinctRefs.indices { aggregates.distinct[r] = distinctRefs[r].count }
        guard let h = plan.historyLane else { return }
        for (k, tr) in plan.firstSeen.enumerated() {
            let v = c.tracked[tr]
            aggregates.seen[k] = v != 0 && seenRefs[k][v] != nil
        }
        aggregates.lastTime = tail > heads[h] ? ev.time(tail - 1) : nil
        if let p = located.last {
            let x = ev[p - ev.dropped]
            aggregates.lastLat = x.lat
            aggregates.lastLon = x.lon
            aggregates.lastLocTime = x.time
        } else {
            aggregates.lastLat = .nan
            aggregates.lastLon = .nan
            aggregates.lastLocTime = 0
        }
        if let p = countried.first, let ct = plan.countryTracked {
            aggregates.homeCountry = ev.tracked(ct, p - ev.dropped)
        } else {
            aggregates.homeCountry = 0
        }
    }
}

/// The maximum of a window that grows and shrinks at both ends.
///
/// Two stacks, each entry remembering its stack's running maximum: the front stack's top is the
/// window's first value, the back stack's top its last. A pop from an empty side first splits the
/// other side in half, which keeps every operation amortised O(1) (a maximum cannot be
/// "subtracted" like a sum).
struct SlidingMax: Sendable {
    struct Entry: Sendable {
        var value: Double
        var runningMax: Double
    }
    private var front: [Entry] = []
    private var back: [Entry] = []

    var count: Int { front.count + back.count }
    var value: Double { max(front.last?.runningMax ?? -.infinity, back.last?.runningMax ?? -.infinity) }
    var approximateBytes: Int { HeapBytes.of(front) + HeapBytes.of(back) }

    mutating func pushBack(_ v: Double) { back.append(Entry(value: v, runningMax: max(v, back.last?.runningMax ?? -.infinity))) }

    mutating func pushFront(_ v: Double) { front.append(Entry(value: v, runningMax: max(v, front.last?.runningMax ?? -.infinity))) }

    mutating func popFront() {
        if front.isEmpty { split(frontCount: (back.count + 1) / 2) }
        front.removeLast()
    }

    mutating func popBack() {
        if back.isEmpty { split(frontCount: front.count / 2) }
        back.removeLast()
    }

    mutating func removeAll() {
        front.removeAll(keepingCapacity: true)
        back.removeAll(keepingCapacity: true)
    }

    /// Redistributes the window so the front stack holds its first `k` values.
    private mutating func split(frontCount k: Int) {
        let window = front.reversed().map(\.value) + back.map(\.value)
        front = Self.stack(window[..<k].reversed())
        back = Self.stack(window[k...])
    }

    private static func stack(_ values: some Collection<Double>) -> [Entry] {
        var out: [Entry] = []
        out.reserveCapacity(values.count)
        var m = -Double.infinity
        for v in values {
            m = max(m, v)
            out.append(Entry(value: v, runningMax: m))
        }
        return out
    }
}

/// What a buffer costs on the heap: its capacity, plus the allocation's header and the
/// allocator's rounding and bookkeeping (~48 bytes measured per small buffer on glibc).
public enum HeapBytes {
    public static let perAllocation = 48

    public static func of<T>(_ a: [T]) -> Int { a.capacity == 0 ? 0 : perAllocation + a.capacity * MemoryLayout<T>.stride }
    static func of<T>(_ d: Deque<T>) -> Int { d.isEmpty ? 0 : perAllocation + d.count * MemoryLayout<T>.stride * 3 / 2 }
    static func of<K, V>(_ d: [K: V]) -> Int {
        d.capacity == 0 ? 0 : perAllocation + d.capacity * 4 / 3 * (MemoryLayout<K>.stride + MemoryLayout<V>.stride) + d.capacity / 6
    }
}
