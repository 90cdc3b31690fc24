import VigilCore
import VigilExpression
import Yams

/// The cost of each action when the transaction is fraud and when it is legitimate, as
/// expressions of the transaction (usually of `amount`).
///
/// ```yaml
/// approve:   { fraud: "amount + 15",              legit: "0" }
/// challenge: { fraud: "0.3 * (amount + 15) + 0.5", legit: "0.5 + 0.01 * amount" }
/// review:    { fraud: "0.1 * (amount + 15) + 4",   legit: "4" }
/// block:     { fraud: "2",                          legit: "0.03 * amount + 10" }
/// fallback: review      # when no probability is available (every member failed)
/// ```
public struct CostMatrix: Sendable {
    public struct Entry: Sendable {
        public let fraud: String
        public let legit: String
        let fraudCost: @Sendable (TransactionReference) -> Double
        let legitCost: @Sendable (TransactionReference) -> Double
    }

    /// Indexed by `Action.severity`.
    public let entries: [Entry]
    /// Every action's cost on a transaction, when it is fraud and when it is legitimate (lanes
    /// by severity): the entries' expressions in one call, so pricing a transaction copies no
    /// entry (a retain and release of each of its strings and closures).
    let costs: @Sendable (TransactionReference) -> (fraud: SIMD4<Double>, legit: SIMD4<Double>)
    public let fallback: Action
    public let version: String
    /// When set, actions come from score thresholds instead of the least expected cost (a policy
    /// `vigil tune` may choose); the costs still price backtests.
    public let thresholds: Thresholds?

    /// Score thresholds, checked in order: the first rule whose minimum the probability reaches
    /// gives the action; none reached → approve.
    public struct Thresholds: Sendable, Hashable {
        public var rules: [(action: Action, min: Double)]
        public init(_ rules: [(action: Action, min: Double)]) { self.rules = rules }

        public func action(for p: Double) -> Action {
            for r in rules where p >= r.min { return r.action }
            return .approve
        }

        public static func == (a: Thresholds, b: Thresholds) -> Bool {
            a.rules.map(\.action) == b.rules.map(\.action) && a.rules.map(\.min) == b.rules.map(\.min)
        }
        public func hash(into h: inout Hasher) {
            for r in rules {
                h.combine(r.action)
                h.combine(r.min)
            }
        }

        public var description: String { rules.map { "\($0.action.rawValue)≥\($0.min)" }.joined(separator: " ") }
    }

    public static let defaultYAML = """
        version: default-1
        approve:   { fraud: "amount + 15", legit: "0" }
        challenge: { fraud: "0.2 * (amount + 15) + 1", legit: "1 + 0.05 * amount" }
        review:    { fraud: "0.05 * (amount + 15) + 6", legit: "6" }
        block:     { fraud: "1", legit: "0.1 * amount + 15" }
        fallback: review
        """

    public static var `default`: CostMatrix { try! parse(defaultYAML, file: "<default costs>") }

    public static func load(path: String) throws(ConfigurationError) -> CostMatrix {
        try parse(TextFile.read(path), file: path)
    }

