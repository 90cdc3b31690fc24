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
        events = EntityEvents(trackedCount: plan.tracked.count, workCount: plan.maxCells.count)
        windows = WindowState(plan: plan)
    }

    /// Writes the entity's features at `current.time` (from its events strictly before it) into
    /// `row`. `scratch` (made for `plan`) is working memory, reused across calls and entities:
    /// what is read off the windows at evaluation time is not kept per entity.
    public mutating func evaluate(plan: EntityPlan, current c: CurrentEvent, row: UnsafeMutablePointer<Float>, scratch: inout WindowAggregates) {
        windows.move(to: c.time, &events, plan)
        windows.fill(&scratch, plan: plan, current: c, events: events)
        windows.write(scratch, plan: plan, current: c, row: row)
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
        if i < windows.tail { windows.move(to: time, &events, plan) }
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
        windows.dropFront(n, &events, plan)
        events.trim(before: cutoff)
    }

    /// Sets the label of event `i` (0 unknown, 1 legitimate, 2 fraud), updating the fraud counts
    /// of the windows that hold it.
    public mutating func setLabel(_ label: UInt8, at i: Int, plan: EntityPlan) {
        let was = events[i].label == 2, now = label == 2
        if was != now {
            for l in 0..<plan.laneCount where windows.marks[l] <= i && i < windows.tail {
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

    /// Starts loading what evaluating and recording an event will read, so that a batch can ask
    /// for the entities of the transactions just ahead while it works on the current one (an
    /// entity out of cache was most of the store's time, a miss for each buffer it touched).
    /// Shallow: each buffer's header and first line, at addresses the state itself holds. Deep
    /// (once a shallow call had time to land): the lines read off those headers, the newest
    /// event and each window's ends (the first `windowEnds` marks: ``WindowState/distinctOffset(_:)``).
    /// `mutating` only to be reached in place (see ``newestTimeInPlace()``); nothing changes.
    mutating func prefetch(deep: Bool, windowEnds: Int) {
        if deep {
            windows.marks.withUnsafeBufferPointer { marks in
                events.prefetch(at: UnsafeBufferPointer(rebasing: marks.prefix(windowEnds)), tail: windows.tail)
            }
        } else {
            events.prefetchHeaders()
            Prefetch.header(of: windows.marks)
            Prefetch.header(of: windows.cells)
            windows.refs.prefetchHeader()
        }
    }

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

/// The incremental window state of one entity (see ``EntityState``), in three buffers whatever
/// the spec: ``marks``, ``cells`` and ``refs``, plus working slots in the events' own buffer.
///
/// A card of the default spec used to hold about twenty buffers (a sliding maximum was two
/// stacks, each distinct count and first-seen field a dictionary, the located and countried
/// events two queues), and an entity out of cache paid a miss for each one it touched: most of
/// the store's time. Now:
/// - **Sliding maxima** keep no stacks. Each one splits its window `[head, tail)` at a point
///   `mid` (in ``marks``): every event in `[head, mid)` holds, in its working slot, the maximum
///   from it to `mid`; every event in `[mid, tail)` the maximum from `mid` to it. The window's
///   maximum is the larger of the first event's and the last one's. An event entering at either
///   end extends its side; one leaving needs nothing, unless its side is empty, when the window
///   is split again in the middle (amortised O(1), as two stacks are).
/// - **Distinct counts and first-seen fields** share one open-addressing table of reference
///   counts (``RefTable``), keyed by the already hashed value and the request.
/// - **The latest located and the earliest countried event** of the history lane are two
///   indices kept as events enter and leave it.
struct WindowState: Sendable {
    /// The time the windows were last moved to; `.min` before the first evaluation.
    var time: Int64 = .min
    var tail = 0
    /// Each lane's head (`laneCount`), then each sliding maximum's split point
    /// (``EntityPlan/maxCells``), then each distinct request's count of values.
    var marks: [Int]
    /// Per filter group and lane, at ``EntityPlan/cell(_:_:)``.
    var cells: [WindowCell]
    /// Reference counts of the tracked values in each distinct request's lane (tag `r`) and of
    /// each first-seen field's values in the history lane (tag `distinct.count + k`).
    var refs = RefTable()
    /// The history lane's latest event with a location and earliest one with a country; -1 for none.
    var lastLocated = -1
    var firstCountried = -1

    /// Where the split points and the distinct counts start in ``marks``.
    @inline(__always)
    static func midOffset(_ plan: EntityPlan) -> Int { plan.laneCount }
    @inline(__always)
    static func distinctOffset(_ plan: EntityPlan) -> Int { plan.laneCount + plan.maxCells.count }

    init(plan: EntityPlan) {
        marks = Array(repeating: 0, count: Self.distinctOffset(plan) + plan.distinct.count)
        cells = Array(repeating: WindowCell(), count: plan.cellCount)
    }

    var approximateBytes: Int { HeapBytes.of(marks) + HeapBytes.of(cells) + refs.approximateBytes }

    /// Runs `body` with the entity's buffers open in place: updating them then costs no
    /// uniqueness check or retain per event (the arrays are put back after).
    @inline(__always)
    mutating func withFrame<R>(_ ev: inout EntityEvents, _ plan: EntityPlan, _ body: (inout WindowState, WindowFrame) -> R) -> R {
        var cells = self.cells, marks = self.marks
        self.cells = []
        self.marks = []
        defer {
            self.cells = cells
            self.marks = marks
        }
        let tracked = ev.trackedCount, stride = ev.stride
        return cells.withUnsafeMutableBufferPointer { c in
            marks.withUnsafeMutableBufferPointer { m in
                ev.withBuffers { rows, slots in
                    body(&self, WindowFrame(plan: plan, rows: rows, slots: slots, stride: stride, trackedCount: tracked, cells: c, marks: m))
                }
            }
        }
    }

    /// Moves every lane to `[t − w, t)`, stepping each end over the events that enter or leave.
    mutating func move(to t: Int64, _ ev: inout EntityEvents, _ plan: EntityPlan) {
        guard t != time else { return }
        withFrame(&ev, plan) { w, f in w.move(to: t, f) }
    }

    private mutating func move(to t: Int64, _ f: WindowFrame) {
        let rows = f.rows, plan = f.plan
        // Every event before an end is earlier than where that end was put, so moving forward in
        // time an end never steps back: not looking (the event before a head that does not move
        // is a line of its own, most often, and no prefetch has asked for it) saves a miss per lane.
        let back = t < time
        var newTail = tail
        while newTail < rows.count && rows[newTail].time < t { newTail += 1 }
        while back && newTail > 0 && rows[newTail - 1].time >= t { newTail -= 1 }
        for l in 0..<plan.laneCount {
            let start = t - plan.spans[l]
            let h = f.marks[l]
            var nh = h
            while nh < rows.count && rows[nh].time < start { nh += 1 }
            while back && nh > 0 && rows[nh - 1].time >= start { nh -= 1 }
            if nh == h && newTail == tail { continue }
            if newTail <= h || nh >= tail {
                // No overlap with the old window: empty the lane (each event leaves as it would
                // one at a time, which costs what adding it did), then fill it from its new start.
                for i in h..<tail { removeFront(i, lane: l, end: tail, f) }
                for k in plan.maxLane.indices where plan.maxLane[k] == l { f.marks[f.midOffset + k] = nh }
                for i in nh..<newTail { addBack(i, lane: l, f) }
            } else {
                // Grows to `[min(h, nh), max(tail, newTail))` first, then shrinks: every step
                // keeps the window one contiguous range.
                if newTail > tail { for i in tail..<newTail { addBack(i, lane: l, f) } }
                if nh < h { for i in Swift.stride(from: h - 1, through: nh, by: -1) { addFront(i, lane: l, f) } }
                let end = max(tail, newTail)
                if nh > h { for i in h..<nh { removeFront(i, lane: l, end: end, f) } }
                if newTail < tail { for i in Swift.stride(from: tail - 1, through: newTail, by: -1) { removeBack(i, lane: l, start: nh, f) } }
            }
            f.marks[l] = nh
        }
        tail = newTail
        time = t
    }

    /// The first `n` events are about to be dropped: take them out of the windows, shift indices.
    mutating func dropFront(_ n: Int, _ ev: inout EntityEvents, _ plan: EntityPlan) {
        withFrame(&ev, plan) { w, f in
            let end = min(n, w.tail)
            for l in 0..<plan.laneCount where f.marks[l] < end {
                for i in f.marks[l]..<end { w.removeFront(i, lane: l, end: w.tail, f) }
                f.marks[l] = end
            }
            // Heads and split points (every one within its window), then the tail and the history markers.
            for k in 0..<f.distinctOffset { f.marks[k] = max(f.marks[k], n) - n }
            w.tail = max(w.tail, n) - n
            if w.lastLocated >= 0 { w.lastLocated -= n }
            if w.firstCountried >= 0 { w.firstCountried -= n }
        }
    }

    // MARK: Events entering and leaving one lane

    /// Event `i` enters lane `l` at its end: the window `[head, i)` becomes `[head, i + 1)`.
    @inline(__always)
    mutating func addBack(_ i: Int, lane l: Int, _ f: WindowFrame) {
        add(i, lane: l, f) { m, v in
            let mid = f.marks[f.midOffset + m]
            f.setRunning(m, i, i > mid ? max(v, f.running(m, i - 1)) : v)
        }
        if l == f.plan.historyLane {
            if f.located(i) { lastLocated = i }
            if firstCountried < 0, f.countried(i) { firstCountried = i }
        }
    }

    /// Event `i` enters lane `l` at its start: `[i + 1, end)` becomes `[i, end)`.
    @inline(__always)
    mutating func addFront(_ i: Int, lane l: Int, _ f: WindowFrame) {
        add(i, lane: l, f) { m, v in
            let mid = f.marks[f.midOffset + m]
            f.setRunning(m, i, i + 1 < mid ? max(v, f.running(m, i + 1)) : v)
        }
        if l == f.plan.historyLane {
            if lastLocated < 0, f.located(i) { lastLocated = i }
            if f.countried(i) { firstCountried = i }
        }
    }

    /// Event `i` leaves lane `l` at its start: `[i, end)` becomes `[i + 1, end)`.
    @inline(__always)
    mutating func removeFront(_ i: Int, lane l: Int, end: Int, _ f: WindowFrame) {
        remove(i, lane: l, f) { m in
            // The start side is empty: split the window, giving the start side its first half.
            if f.marks[f.midOffset + m] == i { f.split(m, start: i, end: end, at: i + (end - i + 1) / 2) }
        }
        if l == f.plan.historyLane {
            // The latest located event was the first one: no other is left.
            if lastLocated == i { lastLocated = -1 }
            if firstCountried == i {
                var j = i + 1
                while j < end && !f.countried(j) { j += 1 }
                firstCountried = j < end ? j : -1
            }
        }
    }

    /// Event `i` leaves lane `l` at its end: `[start, i + 1)` becomes `[start, i)`.
    @inline(__always)
    mutating func removeBack(_ i: Int, lane l: Int, start: Int, _ f: WindowFrame) {
        remove(i, lane: l, f) { m in
            if f.marks[f.midOffset + m] == i + 1 { f.split(m, start: start, end: i + 1, at: start + (i + 1 - start) / 2) }
        }
        if l == f.plan.historyLane {
            if firstCountried == i { firstCountried = -1 }
            if lastLocated == i {
                var j = i - 1
                while j >= start && !f.located(j) { j -= 1 }
                lastLocated = j >= start ? j : -1
            }
        }
    }

    /// What entering lane `l` does to the cells and reference counts; `maximum(m, v)` updates
    /// sliding maximum `m` of the lane with the event's value for it (−∞ if its filter fails).
    @inline(__always)
    private mutating func add(_ i: Int, lane l: Int, _ f: WindowFrame, maximum: (Int, Double) -> Void) {
        let x = f.rows[i], plan = f.plan
        let a = x.amount
        let u = Int128(FixedAmount.units(a))
        let bits = x.filterBits
        for k in plan.laneCellStart[l]..<plan.laneCellStart[l + 1] {
            let c = plan.laneCells[k]
            let passes = c.filterMask == 0 || bits & c.filterMask != 0
            if passes { f.cells[c.cell].add(u) }
            if c.maxSlot >= 0 { maximum(c.maxSlot, passes ? a : -.infinity) }
        }
        if x.label == 2 { f.cells[l].fraud += 1 }
        for (r, req) in plan.distinct.enumerated() where req.lane == l {
            let h = f.tracked(req.tracked, i)
            if h != 0, refs.increment(h, tag: r) { f.marks[f.distinctOffset + r] += 1 }
        }
        if l == plan.historyLane {
            for (k, tr) in plan.firstSeen.enumerated() {
                let h = f.tracked(tr, i)
                if h != 0 { refs.increment(h, tag: plan.distinct.count + k) }
            }
        }
    }

    /// What leaving lane `l` does; `maximum(m)` runs for each sliding maximum of the lane first.
    @inline(__always)
    private mutating func remove(_ i: Int, lane l: Int, _ f: WindowFrame, maximum: (Int) -> Void) {
        let x = f.rows[i], plan = f.plan
        let u = Int128(FixedAmount.units(x.amount))
        let bits = x.filterBits
        for k in plan.laneCellStart[l]..<plan.laneCellStart[l + 1] {
            let c = plan.laneCells[k]
            if c.filterMask == 0 || bits & c.filterMask != 0 { f.cells[c.cell].remove(u) }
            if c.maxSlot >= 0 { maximum(c.maxSlot) }
        }
        if x.label == 2 { f.cells[l].fraud -= 1 }
        for (r, req) in plan.distinct.enumerated() where req.lane == l {
            let h = f.tracked(req.tracked, i)
            if h != 0, refs.decrement(h, tag: r) { f.marks[f.distinctOffset + r] -= 1 }
        }
        if l == plan.historyLane {
            for (k, tr) in plan.firstSeen.enumerated() {
                let h = f.tracked(tr, i)
                if h != 0 { refs.decrement(h, tag: plan.distinct.count + k) }
            }
        }
    }

    /// Writes the features from `aggregates` (``fill(_:plan:current:events:)``) and the cells,
    /// read in place. Opened as mutable: reading them retained and released the buffer, and a
    /// copy kept in the aggregates had to be let go before the next update.
    mutating func write(_ aggregates: WindowAggregates, plan: EntityPlan, current c: CurrentEvent, row: UnsafeMutablePointer<Float>) {
        cells.withUnsafeMutableBufferPointer { EntityKernel.write(aggregates, cells: UnsafeBufferPointer($0), plan: plan, current: c, row: row) }
    }

    /// Fills `aggregates` for an evaluation: what is read off the window structures (the cells
    /// are read where they are).
    func fill(_ aggregates: inout WindowAggregates, plan: EntityPlan, current c: CurrentEvent, events ev: EntityEvents) {
        let work = ev.trackedCount, midOffset = Self.midOffset(plan), distinctOffset = Self.distinctOffset(plan)
        for (m, cell) in plan.maxCells.enumerated() {
            let head = marks[cell % plan.laneCount], mid = marks[midOffset + m]
            let start = head < mid ? Double(bitPattern: ev.slot(work + m, head)) : -.infinity
            let end = mid < tail ? Double(bitPattern: ev.slot(work + m, tail - 1)) : -.infinity
            aggregates.maxv[cell] = max(start, end)
        }
        for r in plan.distinct.indices { aggregates.distinct[r] = marks[distinctOffset + r] }
        guard let h = plan.historyLane else { return }
        for (k, tr) in plan.firstSeen.enumerated() {
            let v = c.tracked[tr]
            aggregates.seen[k] = v != 0 && refs.contains(v, tag: plan.distinct.count + k)
        }
        aggregates.lastTime = tail > marks[h] ? ev.time(tail - 1) : nil
        if lastLocated >= 0 {
            let x = ev[lastLocated]
            aggregates.lastLat = x.lat
            aggregates.lastLon = x.lon
            aggregates.lastLocTime = x.time
        } else {
            aggregates.lastLat = .nan
            aggregates.lastLon = .nan
            aggregates.lastLocTime = 0
        }
        if firstCountried >= 0, let ct = plan.countryTracked {
            aggregates.homeCountry = ev.tracked(ct, firstCountried)
        } else {
            aggregates.homeCountry = 0
        }
    }
}

/// An entity's buffers opened in place for one window operation (``WindowState/withFrame(_:_:_:)``).
struct WindowFrame {
    let plan: EntityPlan
    let rows: UnsafeBufferPointer<EntityEvent>
    /// The events' slots (``EntityEvents``): tracked values, then working values.
    let slots: UnsafeMutableBufferPointer<UInt64>
    let stride: Int
    let trackedCount: Int
    let cells: UnsafeMutableBufferPointer<WindowCell>
    let marks: UnsafeMutableBufferPointer<Int>

    var midOffset: Int { WindowState.midOffset(plan) }
    var distinctOffset: Int { WindowState.distinctOffset(plan) }

    @inline(__always)
    func tracked(_ k: Int, _ i: Int) -> UInt64 { slots[i &* stride &+ k] }

    @inline(__always)
    func located(_ i: Int) -> Bool { !rows[i].lat.isNaN && !rows[i].lon.isNaN }

    @inline(__always)
    func countried(_ i: Int) -> Bool {
        guard let ct = plan.countryTracked else { return false }
        return tracked(ct, i) != 0
    }

    /// Event `i`'s running maximum for sliding maximum `m` (see ``WindowState``).
    @inline(__always)
    func running(_ m: Int, _ i: Int) -> Double { Double(bitPattern: slots[i &* stride &+ trackedCount &+ m]) }

    @inline(__always)
    func setRunning(_ m: Int, _ i: Int, _ v: Double) { slots[i &* stride &+ trackedCount &+ m] = v.bitPattern }

    /// Event `i`'s value for sliding maximum `m`: its amount if it passes the maximum's filter, else −∞.
    @inline(__always)
    func value(_ m: Int, _ i: Int) -> Double {
        let g = plan.maxCells[m] / plan.laneCount
        return g == 0 || rows[i].filterBits & (1 << UInt8(g - 1)) != 0 ? rows[i].amount : -.infinity
    }

    /// Splits sliding maximum `m`'s window `[start, end)` at `mid`: recomputes both sides' running maxima.
    func split(_ m: Int, start: Int, end: Int, at mid: Int) {
        marks[midOffset + m] = mid
        var run = -Double.infinity
        for j in Swift.stride(from: mid - 1, through: start, by: -1) {
            run = max(value(m, j), run)
            setRunning(m, j, run)
        }
        run = -.infinity
        for j in mid..<end {
            run = max(value(m, j), run)
            setRunning(m, j, run)
        }
    }
}

/// Reference counts of hashed values under small integer tags, in one open-addressing table with
/// linear probing: all of an entity's distinct-count requests and first-seen fields in a single
/// buffer. The values are keyed hashes already, so a multiply spreads them (no SipHash, as a
/// `Dictionary` would run); 0 marks an empty slot (tracked values are never 0). Deletion shifts
/// the probe run back (no tombstones), and the table shrinks when mostly empty, so its size
/// follows the windows' contents.
struct RefTable: Sendable {
    struct Slot: Sendable {
        var key: UInt64 = 0
        var tag: UInt32 = 0
        var count: UInt32 = 0
    }
    private(set) var slots: [Slot] = []
    private(set) var count = 0

    var approximateBytes: Int { HeapBytes.of(slots) }

    func prefetchHeader() { Prefetch.header(of: slots) }

    @inline(__always)
    private static func home(_ key: UInt64, _ tag: Int, _ mask: Int) -> Int {
        Int(truncatingIfNeeded: ((key ^ (UInt64(tag) &* 0x9E37_79B9_7F4A_7C15)) &* 0xBF58_476D_1CE4_E5B9) >> 32) & mask
    }

    /// The slot holding `(key, tag)`, or the empty slot where its probe run ends.
    @inline(__always)
    private static func find(_ key: UInt64, _ tag: Int, in s: UnsafeBufferPointer<Slot>) -> Int {
        let mask = s.count - 1
        var i = home(key, tag, mask)
        while s[i].key != 0 && (s[i].key != key || s[i].tag != UInt32(tag)) { i = (i + 1) & mask }
        return i
    }

    @inline(__always)
    private static func find(_ key: UInt64, _ tag: Int, in s: UnsafeMutableBufferPointer<Slot>) -> Int {
        find(key, tag, in: UnsafeBufferPointer(s))
    }

    func contains(_ key: UInt64, tag: Int) -> Bool {
        slots.withUnsafeBufferPointer { s in !s.isEmpty && s[Self.find(key, tag, in: s)].key != 0 }
    }

    /// Counts one more `key` under `tag`; returns whether it is new.
    @discardableResult
    mutating func increment(_ key: UInt64, tag: Int) -> Bool {
        if (count + 1) * 2 > slots.count { resize(to: max(8, slots.count * 2)) }
        let new = slots.withUnsafeMutableBufferPointer { s in
            let i = Self.find(key, tag, in: s)
            if s[i].key != 0 {
                s[i].count += 1
                return false
            }
            s[i] = Slot(key: key, tag: UInt32(tag), count: 1)
            return true
        }
        if new { count += 1 }
        return new
    }

    /// Counts one `key` under `tag` less; returns whether it is gone.
    @discardableResult
    mutating func decrement(_ key: UInt64, tag: Int) -> Bool {
        guard !slots.isEmpty else { return false }
        let gone = slots.withUnsafeMutableBufferPointer { s in
            var hole = Self.find(key, tag, in: s)
            guard s[hole].key != 0 else { return false }
            if s[hole].count > 1 {
                s[hole].count -= 1
                return false
            }
            // Backward-shift deletion: an entry later in the run moves into the hole unless its
            // home lies cyclically after the hole (it would become unreachable).
            let mask = s.count - 1
            var j = (hole + 1) & mask
            while s[j].key != 0 {
                let home = Self.home(s[j].key, Int(s[j].tag), mask)
                if (j &- home) & mask >= (j &- hole) & mask {
                    s[hole] = s[j]
                    hole = j
                }
                j = (j + 1) & mask
            }
            s[hole] = Slot()
            return true
        }
        if gone {
            count -= 1
            if slots.count > 16 && count * 8 < slots.count { resize(to: slots.count / 4) }
        }
        return gone
    }

    private mutating func resize(to capacity: Int) {
        let old = slots
        slots = Array(repeating: Slot(), count: capacity)
        slots.withUnsafeMutableBufferPointer { s in
            for e in old where e.key != 0 { s[Self.find(e.key, Int(e.tag), in: s)] = e }
        }
    }
}

extension HashedTable<EntityState> {
    /// Loads ahead what working on `key`'s entity `distance` steps from now (1...4) will read,
    /// each step what the one before it loaded tells where to look: its slot (4), its state (3),
    /// its buffers' headers (2), its windows' ends and newest event (1), so that a call at each
    /// distance in turn finds every line in cache. `windowEnds`: ``WindowState/distinctOffset(_:)``.
    mutating func prefetchEntity(_ key: UInt64, distance: Int, windowEnds: Int) {
        if distance >= 4 { return prefetch(key) }
        guard let p = position(of: key) else { return }
        if distance == 3 { return prefetchValue(at: p) }
        values[p].prefetch(deep: distance == 1, windowEnds: windowEnds)
    }
}

/// What a buffer costs on the heap: its capacity, plus the allocation's header and the
/// allocator's rounding and bookkeeping (~48 bytes measured per small buffer on glibc).
public enum HeapBytes {
    public static let perAllocation = 48

    public static func of<T>(_ a: [T]) -> Int { a.capacity == 0 ? 0 : perAllocation + a.capacity * MemoryLayout<T>.stride }
}
