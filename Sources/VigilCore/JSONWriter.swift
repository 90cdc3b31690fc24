/// A minimal streaming JSON writer for Vigil's own output (verdicts, features, reports), writing
/// UTF-8 bytes straight into a buffer.
///
/// The bytes go into a buffer of the writer's own (``ByteBuffer``): a write is a capacity check
/// and a copy. Appending to a `[UInt8]` checked the array's uniqueness and capacity for every
/// byte, and a few bytes appended at once (a key) cost ~175 instructions in the generic
/// `append(contentsOf:)`: most of a verdict's encoding. A writer is a value: a copy that writes
/// copies the buffer first.
public struct JSONWriter {
    private var out: ByteBuffer
    /// One bit per open object or array: whether it has a member yet (so the next needs a comma).
    private var commas: UInt64 = 0
    private var depth = 0

    public init() { out = ByteBuffer(capacity: 512) }

    /// The bytes written so far.
    public var bytes: [UInt8] { out.withBytes { Array($0) } }

    public var text: String { out.withBytes { String(decoding: $0, as: UTF8.self) } }

    /// Writes after the bytes already in `buffer`: the writer's bytes are appended in one copy.
    public static func append(to buffer: inout [UInt8], _ body: (inout JSONWriter) -> Void) {
        var w = JSONWriter()
        body(&w)
        w.append(to: &buffer)
    }

    /// Appends what was written to `buffer`, in one copy.
    public func append(to buffer: inout [UInt8]) {
        out.withBytes { buffer.append(contentsOf: $0) }
    }

    /// Empties the writer and keeps its memory, for the next document (a batch's verdicts share
    /// one writer: none allocates its own).
    public mutating func reset() {
        own()
        out.removeAll()
        commas = 0
        depth = 0
    }

    /// Makes the buffer this writer's own before a write (a copied writer shares it until then).
    @inline(__always)
    private mutating func own() {
        if !isKnownUniquelyReferenced(&out) { out = out.copy() }
    }

    mutating func separate() {
        own()
        let bit: UInt64 = 1 << UInt64(depth & 63)
        if commas & bit != 0 { out.append(UInt8(ascii: ",")) }
        commas |= bit
    }

    /// An object or array: `open`, what `body` writes, `close`.
    private mutating func nested(_ open: UInt8, _ close: UInt8, _ body: (inout JSONWriter) -> Void) {
        begin(open)
        body(&self)
        end(close)
    }

    private mutating func begin(_ open: UInt8) {
        separate()
        out.append(open)
        depth += 1
        precondition(depth < 64, "JSON nested deeper than 63 levels")
        commas &= ~(1 << UInt64(depth))
    }

    private mutating func end(_ close: UInt8) {
        precondition(depth > 0, "JSON closed more than opened")
        depth -= 1
        own()
        out.append(close)
    }

    public mutating func object(_ body: (inout JSONWriter) -> Void) { nested(UInt8(ascii: "{"), UInt8(ascii: "}"), body) }

    public mutating func array(_ body: (inout JSONWriter) -> Void) { nested(UInt8(ascii: "["), UInt8(ascii: "]"), body) }

    /// ``object(_:)`` in two calls, for a hot encoder: a closure that reads a value copies the
    /// value into its context first (a retain and release of each of its strings and arrays).
    public mutating func beginObject() { begin(UInt8(ascii: "{")) }
    public mutating func endObject() { end(UInt8(ascii: "}")) }
    public mutating func beginArray() { begin(UInt8(ascii: "[")) }
    public mutating func endArray() { end(UInt8(ascii: "]")) }

    /// Writes a key; the next value written (object, array or element) is its value.
    public mutating func key(_ k: String) {
        separate()
        Self.appendString(k, to: out)
        out.append(UInt8(ascii: ":"))
        commas &= ~(1 << UInt64(depth))
    }

