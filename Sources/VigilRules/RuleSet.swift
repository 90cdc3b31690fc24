import Foundation
import VigilCore
import VigilExpression
import VigilFeatures
import Yams

/// What a rule does when its condition holds.
public enum RuleAction: String, Sendable, Hashable, CaseIterable {
    /// Forces `block`, whatever the model says.
    case block
    /// Sets a floor: at least `challenge`.
    case challenge
    /// Sets a floor: at least `review`.
    case review
    /// Forces `approve` (an allow list), unless a `block` rule also matched.
    case allow
    /// Only adds a reason code and a tag.
    case tag
}

/// One rule that matched a transaction.
public struct RuleHit: Sendable, Hashable {
    public var id: String
    public var action: RuleAction
    public var reason: String
}

/// The combined effect of every rule on one transaction.
public struct RuleOutcome: Sendable, Hashable {
    /// Set when a rule forces the action (`block` wins over `allow`).
    public var forced: Action?
    /// The least severe action the decider may choose.
    public var floor: Action = .approve
    public var hits: [RuleHit] = []
    public init() {}
}

/// A deny or allow list: a set of values loaded from a file, one per line (`#` starts a comment).
public struct ValueList: Sendable, Hashable {
    public var name: String
    public var values: StringSet

    public static func load(name: String, path: String) throws(ConfigurationError) -> ValueList {
        let text = try TextFile.read(path)
        var values = Set<String>()
        for line in text.split(whereSeparator: \.isNewline) {
            let v = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
                .trimmingCharacters(in: .whitespaces)
            if !v.isEmpty { values.insert(v) }
        }
        return ValueList(name: name, values: StringSet(values))
    }
}

/// What a rule reads for one evaluation: the transaction, its features and the lists. Nothing in
/// it is reference counted, so handing it to each rule's compiled closure retains nothing.
struct RuleContext: ExpressionContext {
    let row: RowContext
    /// The rule set's lists (``RuleSet/lookups``), valid while the evaluation runs. Unmanaged:
    /// a set read out of a buffer was copied for each lookup, two retains and two releases.
    let lists: UnsafeBufferPointer<Unmanaged<ListLookup>>
    func number(_ slot: Int) -> Double { row.number(slot) }
    func string(_ slot: Int) -> String? { row.string(slot) }
    func list(_ slot: Int, contains value: String) -> Bool { lists[slot]._withUnsafeGuaranteedRef { $0.values.contains(value) } }
    func string(_ slot: Int, _ transform: LookupTransform, isIn set: StringSet) -> Bool { row.string(slot, transform, isIn: set) }
    func string(_ slot: Int, _ transform: LookupTransform, isInList list: Int) -> Bool {
        lists[list]._withUnsafeGuaranteedRef { row.string(slot, transform, isIn: $0.values) }
    }
}

/// A list's values in a box the rule set owns, so that a rule reaches them through a reference
/// it does not retain (``RuleContext/lists``).
final class ListLookup: Sendable {
    let values: StringSet
    init(_ values: StringSet) { self.values = values }
}

/// A parsed, type-checked and compiled rule file.
///
/// ```yaml
/// version: "2026-11-22"
/// lists:
///   deny_cards: lists/deny_cards.txt
/// rules:
///   - id: card_testing
///     when: card_small_count_10m >= 4 and amount < 5
///     action: block
///     reason: Card-testing burst of small amounts
/// ```
public struct RuleSet: Sendable {
    public struct Rule: Sendable {
        public let id: String
        public let condition: String
        public let action: RuleAction
        public let reason: String
        public let line: Int?
        let evaluate: @Sendable (borrowing RuleContext) -> Bool
    }

    public let version: String
    public let rules: [Rule]
    public let lists: [ValueList]
    public let source: String?
    /// `lists`' values, boxed for ``RuleContext``; ``lookupRefs`` are the same boxes unretained.
    private let lookups: [ListLookup]
    private let lookupRefs: [Unmanaged<ListLookup>]
    /// Every rule's condition in one call, in file order, calling `hit` with the index of each
    /// that holds: closures nesting the rules' own as a balanced tree (a captured closure is
    /// called without a retain, where calling each out of an array retained and released it
    /// per rule and transaction; balanced, so a file of 10,000 rules nests 14 deep, not 10,000).
    let conditions: Conditions
    typealias Conditions = @Sendable (borrowing RuleContext, (Int) -> Void) -> Void

    /// No rules at all.
    public static func empty(schema: FeatureSchema) -> RuleSet { RuleSet(version: "none", rules: [], lists: [], source: nil) }

    init(version: String, rules: [Rule], lists: [ValueList], source: String?) {
        self.version = version
        self.rules = rules
        self.lists = lists
        self.source = source
        lookups = lists.map { ListLookup($0.values) }
        lookupRefs = lookups.map { Unmanaged.passUnretained($0) }
        func all(_ range: Range<Int>) -> Conditions {
            if range.count == 1 {
                let k = range.lowerBound, holds = rules[k].evaluate
                return { ctx, hit in if holds(ctx) { hit(k) } }
            }
            let middle = range.lowerBound + range.count / 2
            let first = all(range.lowerBound..<middle), second = all(middle..<range.upperBound)
            return { ctx, hit in
                first(ctx, hit)
                second(ctx, hit)
            }
        }
        if rules.isEmpty {
            conditions = { _, _ in }
        } else {
            conditions = all(rules.indices)
        }
    }

