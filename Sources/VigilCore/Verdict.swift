/// What the engine answers for a transaction, in increasing severity.
public enum Action: String, Sendable, CaseIterable, Comparable, Codable {
    case approve
    /// Step-up authentication (3-D Secure, OTP).
    case challenge
    /// Put in the analysts' case queue.
    case review
    case block

    public var severity: Int {
        switch self {
        case .approve: 0
        case .challenge: 1
        case .review: 2
        case .block: 3
        }
    }

    public static func < (a: Action, b: Action) -> Bool { a.severity < b.severity }
}

/// Why a verdict came out as it did.
public struct ReasonCode: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        /// A rule matched; `code` is the rule id.
        case rule
        /// A feature pushed the score up; `code` is the feature name, `value` its contribution (log-odds).
        case feature
        /// Scoring ran degraded; `code` says what was unavailable.
        case degraded
    }

    public var kind: Kind
    public var code: String
    public var detail: String?
    public var value: Double?

    public init(kind: Kind, code: String, detail: String? = nil, value: Double? = nil) {
        self.kind = kind
        self.code = code
        self.detail = detail
        self.value = value
    }
}

/// Time spent per pipeline stage for one batch, in microseconds, attributed to each of its verdicts.
public struct StageLatency: Sendable, Hashable {
    public var features: Double = 0
    public var rules: Double = 0
    public var model: Double = 0
    public var decide: Double = 0
    public var total: Double { features + rules + model + decide }
    public init(features: Double = 0, rules: Double = 0, model: Double = 0, decide: Double = 0) {
        self.features = features
        self.rules = rules
        self.model = model
        self.decide = decide
    }
}

/// The engine's answer for one transaction.
///
/// Deterministic apart from ``latency``: the same transaction against the same store state, model,
/// rules and costs gives an equal verdict (``sameDecision(as:)``), which is what makes redelivery
/// and replay safe.
public struct Verdict: Sendable, Hashable {
    public var transactionID: String
    public var action: Action
    /// Calibrated probability of fraud.
    public var probability: Double
    /// Each ensemble member's own probability, in manifest order.
    public var memberScores: [MemberScore]
    public var reasons: [ReasonCode]
    public var tags: [String]
    public var modelVersion: String
    public var rulesVersion: String
    public var degraded: Bool
    public var latency: StageLatency
    /// Event time of the transaction (ms), echoed for downstream joins.
    public var timestamp: Int64

    public struct MemberScore: Sendable, Hashable {
        public var name: String
        public var probability: Double
        public init(name: String, probability: Double) {
            self.name = name
            self.probability = probability
        }
    }

    public init(
        transactionID: String, action: Action, probability: Double, memberScores: [MemberScore] = [],
        reasons: [ReasonCode] = [], tags: [String] = [], modelVersion: String, rulesVersion: String,
        degraded: Bool = false, latency: StageLatency = StageLatency(), timestamp: Int64 = 0
    ) {
        self.transactionID = transactionID
        self.action = action
        self.probability = probability
        self.memberScores = memberScores
        self.reasons = reasons
        self.tags = tags
        self.modelVersion = modelVersion
        self.rulesVersion = rulesVersion
        self.degraded = degraded
        self.latency = latency
        self.timestamp = timestamp
    }

    /// Equal in everything but latency.
    public func sameDecision(as other: Verdict) -> Bool {
        var a = self
        var b = other
        a.latency = StageLatency()
        b.latency = StageLatency()
        return a == b
    }

    /// Appends ``json()``'s bytes to `buffer`, with no intermediate strings: the daemon encodes
    /// each batch's verdicts into one reused buffer.
    public func encodeJSON(into buffer: inout [UInt8]) {
        JSONWriter.append(to: &buffer) { w in
        w.object { w in
            w.field(literal: "id", transactionID)
            w.field(literal: "action", action.rawValue)
            w.field(literal: "probability", probability)
            w.key(literal: "timestamp")
            w.timestamp(timestamp)
            w.key(literal: "members")
            w.object { w in for m in memberScores { w.field(m.name, m.probability) } }
            w.key(literal: "reasons")
            w.array { w in
                for r in reasons {
                    w.object { w in
                        w.field(literal: "kind", r.kind.rawValue)
                        w.field(literal: "code", r.code)
                        if let d = r.detail { w.field(literal: "detail", d) }
                        if let v = r.value { w.field(literal: "value", v) }
                    }
                }
            }
            if !tags.isEmpty {
                w.key(literal: "tags")
                w.array { w in for t in tags { w.element(t) } }
            }
            w.field(literal: "model", modelVersion)
            w.field(literal: "rules", rulesVersion)
            w.field(literal: "degraded", degraded)
            w.key(literal: "latency_us")
            w.object { w in
                w.field(literal: "features", latency.features)
                w.field(literal: "rules", latency.rules)
                w.field(literal: "model", latency.model)
                w.field(literal: "decide", latency.decide)
            }
        }
        }
    }
}

