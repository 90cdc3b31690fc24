import VigilCore
import VigilExpression
import Yams

/// A declarative feature specification, read from YAML (see `docs/features.md`).
///
/// The spec fixes the feature names and their order, which is the model's column order; its
/// ``FeatureSchema/hash`` is recorded in every model bundle trained on it.
public struct FeatureSpec: Sendable, Hashable {
    public struct Entity: Sendable, Hashable {
        public var name: String
        public var field: TransactionField
    }

    public enum Op: Sendable, Hashable {
        case count, sum, mean, std, max
        case distinct(TransactionField)

        var label: String {
            switch self {
            case .count: "count"
            case .sum: "sum"
            case .mean: "mean"
            case .std: "std"
            case .max: "max"
            case .distinct(let f): "distinct_\(f.rawValue)"
            }
        }
    }

    public struct Aggregate: Sendable, Hashable {
        public var entity: String
        public var name: String?
        public var filter: String?
        public var windows: [Int64]
        public var ops: [Op]
        var line: Int?
    }

    public enum ProfileFeature: String, Sendable, Hashable, CaseIterable {
        case amountZScore = "amount_zscore"
        case amountRatio = "amount_ratio"
        case secondsSinceLast = "secs_since_last"
        case distanceKm = "distance_km"
        case speedKmh = "speed_kmh"
        case crossBorder = "cross_border"
    }

    public struct Profile: Sendable, Hashable {
        public var entity: String
        public var history: Int64
        public var features: [ProfileFeature]
        public var firstSeen: [TransactionField]
    }

    /// Fraud risk of an entity from the labels of its past events.
    ///
    /// With `delay` 0, each window's rate is the frauds known so far over every event of
    /// [t − W, t), recent unlabelled events included. With a delay d (the time labels take to
    /// arrive), each window ends where labels are known: the rate and the fraud count are over
    /// [t − W − d, t − d), so recent events whose labels cannot have arrived do not dilute them,
    /// and a label that arrives early changes nothing until its event is d old.
    public struct Risk: Sendable, Hashable {
        public var entity: String
        public var windows: [Int64]
        public var delay: Int64 = 0
    }

    public enum CalendarFeature: String, Sendable, Hashable, CaseIterable {
        case hour, weekday, night, weekend
        var featureName: String {
            switch self {
            case .hour: "hour"
            case .weekday: "weekday"
            case .night: "is_night"
            case .weekend: "is_weekend"
            }
        }
    }

    public struct Derived: Sendable, Hashable {
        public var name: String
        public var expression: String
        var line: Int?
    }

    public var entities: [Entity]
    /// Numeric transaction fields copied as features (`amount`, `lat`, `lon`).
    public var fields: [TransactionField]
    public var calendar: [CalendarFeature]
    public var aggregates: [Aggregate]
    public var profiles: [Profile]
    public var risk: [Risk]
    public var derived: [Derived]

    public static let minWindow: Int64 = 60_000
    public static let maxWindow: Int64 = 30 * 86_400_000
}

extension FeatureSpec {
    public static func load(path: String) throws(ConfigurationError) -> FeatureSpec {
        try parse(TextFile.read(path), file: path)
    }

    /// Parses and validates a spec; every error names the file and line.
    public static func parse(_ text: String, file: String? = nil) throws(ConfigurationError) -> FeatureSpec {
        let root = try YAMLSupport.compose(text, file: file)
        var r = SpecReader(file: file)
        return try r.spec(root)
    }
}

/// Reads YAML nodes with errors that point at the line.
struct SpecReader {
    let file: String?

    func fail(_ node: Node?, _ message: String) -> ConfigurationError {
        ConfigurationError(file: file, line: node?.mark?.line, message: message)
    }

    func mapping(_ node: Node, _ what: String) throws(ConfigurationError) -> Node.Mapping {
        guard let m = node.mapping else { throw fail(node, "\(what) must be a mapping") }
        return m
    }

    func sequence(_ node: Node?, _ what: String) throws(ConfigurationError) -> [Node] {
        guard let node else { return [] }
        guard let s = node.sequence else { throw fail(node, "\(what) must be a list") }
        return Array(s)
    }

    func string(_ node: Node?, _ what: String) throws(ConfigurationError) -> String {
        guard let node, let s = node.string, !s.isEmpty else { throw fail(node, "\(what) must be a non-empty string") }
        return s
    }

    func window(_ node: Node) throws(ConfigurationError) -> Int64 {
        guard let text = node.string, let ms = DurationText.milliseconds(text) else {
            throw fail(node, "'\(node.string ?? "?")' is not a duration (e.g. 5m, 1h, 7d)")
        }
        guard ms >= FeatureSpec.minWindow, ms <= FeatureSpec.maxWindow else {
            throw fail(node, "window \(text) is outside 1m … 30d")
        }
        return ms
    }

    func checkKeys(_ m: Node.Mapping, _ allowed: Set<String>, _ what: String) throws(ConfigurationError) {
        for (k, _) in m {
            guard let key = k.string, allowed.contains(key) else {
                throw fail(k, "unknown key '\(k.string ?? "?")' in \(what) (allowed: \(allowed.sorted().joined(separator: ", ")))")
            }
        }
    }

    func field(_ node: Node, kind: TransactionField.Kind? = nil) throws(ConfigurationError) -> TransactionField {
        let name = try string(node, "a field")
        guard let f = TransactionField(rawValue: name) else { throw fail(node, "unknown transaction field '\(name)'") }
        if let kind, f.kind != kind { throw fail(node, "field '\(name)' is not a \(kind) field") }
        return f
    }

