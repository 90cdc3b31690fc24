internal import CPrefetch

/// A hash table whose keys are already keyed hashes (uniform 64-bit values): the in-memory
/// store's entities and remembered transactions.
///
/// `Dictionary` hashes every key again with SipHash, and where a key's probe will land cannot be
/// known before the lookup, so it cannot be loaded ahead; for an entity out of cache those probes
/// were a good part of the store's time. Here a key's home slot is a multiplication away, so a
/// batch can prefetch it transactions ahead (``prefetch(_:)``), then the value
/// (``prefetchValue(at:)``). Open addressing with linear probing over 16-byte slots
/// `(key, position)`, at most 70% full, deletion by shifting back (no tombstones); the values
/// dense in an array, a removal moving the last one into the hole.
struct HashedTable<Value> {
    private struct Slot {
        var key: UInt64 = 0
        /// Where the key's value is in ``values``; -1 for an empty slot.
        var position = -1
    }

    private var slots: [Slot]
    /// 64 minus log2 of the slot count: a key's home is the top bits of its product with 2^64/φ.
    private var shift: UInt64
    /// The keys in the order of ``values``.
    private(set) var keys: [UInt64] = []
    /// The values, dense. Read and change them in place through `values[position]`; add and
    /// remove only through the table.
    var values: [Value] = []

    init() {
        slots = Array(repeating: Slot(), count: 16)
        shift = 64 - 4
    }

    var count: Int { keys.count }

    @inline(__always)
    private func home(_ key: UInt64) -> Int { Self.home(key, shift) }

    @inline(__always)
    private static func home(_ key: UInt64, _ shift: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// The slot holding `key`, or the empty slot where it would go.
    @inline(__always)
    private func slot(of key: UInt64) -> Int {
        slots.withUnsafeBufferPointer { s in
            let mask = s.count - 1
            var i = home(key)
            while s[i].position >= 0 && s[i].key != key { i = (i + 1) & mask }
            return i
        }
    }

    /// The position of `key`'s value in ``values``.
    @inline(__always)
    func position(of key: UInt64) -> Int? {
        let p = slots[slot(of: key)].position
        return p >= 0 ? p : nil
    }

    subscript(key: UInt64) -> Value? { position(of: key).map { values[$0] } }

    /// Adds `key` (which must be absent) with `value`; returns its position.
    @discardableResult
    mutating func insert(_ key: UInt64, _ value: Value) -> Int {
        if (count + 1) * 10 > slots.count * 7 { resize(to: slots.count * 2) }
        let i = slot(of: key)
        precondition(slots[i].position < 0, "HashedTable.insert: the key is there already")
        slots[i] = Slot(key: key, position: count)
        keys.append(key)
        values.append(value)
        return count - 1
    }

    /// Removes the value at `position` (the last one moves into its place).
    mutating func remove(at position: Int) {
        let key = keys[position]
        var hole = slot(of: key)
        let shift = self.shift
        slots.withUnsafeMutableBufferPointer { s in
            // Shift back every slot after the hole, up to an empty one, that may move: one whose
            // home is not within (hole, j] cyclically, so a lookup from its home still finds it.
            let mask = s.count - 1
            var j = hole
            while true {
                j = (j + 1) & mask
                guard s[j].position >= 0 else { break }
                let h = Self.home(s[j].key, shift)
                let stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j)
                if stays { continue }
                s[hole] = s[j]
                hole = j
            }
            s[hole] = Slot()
        }
        let last = count - 1
        if position != last {
            keys[position] = keys[last]
            values.swapAt(position, last)
            slots[slot(of: keys[position])].position = position
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
    func prefetch(_ key: UInt64) {
        slots.withUnsafeBufferPointer { s in
            if let base = s.baseAddress { vigil_prefetch(base + home(key)) }
        }
    }

    /// Starts loading what removing `key` touches besides its slot, once the slot is in cache
    /// (after ``prefetch(_:)``): its entry in ``keys`` and its value, which the last ones replace.
    @inline(__always)
    func prefetchRemoval(of key: UInt64) {
        guard let p = position(of: key) else { return }
        keys.withUnsafeBufferPointer { k in vigil_prefetch(k.baseAddress! + p) }
        prefetchValue(at: p)
    }

    /// Starts loading the slot of the key `back` places before the last: the one that the
    /// removal `back` removals from now moves into its hole (``remove(at:)``) and re-points.
    @inline(__always)
    func prefetchMoved(back: Int) {
        let k = count - 1 - back
        if k >= 0 { prefetch(keys[k]) }
    }

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

    private mutating func resize(to capacity: Int) {
        slots = Array(repeating: Slot(), count: capacity)
        shift = UInt64(64 - capacity.trailingZeroBitCount)
        for (p, k) in keys.enumerated() { slots[slot(of: k)] = Slot(key: k, position: p) }
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
