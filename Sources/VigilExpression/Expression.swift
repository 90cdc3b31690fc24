/// Vigil's small expression language, shared by rule conditions, feature filters, derived features
/// and decision costs.
///
/// ```
/// card_count_5m >= 10 and amount < 5
/// card_id in deny_cards or prefix(card_id, 6) in deny_bins
/// 0.02 * amount + 5
/// ```
///
/// Expressions are parsed, type-checked against a ``Scope`` and compiled to closures once, at load
/// time; evaluation does no lookup by name. Missing values (NaN numbers, absent strings) make every
/// comparison false, so a rule never fires on data it does not have.
public indirect enum Expression: Sendable, Hashable {
    case number(Double)
    case string(String)
    case bool(Bool)
    case name(String, at: Int)
    case stringList([String])
    case unary(String, Expression, at: Int)
    case binary(String, Expression, Expression, at: Int)
    case call(String, [Expression], at: Int)

    /// Column (0-based UTF-8 offset) of the expression in its source text.
    var position: Int {
        switch self {
        case .name(_, let p), .unary(_, _, let p), .binary(_, _, _, let p), .call(_, _, let p): p
        default: 0
        }
    }
}

/// A problem in an expression, with the 0-based column where it is.
public struct ExpressionError: Error, Sendable, Hashable, CustomStringConvertible {
    public var column: Int
    public var message: String
    public init(column: Int, message: String) {
        self.column = column
        self.message = message
    }
    public var description: String { "column \(column + 1): \(message)" }
}

public enum ValueType: String, Sendable, Hashable, CustomStringConvertible {
    case number, string, bool, list
    public var description: String { rawValue }
}

/// What a name means when an expression is compiled.
public enum Binding: Sendable, Hashable {
    /// A number read from the context's number slot.
    case number(slot: Int)
    /// An optional string read from the context's string slot.
    case string(slot: Int)
    /// A set of strings, the context's list slot.
    case list(slot: Int)

    var type: ValueType {
        switch self {
        case .number: .number
        case .string: .string
        case .list: .list
        }
    }
}

/// The names an expression may use.
public struct Scope: Sendable {
    public var bindings: [String: Binding]
    public init(_ bindings: [String: Binding] = [:]) { self.bindings = bindings }

    /// The closest known name, for "did you mean" hints.
    func suggestion(for name: String) -> String? {
        var best: (String, Int)?
        for candidate in bindings.keys {
            let d = editDistance(name, candidate)
            if d <= max(2, name.count / 3), d < (best?.1 ?? .max) || (d == best?.1 && candidate < best!.0) {
                best = (candidate, d)
            }
        }
        return best?.0
    }
}

/// What compiled expressions read at evaluation time.
public protocol ExpressionContext: SendableMetatype {
    func number(_ slot: Int) -> Double
    func string(_ slot: Int) -> String?
    func list(_ slot: Int, contains value: String) -> Bool
    /// Whether string slot `slot`, transformed, is in `set` (`card_id in deny_cards`,
    /// `lower(email) in […]`). A context that can read the string's bytes in place lets the set's
    /// filter rule most values out first (``StringSet/rulesOut(_:_:)``); by default the string is
    /// read and transformed.
    func string(_ slot: Int, _ transform: LookupTransform, isIn set: StringSet) -> Bool
    /// The same for the context's list slot `list`.
    func string(_ slot: Int, _ transform: LookupTransform, isInList list: Int) -> Bool
}

extension ExpressionContext {
    public func string(_ slot: Int, _ transform: LookupTransform, isIn set: StringSet) -> Bool {
        guard let s = string(slot) else { return false }
        return set.contains(transform.apply(s))
    }

    public func string(_ slot: Int, _ transform: LookupTransform, isInList list: Int) -> Bool {
        guard let s = string(slot) else { return false }
        return self.list(list, contains: transform.apply(s))
    }
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8), b = Array(b.utf8)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}
