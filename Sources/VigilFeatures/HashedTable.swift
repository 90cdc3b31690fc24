internal import CPrefetch

/// An index from keys that are already keyed hashes (uniform 64-bit values) to integers: the
/// slots behind ``HashedTable`` and ``RememberedTransactions``.
///
/// `Dictionary` hashes every key again with SipHash, and where a key's probe will land cannot be
/// known before the lookup, so it cannot be loaded ahead; for an entity out of cache those probes
/// were a good part of the store's time. Here a key's home slot is a multiplication away, so a
/// batch can prefetch it transactions ahead (``prefetch(_:)``). Open addressing with linear
/// probing over 16-byte slots `(key, value)`, at most 70% full, deletion by shifting back (no
/// tombstones).
struct SlotIndex {
    private struct Slot {
        var key: UInt64 = 0
        /// -1 for an empty slot.
        var value = -1
    }

    private var slots: [Slot]
    /// 64 minus log2 of the slot count: a key's home is the top bits of its product with 2^64/φ.
    private var shift: UInt64
    private(set) var count = 0

    init() {
        slots = Array(repeating: Slot(), count: 16)
        shift = 64 - 4
    }

    @inline(__always)
    private static func home(_ key: UInt64, _ shift: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// The slot holding `key`, or the empty slot where it would go.
    @inline(__always)
    private func slot(of key: UInt64) -> Int {
        slots.withUnsafeBufferPointer { s in
            let mask = s.count - 1
            var i = Self.home(key, shift)
            while s[i].value >= 0 && s[i].key != key { i = (i + 1) & mask }
            return i
        }
    }

    /// The value `key` maps to.
    @inline(__always)
    func value(of key: UInt64) -> Int? {
        let v = slots[slot(of: key)].value
        return v >= 0 ? v : nil
    }

    /// Adds `key` (which must be absent) mapping to `value` (not negative).
    mutating func insert(_ key: UInt64, _ value: Int) {
        if (count + 1) * 10 > slots.count * 7 { resize(to: slots.count * 2) }
        let i = slot(of: key)
        precondition(slots[i].value < 0, "SlotIndex.insert: the key is there already")
        slots[i] = Slot(key: key, value: value)
        count += 1
    }

    /// Maps `key`, which must be present, to `value`.
    mutating func update(_ key: UInt64, to value: Int) {
        let i = slot(of: key)
        precondition(slots[i].value >= 0, "SlotIndex.update: the key is absent")
        slots[i].value = value
    }

    /// Removes `key`, which must be present.
    mutating func remove(_ key: UInt64) {
        var hole = slot(of: key)
        precondition(slots[hole].value >= 0, "SlotIndex.remove: the key is absent")
        let shift = self.shift
        slots.withUnsafeMutableBufferPointer { s in
            // Shift back every slot after the hole, up to an empty one, that may move: one whose
            // home is not within (hole, j] cyclically, so a lookup from its home still finds it.
            let mask = s.count - 1
            var j = hole
            while true {
                j = (j + 1) & mask
                guard s[j].value >= 0 else { break }
                let h = Self.home(s[j].key, shift)
                let stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j)
                if stays { continue }
                s[hole] = s[j]
                hole = j
            }
            s[hole] = Slot()
        }
        count -= 1
    }

    /// Starts loading the slot where a lookup of `key` begins.
    @inline(__always)
    func prefetch(_ key: UInt64) {
        slots.withUnsafeBufferPointer { s in
            if let base = s.baseAddress { vigil_prefetch(base + Self.home(key, shift)) }
        }
    }

    private mutating func resize(to capacity: Int) {
        let old = slots
        slots = Array(repeating: Slot(), count: capacity)
        shift = UInt64(64 - capacity.trailingZeroBitCount)
        for o in old where o.value >= 0 { slots[slot(of: o.key)] = o }
    }
}

/// A hash table whose keys are already keyed hashes: the in-memory store's entities, by key.
/// A ``SlotIndex`` from each key to its value's position; the values dense in an array, a
/// removal moving the last one into the hole. A batch prefetches a key's slot transactions
/// ahead (``prefetch(_:)``), then its value (``prefetchValue(at:)``).
struct HashedTable<Value> {
    private var index = SlotIndex()
    /// The keys in the order of ``values``.
    private(set) var keys: [UInt64] = []
    /// The values, dense. Read and change them in place through `values[position]`; add and
    /// remove only through the table.
    var values: [Value] = []

    var count: Int { keys.count }

    /// The position of `key`'s value in ``values``.
    @inline(__always)
    func position(of key: UInt64) -> Int? { index.value(of: key) }

    subscript(key: UInt64) -> Value? { position(of: key).map { values[$0] } }

    /// Adds `key` (which must be absent) with `value`; returns its position.
    @discardableResult
    mutating func insert(_ key: UInt64, _ value: Value) -> Int {
        index.insert(key, count)
        keys.append(key)
        values.append(value)
        return count - 1
    }

    /// Removes the value at `position` (the last one moves into its place).
    mutating func remove(at position: Int) {
        index.remove(keys[position])
        let last = count - 1
        if position != last {
            keys[position] = keys[last]
            values.swapAt(position, last)
            index.update(keys[position], to: position)
        }
        keys.removeLast()
        values.removeLast()
    }

    /// Removes `key` and returns its value, if it is there.
    @discardableResult
    mutating func removeValue(forKey key: UInt64) -> Value? {
        guard let p = position(of: key) else { return nil }
        let v = values[p]
        remove(at: p)
        return v
    }

    /// Starts loading the slot where a lookup of `key` begins.
    @inline(__always)
    func prefetch(_ key: UInt64) { index.prefetch(key) }

    /// Starts loading the value at `position` (its first two cache lines).
    @inline(__always)
    func prefetchValue(at position: Int) {
        values.withUnsafeBufferPointer { v in
            guard let base = v.baseAddress else { return }
            let address = UnsafeRawPointer(base + position)
            vigil_prefetch(address)
            if MemoryLayout<Value>.stride > 64 { vigil_prefetch(address + 64) }
        }
    }
}

extension HashedTable: Sendable where Value: Sendable {}

/// Cache prefetch hints: the processor starts loading a line and goes on.
enum Prefetch {
    /// An array buffer's header (its reference count, read before every write, and its count)
    /// and its first elements.
    @inline(__always)
    static func header<T>(of a: [T]) {
        a.withUnsafeBufferPointer { b in
            guard let base = b.baseAddress else { return }
            vigil_prefetch(UnsafeRawPointer(base) - 32)
            vigil_prefetch(UnsafeRawPointer(base) + 32)
        }
    }
}
