/// Numbers written as ASCII digits straight into a byte buffer, with no intermediate `String`:
/// for the bytes Vigil writes per message (Redis commands, Kafka headers).
public enum ASCIINumbers {
    /// The number of decimal digits of `n`.
    @inlinable
    public static func digits(_ n: UInt64) -> Int {
        var d = 1, x = n
        while x >= 10 {
            x /= 10
            d += 1
        }
        return d
    }

    /// `n` in decimal, as `String(n)` writes it.
    @inlinable
    public static func appendDecimal(_ n: UInt64, to out: inout [UInt8]) {
        if n >= 10 { appendDecimal(n / 10, to: &out) }
        out.append(UInt8(ascii: "0") + UInt8(n % 10))
    }

    /// `n` in decimal, as `String(n)` writes it (a minus sign first when negative).
    @inlinable
    public static func appendDecimal(_ n: Int64, to out: inout [UInt8]) {
        if n < 0 { out.append(UInt8(ascii: "-")) }
        appendDecimal(n.magnitude, to: &out)
    }

    /// `v` as 16 lowercase hex digits (``KeyedHasher/hex(_:)``'s form), written in place and
    /// appended at once.
    @inlinable
    public static func appendHex(_ v: UInt64, to out: inout [UInt8]) {
        var digits: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &digits) { d in
            for k in 0..<16 {
                let x = UInt8((v >> UInt64(60 - 4 * k)) & 0xF)
                d[k] = x < 10 ? UInt8(ascii: "0") + x : UInt8(ascii: "a") + x - 10
            }
        }
        withUnsafeBytes(of: &digits) { out.append(contentsOf: $0) }
    }

    /// `v` in lowercase hex without leading zeros, as `String(v, radix: 16)` writes it.
    @inlinable
    public static func appendHexTrimmed(_ v: UInt64, to out: inout [UInt8]) {
        let significant = max(1, (64 - v.leadingZeroBitCount + 3) / 4)
        for k in stride(from: significant - 1, through: 0, by: -1) {
            let x = UInt8((v >> UInt64(4 * k)) & 0xF)
            out.append(x < 10 ? UInt8(ascii: "0") + x : UInt8(ascii: "a") + x - 10)
        }
    }
}
