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

    /// The action of a severity (`0...3`).
    public init(severity: Int) {
        switch severity {
        case 0: self = .approve
        case 1: self = .challenge
        case 2: self = .review
        case 3: self = .block
        default: preconditionFailure("no action has severity \(severity)")
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

/// Each ensemble member's own probability for one verdict, in manifest order. The names are an
/// array every verdict of a batch shares (a retain each) and up to four probabilities are held
/// in the verdict itself: a verdict allocates nothing for them, where an array of member scores
/// was an allocation per verdict, and a release and a free when it went.
public struct MemberScores: Sendable, Hashable, RandomAccessCollection, ExpressibleByArrayLiteral {
    public let names: [String]
    private var inline = SIMD4<Double>()
    /// The probabilities past the fourth.
    private var more: [Double] = []

    /// `probability(m)` for each member `m` of `names`.
    public init(names: [String], probability: (Int) -> Double) {
        self.names = names
        for m in 0..<Swift.min(names.count, 4) { inline[m] = probability(m) }
        if names.count > 4 { more = (4..<names.count).map(probability) }
    }

    public init(_ scores: [Verdict.MemberScore]) {
        self.init(names: scores.map(\.name)) { scores[$0].probability }
    }

    public init(arrayLiteral scores: Verdict.MemberScore...) { self.init(scores) }

    public var startIndex: Int { 0 }
    public var endIndex: Int { names.count }
    public subscript(m: Int) -> Verdict.MemberScore { .init(name: names[m], probability: probability(m)) }

    /// Member `m`'s probability, without making its ``Verdict/MemberScore``.
    public func probability(_ m: Int) -> Double { m < 4 ? inline[m] : more[m - 4] }

    /// Equal as sequences of member scores (so a NaN probability equals nothing, as a `Double`).
    public static func == (a: MemberScores, b: MemberScores) -> Bool { a.elementsEqual(b) }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(count)
        for m in indices {
            hasher.combine(names[m])
            hasher.combine(probability(m))
        }
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
    public var memberScores: MemberScores
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
        transactionID: String, action: Action, probability: Double, memberScores: MemberScores = [],
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

    /// Appends ``json()``'s bytes to `buffer`, with no intermediate strings.
    public func encodeJSON(into buffer: inout [UInt8]) {
        var encoder = VerdictEncoder()
        encoder.append(self, to: &buffer)
    }

    /// Appends ``json()``'s bytes to `buffer` through `encoder`: the daemon and `vigil score`
    /// encode a batch's verdicts with one encoder (see ``VerdictEncoder``).
    public func encodeJSON(into buffer: inout [UInt8], using encoder: inout VerdictEncoder) {
        encoder.append(self, to: &buffer)
    }

    /// The members up to the tags, written into `writer` (reset here), the object left open.
    /// No closures: each would copy the verdict into its context.
    fileprivate func encodeHead(_ writer: inout JSONWriter) {
        writer.reset()
        writer.beginObject()
        writer.field(literal: "id", transactionID)
        writer.field(literal: "action", action.rawValue)
        writer.field(literal: "probability", probability)
        writer.key(literal: "timestamp")
        writer.timestamp(timestamp)
        writer.key(literal: "members")
        writer.beginObject()
        for i in memberScores.indices { writer.field(memberScores.names[i], memberScores.probability(i)) }
        writer.endObject()
        writer.key(literal: "reasons")
        writer.beginArray()
        for i in reasons.indices {
            writer.beginObject()
            writer.field(literal: "kind", reasons[i].kind.rawValue)
            writer.field(literal: "code", reasons[i].code)
            if let d = reasons[i].detail { writer.field(literal: "detail", d) }
            if let v = reasons[i].value { writer.field(literal: "value", v) }
            writer.endObject()
        }
        writer.endArray()
        if !tags.isEmpty {
            writer.key(literal: "tags")
            writer.beginArray()
            for i in tags.indices { writer.element(tags[i]) }
            writer.endArray()
        }
    }

    /// The rest, from the versions to the end, as a whole object of its own (`{"model":…}}`).
    fileprivate func encodeTail(_ writer: inout JSONWriter) {
        writer.reset()
        writer.beginObject()
        writer.field(literal: "model", modelVersion)
        writer.field(literal: "rules", rulesVersion)
        writer.field(literal: "degraded", degraded)
        writer.key(literal: "latency_us")
        writer.beginObject()
        writer.field(literal: "features", latency.features)
        writer.field(literal: "rules", latency.rules)
        writer.field(literal: "model", latency.model)
        writer.field(literal: "decide", latency.decide)
        writer.endObject()
        writer.endObject()
    }
}

/// Encodes verdicts into caller's buffers, one after another, with memory of its own that it
/// keeps: a verdict allocates nothing. A batch's verdicts share their versions, `degraded` and
/// stage latencies (the batch's), so the JSON from `"model"` to the end is written once while
/// they do and copied into each verdict's line: ~30% of a verdict's encoding.
public struct VerdictEncoder {
    private var writer = JSONWriter()
    /// `,"model":…}}`: the shared end of the last verdict encoded, and what it was written from.
    private var tail: [UInt8] = []
    private var tailOf: (model: String, rules: String, degraded: Bool, latency: StageLatency)?

    public init() {}

    /// Appends the verdict's JSON line (without a newline) to `buffer`.
    public mutating func append(_ v: Verdict, to buffer: inout [UInt8]) {
        if !sharesTail(v) {
            v.encodeTail(&writer)
            tail.removeAll(keepingCapacity: true)
            writer.append(to: &tail)
            tail[0] = UInt8(ascii: ",")  // the opening brace: these members follow the head's
            tailOf = (v.modelVersion, v.rulesVersion, v.degraded, v.latency)
        }
        v.encodeHead(&writer)
        writer.append(to: &buffer)
        buffer.append(contentsOf: tail)
    }

    private func sharesTail(_ v: Verdict) -> Bool {
        guard let t = tailOf else { return false }
        return t.latency == v.latency && t.degraded == v.degraded && t.model == v.modelVersion && t.rules == v.rulesVersion
    }
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
