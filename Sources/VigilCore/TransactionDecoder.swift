import Foundation

/// One thing wrong with an input transaction: which field, what value, and why.
public struct DecodeProblem: Sendable, Hashable, CustomStringConvertible {
    public var field: String?
    /// The offending value, shortened to at most 64 characters; never a raw sensitive value.
    public var value: String?
    public var reason: String

    public init(field: String?, value: String?, reason: String) {
        self.field = field
        self.value = value
        self.reason = reason
    }

    public var description: String {
        var s = field.map { "\($0): " } ?? ""
        s += reason
        if let value { s += " (got \(value))" }
        return s
    }
}

/// A transaction that could not be decoded. Carries every problem found, not only the first.
public struct TransactionDecodingError: Error, Sendable, CustomStringConvertible {
    public var problems: [DecodeProblem]
    public init(problems: [DecodeProblem]) { self.problems = problems }
    public var description: String { problems.map(\.description).joined(separator: "; ") }
}

/// Bounds on what the decoder accepts. Defaults suit card payments.
public struct DecoderLimits: Sendable, Hashable {
    /// Largest accepted message. Default: 64 KiB.
    public var maxBytes: Int = 64 * 1024
    /// Longest accepted string value (id and optional fields). Default: 256 characters.
    public var maxStringLength: Int = 256
    /// Deepest nesting accepted inside ignored (unknown) fields. Default: 8.
    public var maxDepth: Int = 8
    /// Largest accepted amount. Default: 1e9.
    public var maxAmount: Double = 1e9
    /// Earliest accepted event time. Default: 2000-01-01T00:00:00Z.
    public var minTimestamp: Int64 = 946_684_800_000
    /// Latest accepted event time. Default: 2100-01-01T00:00:00Z.
    public var maxTimestamp: Int64 = 4_102_444_800_000

    public init() {}
}

/// Decodes Vigil's canonical transaction JSON, validating every field.
///
/// A hand-written single-pass scanner over the UTF-8 bytes: no intermediate dictionary, no
/// `Foundation` bridging. Unknown fields are skipped (bounded by ``DecoderLimits/maxDepth``).
/// A syntax error stops decoding; field problems are all collected and thrown together.
public struct TransactionDecoder: Sendable {
    public var limits: DecoderLimits

    public init(limits: DecoderLimits = DecoderLimits()) { self.limits = limits }

    public func decode(_ text: String) throws(TransactionDecodingError) -> Transaction {
        var text = text
        // `withUTF8` rethrows untyped: the error comes out through a `Result`.
        let result = text.withUTF8 { buf in Result { () throws(TransactionDecodingError) in try decode(bytes: buf) } }
        return try result.get()
    }

    public func decode(_ bytes: [UInt8]) throws(TransactionDecodingError) -> Transaction {
        try bytes.withUnsafeBufferPointer { (buf) throws(TransactionDecodingError) in try decode(bytes: buf) }
    }

    /// `bytes`, a slice of a buffer others share (a consumed Kafka batch's values), decoded in place.
    public func decode(_ bytes: ArraySlice<UInt8>) throws(TransactionDecodingError) -> Transaction {
        try bytes.withUnsafeBufferPointer { (buf) throws(TransactionDecodingError) in try decode(bytes: buf) }
    }

    public func decode(bytes: UnsafeBufferPointer<UInt8>) throws(TransactionDecodingError) -> Transaction {
        guard bytes.count <= limits.maxBytes else {
            throw TransactionDecodingError(problems: [
                DecodeProblem(field: nil, value: "\(bytes.count) bytes", reason: "message larger than \(limits.maxBytes) bytes")
            ])
        }
        var scanner = JSONScanner(bytes: bytes, limits: limits)
        do {
            return try scanner.transaction()
        } catch let error as JSONScanner.Syntax {
            throw TransactionDecodingError(problems: [
                DecodeProblem(field: nil, value: nil, reason: "malformed JSON at byte \(error.offset): \(error.message)")
            ])
        } catch {
            throw TransactionDecodingError(problems: scanner.problems)
        }
    }
}

