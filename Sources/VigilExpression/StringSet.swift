/// A set of strings for `in` lookups (deny and allow lists, literal lists), with a filter in
/// front of it: most values a rule looks up are not on the list, and a `Set<String>` hashes
/// every one with SipHash, a third of the rules' instructions before this filter. The filter
/// hashes the value's bytes with a multiply per eight bytes and tests one bit: clear, the value
/// is not in the set; set (about one in sixteen misses), the set answers.
///
/// `String` equality is canonical equivalence, not byte equality (the Kelvin sign equals "K"),
/// so the filter is only built when every value is ASCII and only asked for ASCII values: two
/// ASCII strings are equal exactly when their bytes are. Anything else goes to the set.
public struct StringSet: Sendable, Hashable {
    public let values: Set<String>
    /// One bit per filter slot; empty when the filter is off.
    private let bits: [UInt64]
    private let shift: UInt64

    public init(_ values: some Sequence<String>) {
        let values = Set(values)
        self.values = values
        // Sixteen bits per value: a value not in the set finds its bit set about one time in sixteen.
        var size = 64
        while size < values.count * 16 { size *= 2 }
        shift = UInt64(64 - size.trailingZeroBitCount)
        var bits = [UInt64](repeating: 0, count: size / 64)
        for v in values {
            guard let h = Self.asciiHash(v) else {
                bits = []
                break
            }
            let i = Int(truncatingIfNeeded: h >> shift)
            bits[i >> 6] |= 1 << UInt64(i & 63)
        }
        self.bits = values.isEmpty ? [] : bits
    }

    public var count: Int { values.count }

    public func contains(_ value: String) -> Bool {
        if !bits.isEmpty, let h = Self.asciiHash(value) {
            let i = Int(truncatingIfNeeded: h >> shift)
            if bits[i >> 6] & (1 << UInt64(i & 63)) == 0 { return false }
        }
        return values.contains(value)
    }

    /// Whether the filter rules out the string whose UTF-8 bytes are `bytes`, once `transform`
    /// is applied to it: true when it is surely not in the set; false when the set must answer
    /// (a member, a value the filter lets through, or bytes it cannot judge: non-ASCII, or a
    /// `prefix` that would not cut at a byte). Reads the bytes where they are, so a caller that
    /// has them in place looks most values up without making or retaining a string.
    @inline(__always)
    public func rulesOut(_ bytes: UnsafeBufferPointer<UInt8>, _ transform: LookupTransform) -> Bool {
        guard !bits.isEmpty else { return false }
        var b = bytes, lower = false
        switch transform {
        case .none: break
        case .lower: lower = true
        case .prefix(let n):
            // As `Expression.prefix`: characters are bytes when the first n + 1 are ASCII other than CR.
            let k = Swift.min(n, b.count)
            for i in 0..<Swift.min(b.count, k + 1) where b[i] >= 0x80 || b[i] == 0x0D { return false }
            b = UnsafeBufferPointer(rebasing: b[..<k])
        }
        guard let h = Self.asciiHash(bytes: b, lowercased: lower) else { return false }
        let i = Int(truncatingIfNeeded: h >> shift)
        return bits[i >> 6] & (1 << UInt64(i & 63)) == 0
    }

    /// A hash of an ASCII string's bytes; nil when it has a byte of 0x80 or more (or its bytes
    /// are not contiguous, which native strings always are).
    @inline(__always)
    static func asciiHash(_ s: String) -> UInt64? {
        s.utf8.withContiguousStorageIfAvailable { asciiHash(bytes: $0, lowercased: false) } ?? nil
    }

    /// A hash of ASCII bytes (`lowercased`: of the bytes with A–Z made a–z, which is what
    /// `lowercased()` does to an ASCII string); nil when a byte is 0x80 or more.
    @inline(__always)
    static func asciiHash(bytes b: UnsafeBufferPointer<UInt8>, lowercased: Bool) -> UInt64? {
        var h = UInt64(truncatingIfNeeded: b.count) &* 0x9E37_79B9_7F4A_7C15, high: UInt64 = 0
        // Eight ASCII bytes at once: a byte is a capital when adding 0x3F carries into its top
        // bit and adding 0x25 does not (0x41...0x5A); no sum carries into the next byte.
        @inline(__always) func lower(_ w: UInt64) -> UInt64 {
            guard lowercased else { return w }
            let capitals = (w &+ 0x3F3F_3F3F_3F3F_3F3F) & ~(w &+ 0x2525_2525_2525_2525) & 0x8080_8080_8080_8080
            return w | (capitals >> 2)
        }
        var i = 0
        let raw = UnsafeRawBufferPointer(b)
        while i + 8 <= b.count {
            let w = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            high |= w
            h = (h ^ lower(w)) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 29
            i += 8
        }
        if i < b.count {
            var w: UInt64 = 0
            for k in i..<b.count { w |= UInt64(b[k]) << UInt64((k - i) * 8) }
            high |= w
            h = (h ^ lower(w)) &* 0xBF58_476D_1CE4_E5B9
        }
        guard high & 0x8080_8080_8080_8080 == 0 else { return nil }
        h ^= h >> 31
        return h &* 0x94D0_49BB_1331_11EB
    }

    public static func == (a: StringSet, b: StringSet) -> Bool { a.values == b.values }
    public func hash(into hasher: inout Hasher) { hasher.combine(values) }
}

/// What an `in` lookup does to its string first, when that can be done on the string's bytes:
/// nothing, `lower(…)`, or `prefix(…, n)` (see ``StringSet/rulesOut(_:_:)``).
public enum LookupTransform: Sendable, Hashable {
    case none
    case lower
    case prefix(Int)

    /// The transformed string, as the expression functions make it.
    public func apply(_ s: String) -> String {
        switch self {
        case .none: s
        case .lower: Expression.lower(s)
        case .prefix(let n): Expression.prefix(s, n)
        }
    }
}
