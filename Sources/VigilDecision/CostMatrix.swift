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
        let fraudCost: @Sendable (borrowing Transaction) -> Double
        let legitCost: @Sendable (borrowing Transaction) -> Double
    }

    /// Indexed by `Action.severity`.
    public let entries: [Entry]
    public let fallback: Action
    public let version: String

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
        let allowed = Set(Action.allCases.map(\.rawValue) + ["fallback", "version"])
        for (k, _) in m where !allowed.contains(k.string ?? "") {
            throw fail(k, "unknown key '\(k.string ?? "?")' (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
        var entries: [Entry] = []
        for action in Action.allCases {
            guard let node = m[action.rawValue], let e = node.mapping else {
                throw fail(root, "missing costs for '\(action.rawValue)' (a mapping with fraud and legit)")
            }
            func cost(_ key: String) throws(ConfigurationError) -> (String, @Sendable (borrowing Transaction) -> Double) {
                guard let n = e[key], let text = n.string else { throw fail(node, "\(action.rawValue): missing '\(key)'") }
                do {
                    return (text, try Expression.parse(text).compileNumber(in: Transaction.scope, for: Transaction.self))
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
        return CostMatrix(entries: entries, fallback: fallback, version: m["version"]?.string ?? "unversioned")
    }

    /// Expected cost of each action (by severity) at fraud probability `p`.
    public func expectedCosts(probability p: Double, transaction tx: Transaction) -> [Double] {
        entries.map { e in p * e.fraudCost(tx) + (1 - p) * e.legitCost(tx) }
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
    public func decide(probability: Double, transaction tx: Transaction, forced: Action? = nil, floor: Action = .approve) -> Decision {
        guard !probability.isNaN else {
            let a = forced ?? max(costs.fallback, floor)
            return Decision(action: a, expectedCost: .nan, costOptimal: costs.fallback)
        }
        let expected = costs.expectedCosts(probability: probability, transaction: tx)
        var best = 0
        for i in 1..<expected.count where expected[i] < expected[best] { best = i }
        let optimal = Action.allCases[best]
        var action = forced ?? max(optimal, floor)
        if forced == nil, action != optimal {
            // Under a floor, take the cheapest action at or above it.
            var cheapest = floor.severity
            for i in floor.severity..<expected.count where expected[i] < expected[cheapest] { cheapest = i }
            action = Action.allCases[cheapest]
        }
        return Decision(action: action, expectedCost: expected[action.severity], costOptimal: optimal)
    }
}