/// Decodes a label message: `{"id": "…", "label": 0|1}`.
public func decodeLabel(_ bytes: UnsafeBufferPointer<UInt8>, limits: DecoderLimits = DecoderLimits()) throws(TransactionDecodingError) -> Label {
    var scanner = JSONScanner(bytes: bytes, limits: limits)
    do {
        return try scanner.label()
    } catch let error as JSONScanner.Syntax {
        throw TransactionDecodingError(problems: [
            DecodeProblem(field: nil, value: nil, reason: "malformed JSON at byte \(error.offset): \(error.message)")
        ])
    } catch {
        throw TransactionDecodingError(problems: scanner.problems)
    }
}

struct JSONScanner {
    struct Syntax: Error {
        var offset: Int
        var message: String
    }
    struct Invalid: Error {}

    typealias Value = JSONValue

    let b: UnsafeBufferPointer<UInt8>
    let limits: DecoderLimits
    var i = 0
    var problems: [DecodeProblem] = []

    init(bytes: UnsafeBufferPointer<UInt8>, limits: DecoderLimits) {
        self.b = bytes
        self.limits = limits
    }

    mutating func transaction() throws -> Transaction {
        var assembler = TransactionAssembler(limits: limits)
        try object { field, scanner in
            // The common timestamp, an RFC 3339 string, read where it lies (the generic path makes
            // it a `String` first); anything unusual, or out of range, takes the generic path,
            // which reports it.
            if field == .timestamp, !assembler.present.contains(.timestamp) {
                let start = scanner.i
                if let ms = scanner.timestampInPlace(), assembler.accept(timestamp: ms) { return }
                scanner.i = start
            }
            // A string field holding a string, the common case, goes straight into the
            // transaction: no `JSONValue` around it and no generic dispatch on the field.
            if let field, field.kind == .string, !assembler.present.contains(field), scanner.atString() {
                assembler.set(field, string: try scanner.string())
                return
            }
            // So does a plain number in a numeric field (no exponent, at most 15 significant
            // digits): read where it lies, without the text a problem report would need. One out
            // of range, or anything unusual, takes the generic path, which reports it.
            if let field, field.kind == .number || field == .label, !assembler.present.contains(field) {
                let start = scanner.i
                if let v = scanner.plainNumber(), assembler.accept(field, number: v) { return }
                scanner.i = start
            }
            let v = try scanner.value(depth: 1)
            guard let field else { return }  // unknown keys are ignored
            if assembler.present.contains(field) {
                assembler.problem(field.rawValue, nil, "duplicate key")
            } else {
                assembler.set(field, v)
            }
        }
        guard let tx = assembler.finish() else {
            problems = assembler.problems
            throw Invalid()
        }
        return tx
    }

    mutating func label() throws -> Label {
        var id: String?
        var fraud: Bool?
        try object { field, scanner in
            let v = try scanner.value(depth: 1)
            switch (field, v) {
            case (.id?, .string(let s)) where !s.isEmpty && s.utf8.count <= scanner.limits.maxStringLength: id = s
            case (.id?, _): scanner.problem("id", JSONValue.show(v), "must be a non-empty string")
            case (.label?, .bool(let f)): fraud = f
            case (.label?, .number(let d, _)) where d == 0 || d == 1: fraud = d == 1
            case (.label?, _): scanner.problem("label", JSONValue.show(v), "must be 0 or 1")
            default: break
            }
        }
        if id == nil, !problems.contains(where: { $0.field == "id" }) { problem("id", nil, "required field missing") }
        if fraud == nil, !problems.contains(where: { $0.field == "label" }) { problem("label", nil, "required field missing") }
        guard let id, let fraud, problems.isEmpty else { throw Invalid() }
        return Label(transactionID: id, isFraud: fraud)
    }

    mutating func problem(_ field: String?, _ value: String?, _ reason: String) {
        problems.append(DecodeProblem(field: field, value: value, reason: reason))
    }

    // MARK: - Syntax

    func fail(_ message: String) -> Syntax { Syntax(offset: i, message: message) }