    public static func parse(_ text: String, file: String?) throws(ConfigurationError) -> CostMatrix {
        func fail(_ n: Node?, _ m: String) -> ConfigurationError { ConfigurationError(file: file, line: n?.mark?.line, message: m) }
        let root = try YAMLSupport.compose(text, file: file)
        guard let m = root.mapping else { throw fail(root, "a cost file maps each action to {fraud, legit}") }
        let allowed = Set(Action.allCases.map(\.rawValue) + ["fallback", "version", "thresholds"])
        for (k, _) in m where !allowed.contains(k.string ?? "") {
            throw fail(k, "unknown key '\(k.string ?? "?")' (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
        var entries: [Entry] = []
        for action in Action.allCases {
            guard let node = m[action.rawValue], let e = node.mapping else {
                throw fail(root, "missing costs for '\(action.rawValue)' (a mapping with fraud and legit)")
            }
            func cost(_ key: String) throws(ConfigurationError) -> (String, @Sendable (TransactionReference) -> Double) {
                guard let n = e[key], let text = n.string else { throw fail(node, "\(action.rawValue): missing '\(key)'") }
                do {
                    return (text, try Expression.parse(text).compileNumber(in: Transaction.scope, for: TransactionReference.self))
                } catch {
                    throw fail(n, "\(action.rawValue).\(key): \(error)")
                }
            }
            let (ft, f) = try cost("fraud")
            let (lt, l) = try cost("legit")
            entries.append(Entry(fraud: ft, legit: lt, fraudCost: f, legitCost: l))
        }
        var fallback = Action.review
        if let f = m["fallback"] {
            guard let a = Action(rawValue: f.string ?? "") else { throw fail(f, "fallback must be approve, challenge, review or block") }
            fallback = a
        }
        var thresholds: Thresholds?
        if let t = m["thresholds"] {
            guard let seq = t.sequence else { throw fail(t, "thresholds is a list of {action, min}, checked in order") }
            var rules: [(Action, Double)] = []
            for item in seq {
                guard let im = item.mapping, let a = im["action"]?.string.flatMap(Action.init(rawValue:)),
                    let p = im["min"]?.float, p >= 0, p <= 1
                else { throw fail(item, "a threshold is {action: challenge|review|block, min: probability 0…1}") }
                rules.append((a, p))
            }
            thresholds = Thresholds(rules)
        }
        return CostMatrix(entries: entries, fallback: fallback, version: m["version"]?.string ?? "unversioned", thresholds: thresholds)
    }

    init(entries: [Entry], fallback: Action, version: String, thresholds: Thresholds?) {
        precondition(entries.count == 4 && Action.allCases.count == 4, "one entry per action")
        self.entries = entries
        self.fallback = fallback
        self.version = version
        self.thresholds = thresholds
        let (f0, f1, f2, f3) = (entries[0].fraudCost, entries[1].fraudCost, entries[2].fraudCost, entries[3].fraudCost)
        let (l0, l1, l2, l3) = (entries[0].legitCost, entries[1].legitCost, entries[2].legitCost, entries[3].legitCost)
        costs = { tx in (SIMD4(f0(tx), f1(tx), f2(tx), f3(tx)), SIMD4(l0(tx), l1(tx), l2(tx), l3(tx))) }
    }

    /// The cost file's text, with the given policy (thresholds, or nil for least expected cost).
    public func yaml(version: String, thresholds: Thresholds?) -> String {
        var s = "version: \(version)\n"
        for a in Action.allCases {
            let e = entries[a.severity]
            s += "\(a.rawValue): { fraud: \"\(e.fraud)\", legit: \"\(e.legit)\" }\n"
        }
        s += "fallback: \(fallback.rawValue)\n"
        if let t = thresholds {
            s += "thresholds:\n"
            for r in t.rules { s += "  - { action: \(r.action.rawValue), min: \(r.min) }\n" }
        }
        return s
    }

    /// What `action` costs on `tx` when it turns out to be fraud (or legitimate).
    public func cost(of action: Action, fraud: Bool, transaction tx: borrowing Transaction) -> Double {
        let e = entries[action.severity]
        return withUnsafePointer(to: tx) { fraud ? e.fraudCost(TransactionReference($0)) : e.legitCost(TransactionReference($0)) }
    }

    /// What each action (by severity) costs on the transaction at `tx` when it turns out to be
    /// fraud, and when it turns out legitimate: every cost in one call, read in place.
    public func costs(transaction tx: UnsafePointer<Transaction>) -> (fraud: SIMD4<Double>, legit: SIMD4<Double>) {
        costs(TransactionReference(tx))
    }

    /// Expected cost of each action (by severity) at fraud probability `p`.
    public func expectedCosts(probability p: Double, transaction tx: borrowing Transaction) -> SIMD4<Double> {
        withUnsafePointer(to: tx) { expectedCosts(probability: p, transaction: $0) }
    }

    /// ``expectedCosts(probability:transaction:)`` of the transaction at `tx`, read in place.
    public func expectedCosts(probability p: Double, transaction tx: UnsafePointer<Transaction>) -> SIMD4<Double> {
        let c = costs(transaction: tx)
        return p * c.fraud + (1 - p) * c.legit
    }
}

/// A decision and why.
public struct Decision: Sendable, Hashable {
    public var action: Action
    /// Expected cost of the chosen action.
    public var expectedCost: Double
    /// The action the costs alone chose, before rules.
    public var costOptimal: Action
}

/// Chooses the action of least expected cost, then applies rule overrides.
public struct Decider: Sendable {
    public let costs: CostMatrix
    public init(costs: CostMatrix) { self.costs = costs }

    /// - Parameters:
    ///   - probability: calibrated fraud probability; NaN when no model answered (then `fallback`).
    ///   - forced: an action a rule forces (block wins over allow upstream).
    ///   - floor: the least severe action rules allow.
    public func decide(probability: Double, transaction tx: borrowing Transaction, forced: Action? = nil, floor: Action = .approve) -> Decision {
        withUnsafePointer(to: tx) { decide(probability: probability, transaction: $0, forced: forced, floor: floor) }
    }

    /// ``decide(probability:transaction:forced:floor:)`` of the transaction at `tx`, read in
    /// place: passing an element of a buffer (`batch[i]`) copied it, a retain and release of each
    /// of its strings.
    public func decide(probability: Double, transaction tx: UnsafePointer<Transaction>, forced: Action? = nil, floor: Action = .approve) -> Decision {
        guard !probability.isNaN else {
            let a = forced ?? max(costs.fallback, floor)
            return Decision(action: a, expectedCost: .nan, costOptimal: costs.fallback)
        }
        // One expected cost per action, in registers: deciding a transaction allocates nothing.
        let expected = costs.expectedCosts(probability: probability, transaction: tx)
        var best = 0
        for i in 1..<expected.scalarCount where expected[i] < expected[best] { best = i }
        let optimal = costs.thresholds?.action(for: probability) ?? Action(severity: best)
        var action = forced ?? max(optimal, floor)
        if forced == nil, action != optimal, costs.thresholds == nil {
            // Under a floor, take the cheapest action at or above it.
            var cheapest = floor.severity
            for i in floor.severity..<expected.scalarCount where expected[i] < expected[cheapest] { cheapest = i }
            action = Action(severity: cheapest)
        }
        return Decision(action: action, expectedCost: expected[action.severity], costOptimal: optimal)
    }
}