    /// A key known when compiling (plain ASCII, nothing to escape): copied as it is, where a
    /// `String` key is scanned for characters to escape. The verdict's keys are all literals.
    public mutating func key(literal k: StaticString) {
        assert(k.withUTF8Buffer { !$0.contains { $0 < 0x20 || $0 == 34 || $0 == 92 || $0 > 0x7e } }, "key(literal:) takes plain ASCII")
        separate()
        out.reserve(k.utf8CodeUnitCount + 3)
        out.appendReserved(UInt8(ascii: "\""))
        out.appendReserved(k.bytes)
        out.appendReserved(UInt8(ascii: "\""))
        out.appendReserved(UInt8(ascii: ":"))
        commas &= ~(1 << UInt64(depth))
    }

    public mutating func field(literal k: StaticString, _ v: String) { key(literal: k); element(v) }
    public mutating func field(literal k: StaticString, _ v: Double) { key(literal: k); element(v) }
    public mutating func field(literal k: StaticString, _ v: Bool) { key(literal: k); element(v) }

    public mutating func field(_ k: String, _ v: String) { key(k); element(v) }
    public mutating func field(_ k: String, _ v: Double) { key(k); element(v) }
    public mutating func field(_ k: String, _ v: Int) {
        key(k)
        separate()
        var digits: [UInt8] = []
        Timestamp.appendPadded(v, 0, to: &digits)
        digits.withUnsafeBufferPointer { out.append($0) }
    }
    public mutating func field(_ k: String, _ v: Bool) { key(k); element(v) }

    public mutating func element(_ v: Bool) {
        separate()
        out.append((v ? "true" as StaticString : "false").bytes)
    }

    public mutating func element(_ v: String) {
        separate()
        Self.appendString(v, to: out)
    }

    /// Non-finite numbers are written as `null` (JSON has no NaN). Finite ones as Swift prints
    /// them (shortest form that reads back to the same double), with no intermediate string.
    public mutating func element(_ v: Double) {
        separate()
        if let n = Self.thousandths(v) {
            Self.appendThousandths(n, to: out)
        } else if v.isFinite {
            var sink = ByteSink(out: out)
            v.write(to: &sink)
        } else {
            out.append(("null" as StaticString).bytes)
        }
    }

    /// `v` as a whole number of thousandths, when it is exactly the `Double` nearest to one
    /// and 0.001 ≤ |v| < 10⁷ (stage latencies in µs, rounded to the nanosecond). Its shortest
    /// form is then those digits: any other decimal of as many digits or fewer is at least 0.001
    /// away, where two decimals that read back to the same `Double` below 2⁴² are closer than
    /// 2⁻¹⁰. Written directly, it skips the standard library's general shortest-digits search.
    static func thousandths(_ v: Double) -> Int64? {
        let magnitude = abs(v)
        guard magnitude >= 0.001, magnitude < 10_000_000 else { return nil }
        let n = (v * 1000).rounded()
        return n / 1000 == v ? Int64(n) : nil
    }

    /// `n` thousandths as Swift prints the `Double`: at least one decimal, no trailing zeros.
    static func appendThousandths(_ n: Int64, to out: ByteBuffer) {
        var whole = n.magnitude / 1000, fraction = n.magnitude % 1000
        var decimals = 3
        while decimals > 1, fraction % 10 == 0 {
            fraction /= 10
            decimals -= 1
        }
        let sign = n < 0 ? 1 : 0, wholeDigits = ASCIINumbers.digits(whole)
        let p = out.extend(by: sign + wholeDigits + 1 + decimals)
        if sign == 1 { p[0] = UInt8(ascii: "-") }
        for k in Swift.stride(from: sign + wholeDigits - 1, through: sign, by: -1) {
            p[k] = UInt8(ascii: "0") + UInt8(whole % 10)
            whole /= 10
        }
        p[sign + wholeDigits] = UInt8(ascii: ".")
        for k in Swift.stride(from: sign + wholeDigits + decimals, to: sign + wholeDigits, by: -1) {
            p[k] = UInt8(ascii: "0") + UInt8(fraction % 10)
            fraction /= 10
        }
    }