/// A minimal streaming JSON writer for Vigil's own output (verdicts, features, reports), writing
/// UTF-8 bytes straight into a buffer.
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []
    /// One bit per open object or array: whether it has a member yet (so the next needs a comma).
    private var commas: UInt64 = 0
    private var depth = 0

    public init() { bytes.reserveCapacity(512) }

    /// Writes after the bytes already in `buffer`, reusing its storage.
    public static func append(to buffer: inout [UInt8], _ body: (inout JSONWriter) -> Void) {
        var w = JSONWriter(taking: &buffer)
        body(&w)
        buffer = w.bytes
    }

    private init(taking buffer: inout [UInt8]) {
        bytes = buffer
        buffer = []  // leaves `bytes` the storage's only owner: appending never copies it
    }

    public var text: String { String(decoding: bytes, as: UTF8.self) }

    mutating func separate() {
        let bit: UInt64 = 1 << UInt64(depth & 63)
        if commas & bit != 0 { bytes.append(UInt8(ascii: ",")) }
        commas |= bit
    }

    private mutating func open(_ bracket: UInt8) {
        separate()
        bytes.append(bracket)
        depth += 1
        precondition(depth < 64, "JSON nested deeper than 63 levels")
        commas &= ~(1 << UInt64(depth))
    }

    public mutating func object(_ body: (inout JSONWriter) -> Void) {
        open(UInt8(ascii: "{"))
        body(&self)
        depth -= 1
        bytes.append(UInt8(ascii: "}"))
    }

    public mutating func array(_ body: (inout JSONWriter) -> Void) {
        open(UInt8(ascii: "["))
        body(&self)
        depth -= 1
        bytes.append(UInt8(ascii: "]"))
    }

    /// Writes a key; the next value written (object, array or element) is its value.
    public mutating func key(_ k: String) {
        separate()
        JSONWriter.appendString(k, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        commas &= ~(1 << UInt64(depth))
    }

    /// A key known when compiling (plain ASCII, nothing to escape): copied as it is, where a
    /// `String` key is scanned for characters to escape. The verdict's keys are all literals.
    public mutating func key(literal k: StaticString) {
        assert(k.withUTF8Buffer { !$0.contains { $0 < 0x20 || $0 == 34 || $0 == 92 || $0 > 0x7e } }, "key(literal:) takes plain ASCII")
        separate()
        bytes.append(UInt8(ascii: "\""))
        k.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
        commas &= ~(1 << UInt64(depth))
    }

    public mutating func field(literal k: StaticString, _ v: String) { key(literal: k); element(v) }
    public mutating func field(literal k: StaticString, _ v: Double) { key(literal: k); element(v) }
    public mutating func field(literal k: StaticString, _ v: Bool) { key(literal: k); element(v) }

    public mutating func field(_ k: String, _ v: String) { key(k); element(v) }
    public mutating func field(_ k: String, _ v: Double) { key(k); element(v) }
    public mutating func field(_ k: String, _ v: Int) { key(k); separate(); Timestamp.appendPadded(v, 0, to: &bytes) }
    public mutating func field(_ k: String, _ v: Bool) { key(k); element(v) }

    public mutating func element(_ v: Bool) {
        separate()
        bytes.append(contentsOf: v ? "true".utf8 : "false".utf8)
    }

    public mutating func element(_ v: String) {
        separate()
        JSONWriter.appendString(v, to: &bytes)
    }

    /// Non-finite numbers are written as `null` (JSON has no NaN). Finite ones as Swift prints
    /// them (shortest form that reads back to the same double), with no intermediate string.
    public mutating func element(_ v: Double) {
        separate()
        if v.isFinite {
            var sink = ByteSink(bytes: bytes)
            bytes = []
            v.write(to: &sink)
            bytes = sink.bytes
        } else {
            bytes.append(contentsOf: "null".utf8)
        }
    }

    /// An instant in milliseconds as an ISO 8601 string (`Timestamp.formatISO8601`).
    public mutating func timestamp(_ ms: Int64) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        Timestamp.appendISO8601(ms, to: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    public static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var plain = true
        for u in s.utf8 where u < 0x20 || u == 34 || u == 92 {
            plain = false
            break
        }
        if plain {
            out.append(contentsOf: s.utf8)
        } else {
            for u in s.utf8 {
                switch u {
                case 34: out.append(contentsOf: [92, 34])  // \"
                case 92: out.append(contentsOf: [92, 92])  // \\
                case 10: out.append(contentsOf: [92, UInt8(ascii: "n")])
                case 13: out.append(contentsOf: [92, UInt8(ascii: "r")])
                case 9: out.append(contentsOf: [92, UInt8(ascii: "t")])
                case 0..<0x20: out.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hexDigits[Int(u >> 4)], hexDigits[Int(u & 15)]])
                default: out.append(u)
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// Receives a number's text from the standard library without building a `String`: floating-point
/// `write(to:)` hands its digits to `_writeASCII` from a stack buffer.
struct ByteSink: TextOutputStream {
    var bytes: [UInt8]
    mutating func write(_ string: String) { bytes.append(contentsOf: string.utf8) }
    mutating func _writeASCII(_ buffer: UnsafeBufferPointer<UInt8>) { bytes.append(contentsOf: buffer) }
}

/// A value published as one line of JSON: written as bytes into a caller's buffer (a batch's
/// lines share one), or as a `String` through ``json()``.
public protocol JSONLine {
    func encodeJSON(into buffer: inout [UInt8])
}

extension JSONLine {
    /// One line of JSON (verdicts: the form published to the verdicts topic and written by `vigil score`).
    public func json() -> String {
        var bytes: [UInt8] = []
        encodeJSON(into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Verdict: JSONLine {}
