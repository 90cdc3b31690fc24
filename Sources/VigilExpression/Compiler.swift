import Foundation

/// An expression type-checked and compiled for a context type `C`.
public enum Compiled<C: ExpressionContext>: Sendable {
    case number(@Sendable (borrowing C) -> Double)
    case string(@Sendable (borrowing C) -> String?)
    case bool(@Sendable (borrowing C) -> Bool)
    case list(@Sendable (borrowing C, String) -> Bool)

    public var type: ValueType {
        switch self {
        case .number: .number
        case .string: .string
        case .bool: .bool
        case .list: .list
        }
    }
}

extension Expression {
    /// Every name the expression reads.
    public var names: Set<String> {
        switch self {
        case .name(let n, _): [n]
        case .unary(_, let e, _): e.names
        case .binary(_, let l, let r, _): l.names.union(r.names)
        case .call(_, let args, _): args.reduce(into: Set()) { $0.formUnion($1.names) }
        default: []
        }
    }

    /// Compiles a condition: the expression must be boolean.
    public func compilePredicate<C: ExpressionContext>(
        in scope: Scope, for _: C.Type = C.self
    ) throws(ExpressionError) -> @Sendable (borrowing C) -> Bool {
        let c: Compiled<C> = try compile(in: scope)
        guard case .bool(let f) = c else {
            throw ExpressionError(column: position, message: "a condition must be true or false, this is a \(c.type)")
        }
        return f
    }

    /// Compiles a numeric expression; a boolean counts as 1 or 0.
    public func compileNumber<C: ExpressionContext>(
        in scope: Scope, for _: C.Type = C.self
    ) throws(ExpressionError) -> @Sendable (borrowing C) -> Double {
        let c: Compiled<C> = try compile(in: scope)
        switch c {
        case .number(let f): return f
        case .bool(let f): return { ctx in f(ctx) ? 1 : 0 }
        default: throw ExpressionError(column: position, message: "expected a number, this is a \(c.type)")
        }
    }

    public func compile<C: ExpressionContext>(in scope: Scope) throws(ExpressionError) -> Compiled<C> {
        switch self {
        case .number(let v): return .number { _ in v }
        case .string(let s): return .string { _ in s }
        case .bool(let v): return .bool { _ in v }
        case .stringList(let items):
            let set = StringSet(items)
            return .list { _, s in set.contains(s) }
        case .name(let n, let at):
            guard let binding = scope.bindings[n] else {
                let hint = scope.suggestion(for: n).map { "; did you mean '\($0)'?" } ?? ""
                throw ExpressionError(column: at, message: "unknown name '\(n)'\(hint)")
            }
            switch binding {
            case .number(let slot): return .number { $0.number(slot) }
            case .string(let slot): return .string { $0.string(slot) }
            case .list(let slot): return .list { ctx, s in ctx.list(slot, contains: s) }
            }
        case .unary(let op, let e, let at):
            let c: Compiled<C> = try e.compile(in: scope)
            switch (op, c) {
            case ("not", .bool(let f)): return .bool { !f($0) }
            case ("-", .number(let f)): return .number { -f($0) }
            default: throw ExpressionError(column: at, message: "'\(op)' does not apply to a \(c.type)")
            }
        case .binary(let op, let l, let r, let at):
            if op == "in", let (slot, transform) = l.stringRead(in: scope) {
                // A field looked up as it is, lowered or cut: the context may read it in place.
                switch r {
                case .stringList(let items):
                    let set = StringSet(items)
                    return .bool { $0.string(slot, transform, isIn: set) }
                case .name(let n, _):
                    if case .list(let list) = scope.bindings[n] { return .bool { $0.string(slot, transform, isInList: list) } }
                default:
                    break
                }
            }
            return try Expression.binary(op, l.compile(in: scope), r.compile(in: scope), at: at)
        case .call(let name, let args, let at):
            return try Expression.call(name, args, in: scope, at: at)
        }
    }