    mutating func skipSpace() {
        while i < b.count {
            let c = b[i]
            guard c == 32 || c == 10 || c == 13 || c == 9 else { return }
            i += 1
        }
    }

    /// Parses a top-level object, calling `member` with each key's canonical field (nil for a key
    /// that is not one) and the scanner positioned at its value.
    mutating func object(_ member: (TransactionField?, inout JSONScanner) throws -> Void) throws {
        skipSpace()
        guard i < b.count, b[i] == 123 else { throw fail(i < b.count ? "expected an object" : "empty input") }
        i += 1
        skipSpace()
        if i < b.count, b[i] == 125 {
            i += 1
        } else {
            while true {
                skipSpace()
                guard i < b.count, b[i] == 34 else { throw fail("expected a key") }
                let key = try fieldKey()
                skipSpace()
                guard i < b.count, b[i] == 58 else { throw fail("expected ':'") }
                i += 1
                try member(key, &self)
                skipSpace()
                guard i < b.count else { throw fail("unterminated object") }
                if b[i] == 44 {
                    i += 1
                    continue
                }
                guard b[i] == 125 else { throw fail("expected ',' or '}'") }
                i += 1
                break
            }
        }
        skipSpace()
        guard i == b.count else { throw fail("trailing data after the object") }
    }

    mutating func value(depth: Int) throws -> Value {
        skipSpace()
        guard i < b.count else { throw fail("unexpected end of input") }
        switch b[i] {
        case 34: return .string(try string())
        case 123, 91:
            guard depth < limits.maxDepth else { throw fail("nested deeper than \(limits.maxDepth)") }
            let close: UInt8 = b[i] == 123 ? 125 : 93
            let kind = b[i] == 123 ? "an object" : "an array"
            i += 1
            skipSpace()
            if i < b.count, b[i] == close {
                i += 1
                return .composite(kind)
            }
            while true {
                if close == 125 {
                    skipSpace()
                    guard i < b.count, b[i] == 34 else { throw fail("expected a key") }
                    _ = try string()
                    skipSpace()
                    guard i < b.count, b[i] == 58 else { throw fail("expected ':'") }
                    i += 1
                }
                _ = try value(depth: depth + 1)
                skipSpace()
                guard i < b.count else { throw fail("unterminated \(kind)") }
                if b[i] == 44 {
                    i += 1
                    continue
                }
                guard b[i] == close else { throw fail("expected ',' in \(kind)") }
                i += 1
                return .composite(kind)
            }
        case 116: try literal("true"); return .bool(true)
        case 102: try literal("false"); return .bool(false)
        case 110: try literal("null"); return .null
        case 45, 48...57: return try number()
        default: throw fail("unexpected character")
        }
    }

    /// Whether the next value (after any space) is a string.
    mutating func atString() -> Bool {
        skipSpace()
        return i < b.count && b[i] == 34
    }

    /// At a number without exponent of at most 15 significant digits and 22 decimals (see
    /// ``exactDouble(_:)``), followed by a byte that may end a value: its value, having read past
    /// it; otherwise nil, with the position wherever the scan stopped.
    mutating func plainNumber() -> Double? {
        skipSpace()
        let start = i
        if i < b.count, b[i] == 45 { i += 1 }
        let digits = i
        while i < b.count, b[i] >= 48, b[i] <= 57 { i += 1 }
        // A leading zero stands alone (JSON has no `01`).
        guard i > digits, b[digits] != 48 || i == digits + 1 else { return nil }
        if i < b.count, b[i] == 46 {
            i += 1
            let decimals = i
            while i < b.count, b[i] >= 48, b[i] <= 57 { i += 1 }
            guard i > decimals else { return nil }
        }
        guard i < b.count, b[i] == 44 || b[i] == 125 || b[i] == 32 || b[i] == 10 || b[i] == 13 || b[i] == 9 else { return nil }
        return Self.exactDouble(UnsafeBufferPointer(rebasing: b[start..<i]))
    }

    mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard i + n <= b.count else { throw fail("invalid literal") }
        let p = word.utf8Start
        for k in 0..<n where b[i + k] != p[k] { throw fail("invalid literal") }
        i += n
    }

    mutating func number() throws -> Value {
        let start = i
        if b[i] == 45 { i += 1 }
        guard i < b.count, b[i] >= 48, b[i] <= 57 else { throw fail("invalid number") }
        if b[i] == 48 {
            i += 1
        } else {
            while i < b.count, b[i] >= 48, b[i] <= 57 { i += 1 }
        }
        if i < b.count, b[i] == 46 {
            i += 1
            guard i < b.count, b[i] >= 48, b[i] <= 57 else { throw fail("invalid number") }
            while i < b.count, b[i] >= 48, b[i] <= 57 { i += 1 }
        }
        if i < b.count, b[i] == 101 || b[i] == 69 {
            i += 1
            if i < b.count, b[i] == 43 || b[i] == 45 { i += 1 }
            guard i < b.count, b[i] >= 48, b[i] <= 57 else { throw fail("invalid number") }
            while i < b.count, b[i] >= 48, b[i] <= 57 { i += 1 }
        }
        guard i - start <= 64 else { throw fail("number longer than 64 characters") }
        let raw = UnsafeBufferPointer(rebasing: b[start..<i])
        let text = Self.asciiString(raw)
        return .number(Self.exactDouble(raw) ?? Double(text) ?? .nan, text: text)
    }

    /// Powers of ten that are exact in a `Double`.
    private static let exactPowersOfTen: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
        1e20, 1e21, 1e22,
    ]

    /// A valid JSON number without exponent, at most 15 significant digits and 22 decimals, read
    /// without `strtod`: its digits are then an exact `Double`, and so is the power of ten, so one
    /// IEEE division rounds the quotient once, correctly, to what `strtod` gives (Clinger's fast
    /// path). Nil for anything else (the caller then parses the text).
    static func exactDouble(_ raw: UnsafeBufferPointer<UInt8>) -> Double? {
        var k = 0
        let negative = raw[0] == 45
        if negative { k = 1 }
        var digits: UInt64 = 0, significant = 0, decimals = 0, point = false
        while k < raw.count {
            let c = raw[k]
            k += 1
            if c == 46 {
                point = true
                continue
            }
            guard c >= 48, c <= 57 else { return nil }  // an exponent
            if significant > 0 || c != 48 { significant += 1 }
            digits = digits &* 10 &+ UInt64(c &- 48)
            if point { decimals += 1 }
        }
        guard significant <= 15, decimals < exactPowersOfTen.count else { return nil }
        let v = Double(digits) / exactPowersOfTen[decimals]
        return negative ? -v : v
    }

    /// Reads a key and matches it against the canonical field names without making a String.
    mutating func fieldKey() throws -> TransactionField? {
        let start = i + 1
        // Most keys are short plain names: their length and bytes come from two 8-byte loads,
        // not a byte-at-a-time scan. Anything else (an escape, a non-ASCII byte, a key of 16
        // bytes or more, the end of the message within 16 bytes) takes the scan below.
        if b.count - start >= 16, let key = Self.shortKey(at: b.baseAddress! + start) {
            i = start + key.count + 1
            return TransactionField.match(packed: key)
        }
        var j = start
        var plain = true
        while j < b.count, b[j] != 34 {
            if b[j] == 92 || b[j] >= 0x80 { plain = false }
            j += b[j] == 92 ? 2 : 1
        }
        guard plain, j < b.count else { return TransactionField(rawValue: try string()) }
        i = j + 1
        return TransactionField.match(UnsafeBufferPointer(rebasing: b[start..<j]))
    }

    /// The plain key of fewer than 16 bytes at `p` (after its opening quote), as its length and
    /// its bytes packed in two little-endian words (as `TransactionField`'s table keeps names),
    /// when the first byte among the 16 at `p` that is a quote, a backslash or above 0x7F is a
    /// quote; nil otherwise.
    @inline(__always)
    static func shortKey(at p: UnsafePointer<UInt8>) -> (count: Int, low: UInt64, high: UInt64)? {
        let raw = UnsafeRawPointer(p)
        let w0 = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self))
        let w1 = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let s0 = specialBytes(w0)
        if s0 != 0 {
            let k = s0.trailingZeroBitCount / 8
            guard (w0 >> (8 * k)) & 0xFF == 34 else { return nil }
            return (k, k == 0 ? 0 : w0 & (~0 >> (64 - 8 * k)), 0)
        }
        let s1 = specialBytes(w1)
        guard s1 != 0 else { return nil }
        let k = s1.trailingZeroBitCount / 8
        guard (w1 >> (8 * k)) & 0xFF == 34 else { return nil }
        return (8 + k, w0, k == 0 ? 0 : w1 & (~0 >> (64 - 8 * k)))
    }

    /// The high bit set in each byte of `w` that is a quote, a backslash or above 0x7F — exact for
    /// the lowest such byte (the zero-byte test can flag a byte above a true one, never below).
    @inline(__always)
    static func specialBytes(_ w: UInt64) -> UInt64 {
        bytesBelow(1, in: w ^ (byteOnes &* 34)) | bytesBelow(1, in: w ^ (byteOnes &* 92)) | (w & byteHighs)
    }

    /// The high bit set in each byte of `w` that is not plain ASCII from 0x20 (a quote, a
    /// backslash, a control byte, or above 0x7F) — exact for the lowest such byte, as each of the
    /// tests it joins is.
    @inline(__always)
    static func stopBytes(_ w: UInt64) -> UInt64 { specialBytes(w) | bytesBelow(0x20, in: w) }

    private static let byteOnes: UInt64 = 0x0101_0101_0101_0101, byteHighs: UInt64 = 0x8080_8080_8080_8080

    /// The high bit set in each byte of `w` below `n` (≤ 0x80) — exact for the lowest such byte
    /// (a borrow can flag a byte above a true one, never below, and never misses one).
    @inline(__always)
    private static func bytesBelow(_ n: UInt64, in w: UInt64) -> UInt64 {
        (w &- byteOnes &* n) & ~w & byteHighs
    }

    /// At a string value holding a valid timestamp without escapes: its time, having read past
    /// it; otherwise nil.
    mutating func timestampInPlace() -> Int64? {
        skipSpace()
        guard i < b.count, b[i] == 34 else { return nil }
        var j = i + 1
        while j < b.count, b[j] != 34, b[j] != 92 { j += 1 }
        guard j < b.count, b[j] == 34, let ms = Timestamp.parseISO8601(bytes: UnsafeBufferPointer(rebasing: b[(i + 1)..<j])) else { return nil }
        i = j + 1
        return ms
    }

    mutating func string() throws -> String {
        i += 1  // opening quote
        let start = i
        var simple = true
        var bits: UInt8 = 0
        // Plain ASCII (no quote, backslash or control character) skipped 8 bytes at a time, up to
        // the first byte that is not (its position in the word is exact: see `specialBytes`),
        // usually the closing quote; the loop below reads from there, byte by byte.
        if let base = b.baseAddress {
            while i + 8 <= b.count {
                let stop = Self.stopBytes(UInt64(littleEndian: UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)))
                if stop != 0 {
                    i += stop.trailingZeroBitCount / 8
                    break
                }
                i += 8
            }
        }
        while i < b.count {
            let c = b[i]
            if c == 34 { break }
            if c == 92 {
                simple = false
                i += 2
                continue
            }
            guard c >= 0x20 else { throw fail("control character in string") }
            bits |= c
            i += 1
        }
        guard i < b.count else { throw fail("unterminated string") }
        let raw = UnsafeBufferPointer(rebasing: b[start..<i])
        i += 1
        guard raw.count <= limits.maxBytes else { throw fail("string too long") }
        if simple {
            // ASCII (most fields) is valid UTF-8 as it stands: made without the generic
            // validation, which looks its encoding's metadata up at run time on every call.
            if bits < 0x80 { return Self.asciiString(raw) }
            guard let s = String(validating: raw, as: UTF8.self) else { throw Syntax(offset: start, message: "invalid UTF-8") }
            return s
        }
        return try unescape(raw, at: start)
    }

    /// `raw`, known to be ASCII, as a `String`. Up to 15 bytes, the string is built in place,
    /// inline (a small string), and known ASCII from its two words: half the instructions of
    /// `String(decoding:as:)`, which validates.
    @inline(__always)
    static func asciiString(_ raw: UnsafeBufferPointer<UInt8>) -> String {
        if raw.count <= 15 { return String(unsafeUninitializedCapacity: raw.count) { $0.initialize(fromContentsOf: raw) } }
        return String(decoding: raw, as: UTF8.self)
    }

    func unescape(_ raw: UnsafeBufferPointer<UInt8>, at start: Int) throws -> String {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var k = 0
        func hex4() throws -> UInt32 {
            guard k + 4 <= raw.count else { throw Syntax(offset: start + k, message: "bad \\u escape") }
            var v: UInt32 = 0
            for j in 0..<4 {
                let c = raw[k + j]
                let d: UInt8
                switch c {
                case 48...57: d = c - 48
                case 65...70: d = c - 55
                case 97...102: d = c - 87
                default: throw Syntax(offset: start + k + j, message: "bad \\u escape")
                }
                v = v << 4 | UInt32(d)
            }
            k += 4
            return v
        }
        while k < raw.count {
            let c = raw[k]
            guard c == 92 else {
                out.append(c)
                k += 1
                continue
            }
            guard k + 1 < raw.count else { throw Syntax(offset: start + k, message: "bad escape") }
            let e = raw[k + 1]
            k += 2
            switch e {
            case 34, 92, 47: out.append(e)
            case 98: out.append(8)
            case 102: out.append(12)
            case 110: out.append(10)
            case 114: out.append(13)
            case 116: out.append(9)
            case 117:
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    guard k + 1 < raw.count, raw[k] == 92, raw[k + 1] == 117 else {
                        throw Syntax(offset: start + k, message: "unpaired surrogate")
                    }
                    k += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw Syntax(offset: start + k, message: "unpaired surrogate") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw Syntax(offset: start + k, message: "unpaired surrogate")
                }
                guard let u = Unicode.Scalar(scalar) else { throw Syntax(offset: start + k, message: "bad \\u escape") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default: throw Syntax(offset: start + k - 1, message: "bad escape")
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw Syntax(offset: start, message: "invalid UTF-8") }
        return s
    }
}