    public static func load(path: String, schema: FeatureSchema) throws(ConfigurationError) -> RuleSet {
        try parse(TextFile.read(path), file: path, schema: schema)
    }

    /// Parses and type-checks a rule file against `schema`. List paths are relative to the file.
    public static func parse(_ text: String, file: String?, schema: FeatureSchema) throws(ConfigurationError) -> RuleSet {
        func fail(_ node: Node?, _ m: String) -> ConfigurationError {
            ConfigurationError(file: file, line: node?.mark?.line, message: m)
        }
        let root = try YAMLSupport.compose(text, file: file)
        guard let m = root.mapping else { throw fail(root, "a rule file is a mapping with 'rules'") }
        for (k, _) in m where !["version", "lists", "rules"].contains(k.string ?? "") {
            throw fail(k, "unknown key '\(k.string ?? "?")' (allowed: version, lists, rules)")
        }
        let version = m["version"]?.string ?? "unversioned"
        var lists: [ValueList] = []
        var scope = RowContext.scope(features: schema.names)
        if let ln = m["lists"] {
            guard let lm = ln.mapping else { throw fail(ln, "lists must map names to files") }
            let base = file.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path } ?? "."
            for (k, v) in lm {
                guard let name = k.string, let path = v.string else { throw fail(k, "lists must map names to files") }
                let full = path.hasPrefix("/") ? path : base + "/" + path
                do {
                    lists.append(try ValueList.load(name: name, path: full))
                } catch {
                    throw fail(v, "list '\(name)': cannot read \(full)")
                }
                scope.bindings[name] = .list(slot: lists.count - 1)
            }
        }
        guard let rn = m["rules"], let seq = rn.sequence else { throw fail(m["rules"] ?? root, "'rules' must be a list") }
        var rules: [Rule] = []
        var ids = Set<String>()
        for node in seq {
            guard let r = node.mapping else { throw fail(node, "a rule is a mapping with id, when, action, reason") }
            for (k, _) in r where !["id", "when", "action", "reason"].contains(k.string ?? "") {
                throw fail(k, "unknown key '\(k.string ?? "?")' in a rule (allowed: id, when, action, reason)")
            }
            guard let id = r["id"]?.string, !id.isEmpty else { throw fail(node, "a rule needs an id") }
            guard ids.insert(id).inserted else { throw fail(r["id"], "rule '\(id)': id used twice") }
            guard let whenNode = r["when"], let condition = whenNode.string else { throw fail(node, "rule '\(id)': needs 'when'") }
            guard let actionText = r["action"]?.string, let action = RuleAction(rawValue: actionText) else {
                throw fail(r["action"] ?? node, "rule '\(id)': action must be one of block, challenge, review, allow, tag")
            }
            let reason = r["reason"]?.string ?? id
            let evaluate: @Sendable (borrowing RuleContext) -> Bool
            do {
                evaluate = try Expression.parse(condition).compilePredicate(in: scope, for: RuleContext.self)
            } catch {
                throw fail(whenNode, "rule '\(id)': \(error)")
            }
            rules.append(Rule(id: id, condition: condition, action: action, reason: reason, line: whenNode.mark?.line, evaluate: evaluate))
        }
        return RuleSet(version: version, rules: rules, lists: lists, source: file)
    }

    /// Evaluates every rule on one transaction and its feature row.
    public func evaluate(_ tx: Transaction, row: UnsafeBufferPointer<Float>) -> RuleOutcome {
        withUnsafePointer(to: tx) { evaluate($0, row: row) }
    }

    func evaluate(_ tx: UnsafePointer<Transaction>, row: UnsafeBufferPointer<Float>) -> RuleOutcome {
        var out = RuleOutcome()
        guard !rules.isEmpty else { return out }
        var allow = false
        // Rules and lists are read in place (iterating `rules` copied each rule, a retain and
        // release of its three strings and its closure), the conditions through `conditions`.
        lookupRefs.withUnsafeBufferPointer { lists in
            rules.withUnsafeBufferPointer { rules in
                conditions(RuleContext(row: RowContext(transaction: tx, row: row), lists: lists)) { i in
                    let action = rules[i].action
                    out.hits.append(RuleHit(id: rules[i].id, action: action, reason: rules[i].reason))
                    switch action {
                    case .block: out.forced = .block
                    case .allow: allow = true
                    case .challenge: out.floor = max(out.floor, .challenge)
                    case .review: out.floor = max(out.floor, .review)
                    case .tag: break
                    }
                }
            }
        }
        if out.forced == nil, allow { out.forced = .approve }
        return out
    }

    /// Evaluates every row of a batch.
    public func evaluate(_ txs: [Transaction], features: FeatureMatrix) -> [RuleOutcome] {
        features.values.withUnsafeBufferPointer { v in
            txs.withUnsafeBufferPointer { t in
                t.indices.map { i in
                    evaluate(t.baseAddress! + i, row: UnsafeBufferPointer(rebasing: v[(i * features.columns)..<((i + 1) * features.columns)]))
                }
            }
        }
    }
}