    /// An instant in milliseconds as an ISO 8601 string (`Timestamp.formatISO8601`).
    public mutating func timestamp(_ ms: Int64) {
        separate()
        out.append(UInt8(ascii: "\""))
        Timestamp.withISO8601(ms) { out.append($0) }
        out.append(UInt8(ascii: "\""))
    }

    private static let hexDigits: StaticString = "0123456789abcdef"

    /// `s` quoted, with `"`, `\` and control characters escaped.
    static func appendString(_ s: String, to out: ByteBuffer) {
        var s = s
        s.withUTF8 { u in
            out.reserve(u.count + 2)
            out.appendReserved(UInt8(ascii: "\""))
            var plain = true
            for c in u where c < 0x20 || c == 34 || c == 92 {
                plain = false
                break
            }
            if plain {
                out.appendReserved(u)
            } else {
                for c in u {
                    switch c {
                    case 34, 92: out.append(92); out.append(c)  // \" \\
                    case 10: out.append(92); out.append(UInt8(ascii: "n"))
                    case 13: out.append(92); out.append(UInt8(ascii: "r"))
                    case 9: out.append(92); out.append(UInt8(ascii: "t"))
                    case 0..<0x20:
                        for b in [92, UInt8(ascii: "u"), 48, 48] as [UInt8] { out.append(b) }
                        out.append(hexDigits.utf8Start[Int(c >> 4)])
                        out.append(hexDigits.utf8Start[Int(c & 15)])
                    default: out.append(c)
                    }
                }
            }
            out.append(UInt8(ascii: "\""))
        }
    }
}

extension StaticString {
    /// The literal's UTF-8 bytes, where the binary keeps them.
    var bytes: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: utf8Start, count: utf8CodeUnitCount) }
}

/// The bytes a ``JSONWriter`` has written, in memory of its own.
final class ByteBuffer {
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private var count = 0

    init(capacity: Int) {
        base = .allocate(capacity: capacity)
        self.capacity = capacity
    }

    deinit { base.deallocate() }

    func removeAll() { count = 0 }

    func copy() -> ByteBuffer {
        let c = ByteBuffer(capacity: capacity)
        c.base.update(from: base, count: count)
        c.count = count
        return c
    }

    func withBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: base, count: count))
    }

    /// Room for `n` more bytes, for the `appendReserved` calls that follow.
    @inline(__always)
    func reserve(_ n: Int) {
        if count + n > capacity { grow(to: count + n) }
    }

    private func grow(to needed: Int) {
        let c = max(needed, capacity * 2)
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: c)
        bigger.update(from: base, count: count)
        base.deallocate()
        base = bigger
        capacity = c
    }

    /// `n` more bytes at the end, for the caller to write through the pointer returned (valid
    /// until the next write).
    @inline(__always)
    func extend(by n: Int) -> UnsafeMutablePointer<UInt8> {
        reserve(n)
        defer { count += n }
        return base + count
    }

    @inline(__always)
    func appendReserved(_ b: UInt8) {
        base[count] = b
        count += 1
    }

    @inline(__always)
    func appendReserved(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let from = bytes.baseAddress else { return }
        (base + count).update(from: from, count: bytes.count)
        count += bytes.count
    }

    @inline(__always)
    func append(_ b: UInt8) {
        reserve(1)
        appendReserved(b)
    }

    @inline(__always)
    func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        reserve(bytes.count)
        appendReserved(bytes)
    }
}

/// Receives a number's text from the standard library without building a `String`: floating-point
/// `write(to:)` hands its digits to `_writeASCII` from a stack buffer.
struct ByteSink: TextOutputStream {
    let out: ByteBuffer
    mutating func write(_ string: String) {
        var string = string
        string.withUTF8 { out.append($0) }
    }
    mutating func _writeASCII(_ buffer: UnsafeBufferPointer<UInt8>) { out.append(buffer) }
}