/// A scalar JSON value as the decoder sees it (composites are skipped, named only for errors).
enum JSONValue {
    case string(String)
    case number(Double, text: String)
    case bool(Bool)
    case null
    case composite(String)

    static func show(_ v: JSONValue) -> String {
        let s: String
        switch v {
        case .string(let x): s = "\"\(x)\""
        case .number(_, let text): s = text
        case .bool(let f): s = f ? "true" : "false"
        case .null: s = "null"
        case .composite(let kind): s = kind
        }
        return s.count > 64 ? String(s.prefix(61)) + "..." : s
    }
}

/// Validates canonical fields one at a time, whatever the source format (JSON or a CSV row), so
/// every reader applies the same rules and reports problems the same way.
struct TransactionAssembler {
    let limits: DecoderLimits
    var tx = Transaction(id: "", timestamp: 0, amount: 0)
    var problems: [DecodeProblem] = []
    var present = FieldSet()

    init(limits: DecoderLimits) { self.limits = limits }

    mutating func problem(_ field: String?, _ value: String?, _ reason: String) {
        problems.append(DecodeProblem(field: field, value: value, reason: reason))
    }

    mutating func set(_ field: TransactionField, _ v: JSONValue, timestampScale: Int64 = 1) {
        present.insert(field)
        let key = field.rawValue
        // Only on the error path: formatting the value is most of a field's cost.
        var shown: String? { field.isSensitive ? nil : JSONValue.show(v) }
        switch field {
        case .id:
            if case .string(let s) = v { set(.id, string: s) } else { problem(key, shown, "must be a string") }
        case .timestamp:
            if let ms = timestamp(v, scale: timestampScale) { tx.timestamp = ms }
        case .amount:
            if let a = number(v, key: key, range: range(of: .amount)) { tx.amount = a }
        case .lat: tx.lat = number(v, key: key, range: range(of: .lat), optional: true)
        case .lon: tx.lon = number(v, key: key, range: range(of: .lon), optional: true)
        case .label:
            switch v {
            case .null: break
            case .bool(let f): tx.label = f ? 1 : 0
            case .number(let d, _) where d == 0 || d == 1: tx.label = Int8(d)
            default: problem(key, shown, "must be 0 or 1")
            }
        default:
            switch v {
            case .null: break
            case .string(let s): set(field, string: s)
            default: problem(key, shown, "must be a string")
            }
        }
    }