    /// The string slot this expression reads and what it does to it, when it is a string field
    /// as it is, `lower(field)` or `prefix(field, n)` (n a whole number); nil for anything else.
    func stringRead(in scope: Scope) -> (slot: Int, transform: LookupTransform)? {
        func field(_ e: Expression) -> Int? {
            guard case .name(let n, _) = e, case .string(let slot) = scope.bindings[n] else { return nil }
            return slot
        }
        switch self {
        case .name:
            return field(self).map { ($0, .none) }
        case .call("lower", let args, _) where args.count == 1:
            return field(args[0]).map { ($0, .lower) }
        case .call("prefix", let args, _) where args.count == 2:
            guard case .number(let v) = args[1], v >= 0, v == v.rounded(), v < Double(Int.max) else { return nil }
            return field(args[0]).map { ($0, .prefix(Int(v))) }
        default:
            return nil
        }
    }

    static func binary<C>(_ op: String, _ l: Compiled<C>, _ r: Compiled<C>, at: Int) throws(ExpressionError) -> Compiled<C> {
        switch (op, l, r) {
        case ("and", .bool(let a), .bool(let b)): return .bool { a($0) && b($0) }
        case ("or", .bool(let a), .bool(let b)): return .bool { a($0) || b($0) }
        case ("+", .number(let a), .number(let b)): return .number { a($0) + b($0) }
        case ("-", .number(let a), .number(let b)): return .number { a($0) - b($0) }
        case ("*", .number(let a), .number(let b)): return .number { a($0) * b($0) }
        case ("/", .number(let a), .number(let b)):
            return .number { ctx in
                let d = b(ctx)
                return d == 0 ? .nan : a(ctx) / d
            }
        // Comparisons with a missing value (NaN) are false, `!=` included.
        case ("==", .number(let a), .number(let b)): return .bool { a($0) == b($0) }
        case ("!=", .number(let a), .number(let b)):
            return .bool { ctx in
                let x = a(ctx), y = b(ctx)
                return x < y || x > y
            }
        case ("<", .number(let a), .number(let b)): return .bool { a($0) < b($0) }
        case ("<=", .number(let a), .number(let b)): return .bool { a($0) <= b($0) }
        case (">", .number(let a), .number(let b)): return .bool { a($0) > b($0) }
        case (">=", .number(let a), .number(let b)): return .bool { a($0) >= b($0) }
        case ("==", .string(let a), .string(let b)):
            return .bool { ctx in
                guard let x = a(ctx), let y = b(ctx) else { return false }
                return x == y
            }
        case ("!=", .string(let a), .string(let b)):
            return .bool { ctx in
                guard let x = a(ctx), let y = b(ctx) else { return false }
                return x != y
            }
        case ("==", .bool(let a), .bool(let b)): return .bool { a($0) == b($0) }
        case ("!=", .bool(let a), .bool(let b)): return .bool { a($0) != b($0) }
        case ("in", .string(let a), .list(let set)):
            return .bool { ctx in
                guard let x = a(ctx) else { return false }
                return set(ctx, x)
            }
        case ("in", .string, _):
            throw ExpressionError(column: at, message: "the right side of 'in' must be a list, this is a \(r.type)")
        default:
            throw ExpressionError(column: at, message: "'\(op)' cannot combine a \(l.type) and a \(r.type)")
        }
    }

