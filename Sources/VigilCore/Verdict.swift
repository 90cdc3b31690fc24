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

    /// One line of JSON, the form published to the verdicts topic and written by `vigil score`.
    public func json() -> String {
        var w = JSONWriter()
        w.object { w in
            w.field("id", transactionID)
            w.field("action", action.rawValue)
            w.field("probability", probability)
            w.field("timestamp", Timestamp.formatISO8601(timestamp))
            w.key("members")
            w.object { w in for m in memberScores { w.field(m.name, m.probability) } }
            w.key("reasons")
            w.array { w in
                for r in reasons {
                    w.object { w in
                        w.field("kind", r.kind.rawValue)
                        w.field("code", r.code)
                        if let d = r.detail { w.field("detail", d) }
                        if let v = r.value { w.field("value", v) }
                    }
                }
            }
            if !tags.isEmpty {
                w.key("tags")
                w.array { w in for t in tags { w.element(t) } }
            }
            w.field("model", modelVersion)
            w.field("rules", rulesVersion)
            w.field("degraded", degraded)
            w.key("latency_us")
            w.object { w in
                w.field("features", latency.features)
                w.field("rules", latency.rules)
                w.field("model", latency.model)
                w.field("decide", latency.decide)
            }
        }
        return w.text
    }
}

/// A minimal streaming JSON writer for Vigil's own output (verdicts, features, reports).
public struct JSONWriter {
    public private(set) var text = ""
    private var needComma = [false]

    public init() { text.reserveCapacity(512) }

    mutating func separate() {
        if needComma[needComma.count - 1] { text += "," }
        needComma[needComma.count - 1] = true
    }

    public mutating func object(_ body: (inout JSONWriter) -> Void) {
        separate()
        text += "{"
        needComma.append(false)
        body(&self)
        needComma.removeLast()
        text += "}"
    }

    public mutating func array(_ body: (inout JSONWriter) -> Void) {
        separate()
        text += "["
        needComma.append(false)
        body(&self)
        needComma.removeLast()
        text += "]"
    }

    /// Writes a key; the next value written (object, array or element) is its value.
    public mutating func key(_ k: String) {
        separate()
        JSONWriter.appendString(k, to: &text)
        text += ":"
        needComma[needComma.count - 1] = false
    }

    public mutating func field(_ k: String, _ v: String) { key(k); element(v) }
    public mutating func field(_ k: String, _ v: Double) { key(k); element(v) }
    public mutating func field(_ k: String, _ v: Int) { key(k); separate(); text += String(v) }
    public mutating func field(_ k: String, _ v: Bool) { key(k); separate(); text += v ? "true" : "false" }

    public mutating func element(_ v: String) {
        separate()
        JSONWriter.appendString(v, to: &text)
    }

    /// Non-finite numbers are written as `null` (JSON has no NaN).
    public mutating func element(_ v: Double) {
        separate()
        text += v.isFinite ? "\(v)" : "null"
    }

    public static func appendString(_ s: String, to out: inout String) {
        out += "\""
        var plain = true
        for u in s.utf8 where u < 0x20 || u == 34 || u == 92 {
            plain = false
            break
        }
        if plain {
            out += s
        } else {
            for ch in s.unicodeScalars {
                switch ch {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default:
                    if ch.value < 0x20 {
                        let h = String(ch.value, radix: 16)
                        out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                    } else {
                        out.unicodeScalars.append(ch)
                    }
                }
            }
        }
        out += "\""
    }
}