    /// Sets a string-typed field (the id included) from a string value.
    mutating func set(_ field: TransactionField, string s: String) {
        present.insert(field)
        guard s.utf8.count <= limits.maxStringLength else {
            problem(field.rawValue, nil, "longer than \(limits.maxStringLength) bytes")
            return
        }
        if field == .id {
            guard !s.isEmpty else { return problem(field.rawValue, nil, "must not be empty") }
            tx.id = s
        } else {
            tx.setString(field, s.isEmpty ? nil : s)
        }
    }

    private static let required: [TransactionField] = [.id, .timestamp, .amount]

    /// The transaction, or nil when a problem was found (then `problems` says what).
    mutating func finish() -> Transaction? {
        for required in Self.required where !present.contains(required) {
            problem(required.rawValue, nil, "required field missing")
        }
        return problems.isEmpty ? tx : nil
    }

    mutating func number(_ v: JSONValue, key: String, range: ClosedRange<Double>, optional: Bool = false) -> Double? {
        switch v {
        case .null where optional: return nil
        case .number(let d, _):
            guard d.isFinite else {
                problem(key, JSONValue.show(v), "must be finite")
                return nil
            }
            guard range.contains(d) else {
                problem(key, JSONValue.show(v), d < range.lowerBound ? "must be ≥ \(range.lowerBound)" : "must be ≤ \(range.upperBound)")
                return nil
            }
            return d
        default:
            problem(key, JSONValue.show(v), "must be a number")
            return nil
        }
    }