    static func call<C>(_ name: String, _ args: [Expression], in scope: Scope, at: Int) throws(ExpressionError) -> Compiled<C> {
        var compiled: [Compiled<C>] = []
        for a in args { compiled.append(try a.compile(in: scope)) }
        func arity(_ n: Int) throws(ExpressionError) {
            guard compiled.count == n else {
                throw ExpressionError(column: at, message: "\(name) takes \(n) argument\(n == 1 ? "" : "s"), got \(compiled.count)")
            }
        }
        func numberArg(_ k: Int) throws(ExpressionError) -> @Sendable (borrowing C) -> Double {
            guard case .number(let f) = compiled[k] else {
                throw ExpressionError(column: args[k].position, message: "\(name) takes a number, this is a \(compiled[k].type)")
            }
            return f
        }
        func stringArg(_ k: Int) throws(ExpressionError) -> @Sendable (borrowing C) -> String? {
            guard case .string(let f) = compiled[k] else {
                throw ExpressionError(column: args[k].position, message: "\(name) takes a string, this is a \(compiled[k].type)")
            }
            return f
        }
        switch name {
        case "abs":
            try arity(1)
            let f = try numberArg(0)
            return .number { Swift.abs(f($0)) }
        case "log":
            try arity(1)
            let f = try numberArg(0)
            return .number { Foundation.log(f($0)) }
        case "sqrt":
            try arity(1)
            let f = try numberArg(0)
            return .number { f($0).squareRoot() }
        case "min", "max":
            try arity(2)
            let a = try numberArg(0), b = try numberArg(1)
            // NaN-propagating: a missing input gives a missing result.
            return name == "min"
                ? .number { ctx in let x = a(ctx), y = b(ctx); return x.isNaN || y.isNaN ? .nan : Swift.min(x, y) }
                : .number { ctx in let x = a(ctx), y = b(ctx); return x.isNaN || y.isNaN ? .nan : Swift.max(x, y) }
        case "coalesce":
            try arity(2)
            let a = try numberArg(0), b = try numberArg(1)
            return .number { ctx in let x = a(ctx); return x.isNaN ? b(ctx) : x }
        case "is_missing":
            try arity(1)
            switch compiled[0] {
            case .number(let f): return .bool { f($0).isNaN }
            case .string(let f): return .bool { f($0) == nil }
            default: throw ExpressionError(column: at, message: "is_missing takes a number or a string")
            }
        case "number":
            try arity(1)
            let f = try stringArg(0)
            return .number { ctx in f(ctx).flatMap(Expression.number) ?? .nan }
        case "lower", "upper":
            try arity(1)
            let f = try stringArg(0)
            return name == "lower" ? .string { f($0).map(Expression.lower) } : .string { f($0)?.uppercased() }
        case "prefix":
            try arity(2)
            let f = try stringArg(0)
            guard case .number(let v) = args[1], v >= 0, v == v.rounded() else {
                throw ExpressionError(column: args[1].position, message: "prefix takes a whole number of characters")
            }
            let n = Int(v)
            return .string { ctx in f(ctx).map { Expression.prefix($0, n) } }
        default:
            throw ExpressionError(
                column: at,
                message: "unknown function '\(name)' (known: abs, coalesce, is_missing, log, lower, max, min, number, prefix, sqrt, upper)")
        }
    }
}

extension Expression {
    /// `s.lowercased()`, and the same string when it is ASCII with no capital (a device id, most
    /// e-mail addresses): no new string per transaction for `lower(email) in deny_emails`.
    static func lower(_ s: String) -> String {
        var s = s
        let unchanged = s.withUTF8 { $0.allSatisfy { $0 < 0x80 && !(0x41...0x5A).contains($0) } }
        return unchanged ? s : s.lowercased()
    }

    /// The first `n` characters of `s`. When those and the byte after them are ASCII other than
    /// CR (CR LF is one character; a non-ASCII byte may join the one before it), a character is
    /// a byte: taken as bytes, without walking grapheme boundaries (`prefix(card_id, 6)`).
    static func prefix(_ s: String, _ n: Int) -> String {
        var s = s
        let bytes: String? = s.withUTF8 { b in
            let k = Swift.min(n, b.count)
            guard b[..<Swift.min(b.count, k + 1)].allSatisfy({ $0 < 0x80 && $0 != 0x0D }) else { return nil }
            return String(decoding: UnsafeBufferPointer(rebasing: b[..<k]), as: UTF8.self)
        }
        return bytes ?? String(s.prefix(n))
    }

    /// `Double(s)`, with whole numbers of up to 15 digits (an optional `-`, no other character)
    /// read digit by digit: exact in a `Double` as they stand, so the same value, without the
    /// general parser's several hundred instructions (`number(mcc)`, once per transaction).
    static func number(_ s: String) -> Double? {
        var s = s
        let whole: Double? = s.withUTF8 { b in
            let negative = b.first == 0x2D
            let digits = negative ? UnsafeBufferPointer(rebasing: b.dropFirst()) : b
            guard !digits.isEmpty, digits.count <= 15 else { return nil }
            var v: UInt64 = 0
            for c in digits {
                guard c >= 0x30, c <= 0x39 else { return nil }
                v = v &* 10 &+ UInt64(c &- 0x30)
            }
            return negative ? -Double(v) : Double(v)
        }
        return whole ?? Double(s)
    }
}