    mutating func spec(_ root: Node) throws(ConfigurationError) -> FeatureSpec {
        let m = try mapping(root, "a feature spec")
        try checkKeys(m, ["version", "entities", "fields", "calendar", "aggregates", "profiles", "risk", "derived"], "the feature spec")
        var spec = FeatureSpec(entities: [], fields: [], calendar: [], aggregates: [], profiles: [], risk: [], derived: [])
        if let ents = m["entities"] {
            for (k, v) in try mapping(ents, "entities") {
                let name = try string(k, "an entity name")
                let f = try field(v, kind: .string)
                guard !spec.entities.contains(where: { $0.name == name }) else { throw fail(k, "entity '\(name)' defined twice") }
                spec.entities.append(.init(name: name, field: f))
            }
        }
        let entityNames = Set(spec.entities.map(\.name))
        func entity(_ node: Node?) throws(ConfigurationError) -> String {
            let e = try string(node, "entity")
            guard entityNames.contains(e) else {
                throw fail(node, "unknown entity '\(e)' (defined: \(entityNames.sorted().joined(separator: ", ")))")
            }
            return e
        }
        for n in try sequence(m["fields"], "fields") {
            let f = try field(n)
            guard f.kind == .number else { throw fail(n, "fields lists numeric fields (amount, lat, lon); use derived for others") }
            spec.fields.append(f)
        }
        for n in try sequence(m["calendar"], "calendar") {
            guard let c = FeatureSpec.CalendarFeature(rawValue: n.string ?? "") else {
                throw fail(n, "calendar features are hour, weekday, night, weekend")
            }
            spec.calendar.append(c)
        }
        for n in try sequence(m["aggregates"], "aggregates") {
            let a = try mapping(n, "an aggregate")
            try checkKeys(a, ["entity", "name", "filter", "windows", "ops"], "an aggregate")
            var agg = FeatureSpec.Aggregate(entity: try entity(a["entity"]), windows: [], ops: [], line: n.mark?.line)
            agg.name = try a["name"].map { (x) throws(ConfigurationError) in try string(x, "name") }
            agg.filter = try a["filter"].map { (x) throws(ConfigurationError) in try string(x, "filter") }
            if let f = a["filter"] { agg.line = f.mark?.line }
            for w in try sequence(a["windows"], "windows") { agg.windows.append(try window(w)) }
            guard !agg.windows.isEmpty else { throw fail(n, "an aggregate needs windows") }
            for o in try sequence(a["ops"], "ops") {
                let text = try string(o, "an op")
                switch text {
                case "count": agg.ops.append(.count)
                case "sum": agg.ops.append(.sum)
                case "mean": agg.ops.append(.mean)
                case "std": agg.ops.append(.std)
                case "max": agg.ops.append(.max)
                default:
                    guard text.hasPrefix("distinct("), text.hasSuffix(")"),
                        let f = TransactionField(rawValue: String(text.dropFirst(9).dropLast())), f.kind == .string
                    else {
                        throw fail(o, "unknown op '\(text)' (count, sum, mean, std, max, distinct(FIELD))")
                    }
                    agg.ops.append(.distinct(f))
                }
            }
            guard !agg.ops.isEmpty else { throw fail(n, "an aggregate needs ops") }
            spec.aggregates.append(agg)
        }
        for n in try sequence(m["profiles"], "profiles") {
            let p = try mapping(n, "a profile")
            try checkKeys(p, ["entity", "history", "features", "first_seen"], "a profile")
            var prof = FeatureSpec.Profile(entity: try entity(p["entity"]), history: 30 * 86_400_000, features: [], firstSeen: [])
            if let h = p["history"] { prof.history = try window(h) }
            for f in try sequence(p["features"], "features") {
                guard let pf = FeatureSpec.ProfileFeature(rawValue: f.string ?? "") else {
                    throw fail(f, "unknown profile feature '\(f.string ?? "?")' (\(FeatureSpec.ProfileFeature.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                prof.features.append(pf)
            }
            for f in try sequence(p["first_seen"], "first_seen") { prof.firstSeen.append(try field(f, kind: .string)) }
            spec.profiles.append(prof)
        }
        for n in try sequence(m["risk"], "risk") {
            let r = try mapping(n, "a risk entry")
            try checkKeys(r, ["entity", "windows", "delay"], "a risk entry")
            var risk = FeatureSpec.Risk(entity: try entity(r["entity"]), windows: [])
            for w in try sequence(r["windows"], "windows") { risk.windows.append(try window(w)) }
            if let d = r["delay"] {
                guard let text = d.string, let ms = DurationText.milliseconds(text), ms >= 0, ms <= FeatureSpec.maxWindow else {
                    throw fail(d, "delay '\(d.string ?? "?")' is not a duration of 0 … 30d (e.g. 7d)")
                }
                risk.delay = ms
            }
            spec.risk.append(risk)
        }
        for n in try sequence(m["derived"], "derived") {
            let d = try mapping(n, "a derived feature")
            try checkKeys(d, ["name", "expr"], "a derived feature")
            spec.derived.append(.init(name: try string(d["name"], "name"), expression: try string(d["expr"], "expr"), line: d["expr"]?.mark?.line))
        }
        // Compiling checks names, windows per entity, filters and derived expressions.
        do {
            _ = try FeaturePlan(spec: spec)
        } catch {
            throw error.file == nil ? error.inFile(file ?? "") : error
        }
        return spec
    }
}