    /// `scale` converts a numeric timestamp to milliseconds (1000 for epoch seconds).
    mutating func timestamp(_ v: JSONValue, scale: Int64) -> Int64? {
        let key = TransactionField.timestamp.rawValue
        let ms: Int64
        switch v {
        case .string(let s):
            guard let t = Timestamp.parseISO8601(s) else {
                problem(key, JSONValue.show(v), "not an RFC 3339 timestamp")
                return nil
            }
            ms = t
        case .number(let d, _):
            guard d.isFinite, d == d.rounded(), abs(d) < 9e15 / Double(scale) else {
                problem(key, JSONValue.show(v), "epoch \(scale == 1 ? "milliseconds" : "seconds") must be an integer")
                return nil
            }
            ms = Int64(d) * scale
        default:
            problem(key, JSONValue.show(v), "must be an RFC 3339 string or epoch milliseconds")
            return nil
        }
        guard ms >= limits.minTimestamp, ms < limits.maxTimestamp else {
            problem(key, JSONValue.show(v), "outside \(Timestamp.formatISO8601(limits.minTimestamp)) … \(Timestamp.formatISO8601(limits.maxTimestamp))")
            return nil
        }
        return ms
    }

    /// Takes a timestamp read in place if it is within the limits (else the caller reports it).
    mutating func accept(timestamp ms: Int64) -> Bool {
        guard ms >= limits.minTimestamp, ms < limits.maxTimestamp else { return false }
        present.insert(.timestamp)
        tx.timestamp = ms
        return true
    }

    /// The values a numeric field may take (a label: 0 or 1).
    func range(of field: TransactionField) -> ClosedRange<Double> {
        switch field {
        case .amount: 0...limits.maxAmount
        case .lat: -90...90
        case .lon: -180...180
        default: 0...1
        }
    }

    /// Takes a number read in place for `amount`, `lat`, `lon` or `label` if ``set(_:_:timestampScale:)``
    /// would take it without a problem (else the caller reports it through that path).
    mutating func accept(_ field: TransactionField, number v: Double) -> Bool {
        guard range(of: field).contains(v), field != .label || v == 0 || v == 1 else { return false }
        switch field {
        case .amount: tx.amount = v
        case .lat: tx.lat = v
        case .lon: tx.lon = v
        case .label: tx.label = Int8(v)
        default: return false
        }
        present.insert(field)
        return true
    }
}

/// A set of canonical fields as a bit mask (the decoder's hot path).
struct FieldSet {
    private var bits: UInt32 = 0
    func contains(_ f: TransactionField) -> Bool { bits & (1 << UInt32(f.ordinal)) != 0 }
    mutating func insert(_ f: TransactionField) { bits |= 1 << UInt32(f.ordinal) }
}

extension TransactionField {
    /// A name's length and bytes as two little-endian words; nil past 16 bytes (no name is).
    private static func packed(_ key: UnsafeBufferPointer<UInt8>) -> (count: Int, low: UInt64, high: UInt64)? {
        guard key.count <= 16 else { return nil }
        var low: UInt64 = 0, high: UInt64 = 0
        if key.count >= 8 {
            low = UInt64(littleEndian: UnsafeRawPointer(key.baseAddress!).loadUnaligned(as: UInt64.self))
            for k in 8..<key.count { high |= UInt64(key[k]) << (8 * (k - 8)) }
        } else {
            for k in 0..<key.count { low |= UInt64(key[k]) << (8 * k) }
        }
        return (key.count, low, high)
    }

    private static func slot(_ p: (count: Int, low: UInt64, high: UInt64)) -> Int {
        Int(truncatingIfNeeded: ((p.low ^ p.high &* 31 ^ UInt64(p.count)) &* 0x9E37_79B9_7F4A_7C15) >> 58)
    }

    /// The names in an open-addressing table of 64 slots (nil: empty).
    private static let table: [(count: Int, low: UInt64, high: UInt64, field: TransactionField?)] = {
        var t = Array(repeating: (count: 0, low: UInt64(0), high: UInt64(0), field: TransactionField?.none), count: 64)
        for f in allCases {
            let p = Array(f.rawValue.utf8).withUnsafeBufferPointer { packed($0)! }
            var i = slot(p)
            while t[i].field != nil { i = (i + 1) & 63 }
            t[i] = (p.count, p.low, p.high, f)
        }
        return t
    }()

    /// The field whose JSON name is exactly these bytes: one hashed probe, where comparing with
    /// each name cost a `memcmp` per name of the same length.
    static func match(_ key: UnsafeBufferPointer<UInt8>) -> TransactionField? {
        guard let p = packed(key) else { return nil }
        return match(packed: p)
    }

    /// The field whose name packs to `p` (length, and bytes as two little-endian words).
    static func match(packed p: (count: Int, low: UInt64, high: UInt64)) -> TransactionField? {
        table.withUnsafeBufferPointer { t in
            var i = slot(p)
            while let field = t[i].field {
                if t[i].count == p.count, t[i].low == p.low, t[i].high == p.high { return field }
                i = (i + 1) & 63
            }
            return nil
        }
    }
}

extension Transaction {
    /// Sets a string-typed canonical field.
    public mutating func setString(_ field: TransactionField, _ value: String?) {
        switch field {
        case .id: id = value ?? ""
        case .currency: currency = value
        case .cardID: cardID = value
        case .customerID: customerID = value
        case .merchantID: merchantID = value
        case .terminalID: terminalID = value
        case .deviceID: deviceID = value
        case .ip: ip = value
        case .email: email = value
        case .country: country = value
        case .mcc: mcc = value
        case .channel: channel = value
        case .timestamp, .amount, .lat, .lon, .label: break
        }
    }
}
