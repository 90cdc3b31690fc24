extension Expression {
    /// Parses an expression. Throws with the column of the first problem.
    public static func parse(_ text: String) throws(ExpressionError) -> Expression {
        var p = Parser(text)
        let e = try p.orExpr()
        p.skipSpace()
        guard p.i == p.b.count else { throw p.error("unexpected '\(p.peekToken())'") }
        return e
    }
}

struct Parser {
    let b: [UInt8]
    var i = 0
    var depth = 0
    static let maxDepth = 64
    static let maxLength = 4096

    init(_ text: String) { b = Array(text.utf8) }

    func error(_ m: String, at: Int? = nil) -> ExpressionError { ExpressionError(column: at ?? i, message: m) }

    mutating func skipSpace() { while i < b.count, b[i] == 32 || b[i] == 9 || b[i] == 10 || b[i] == 13 { i += 1 } }

    func peekToken() -> String {
        var j = i
        while j < b.count, b[j] != 32, j - i < 16 { j += 1 }
        return j > i ? String(decoding: b[i..<j], as: UTF8.self) : "end of expression"
    }

    static func isIdentStart(_ c: UInt8) -> Bool { (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c == 95 }
    static func isIdent(_ c: UInt8) -> Bool { isIdentStart(c) || (c >= 48 && c <= 57) }

    /// Consumes a keyword (`and`, `or`, `not`, `in`) if it is next as a whole word.
    mutating func keyword(_ w: String) -> Bool {
        skipSpace()
        let u = Array(w.utf8)
        guard i + u.count <= b.count, Array(b[i..<i + u.count]) == u else { return false }
        if i + u.count < b.count, Parser.isIdent(b[i + u.count]) { return false }
        i += u.count
        return true
    }

    mutating func symbol(_ s: String) -> Bool {
        skipSpace()
        let u = Array(s.utf8)
        guard i + u.count <= b.count, Array(b[i..<i + u.count]) == u else { return false }
        i += u.count
        return true
    }

    mutating func nest() throws(ExpressionError) {
        depth += 1
        guard depth <= Parser.maxDepth else { throw error("expression nested deeper than \(Parser.maxDepth)") }
        guard b.count <= Parser.maxLength else { throw error("expression longer than \(Parser.maxLength) bytes", at: 0) }
    }

    mutating func orExpr() throws(ExpressionError) -> Expression {
        try nest()
        defer { depth -= 1 }
        var l = try andExpr()
        while true {
            skipSpace()
            let at = i
            guard keyword("or") || symbol("||") else { return l }
            l = .binary("or", l, try andExpr(), at: at)
        }
    }

    mutating func andExpr() throws(ExpressionError) -> Expression {
        var l = try notExpr()
        while true {
            skipSpace()
            let at = i
            guard keyword("and") || symbol("&&") else { return l }
            l = .binary("and", l, try notExpr(), at: at)
        }
    }

    mutating func notExpr() throws(ExpressionError) -> Expression {
        skipSpace()
        let at = i
        if keyword("not") || (i + 1 < b.count && b[i] == 33 && b[i + 1] != 61 && symbol("!")) {
            try nest()
            defer { depth -= 1 }
            return .unary("not", try notExpr(), at: at)
        }
        return try comparison()
    }

    mutating func comparison() throws(ExpressionError) -> Expression {
        let l = try additive()
        skipSpace()
        let at = i
        for op in ["==", "!=", "<=", ">=", "<", ">"] where symbol(op) {
            return .binary(op, l, try additive(), at: at)
        }
        if keyword("in") { return .binary("in", l, try additive(), at: at) }
        let save = i
        if keyword("not") {
            if keyword("in") { return .unary("not", .binary("in", l, try additive(), at: at), at: at) }
            i = save
        }
        return l
    }

    mutating func additive() throws(ExpressionError) -> Expression {
        var l = try multiplicative()
        while true {
            skipSpace()
            let at = i
            if symbol("+") {
                l = .binary("+", l, try multiplicative(), at: at)
            } else if i < b.count, b[i] == 45, symbol("-") {
                l = .binary("-", l, try multiplicative(), at: at)
            } else {
                return l
            }
        }
    }

    mutating func multiplicative() throws(ExpressionError) -> Expression {
        var l = try unaryExpr()
        while true {
            skipSpace()
            let at = i
            if symbol("*") {
                l = .binary("*", l, try unaryExpr(), at: at)
            } else if symbol("/") {
                l = .binary("/", l, try unaryExpr(), at: at)
            } else {
                return l
            }
        }
    }

    mutating func unaryExpr() throws(ExpressionError) -> Expression {
        skipSpace()
        let at = i
        if symbol("-") {
            try nest()
            defer { depth -= 1 }
            return .unary("-", try unaryExpr(), at: at)
        }
        return try primary()
    }

    mutating func primary() throws(ExpressionError) -> Expression {
        skipSpace()
        guard i < b.count else { throw error("expression ends too early") }
        let at = i
        let c = b[i]
        if c == 40 {  // (
            i += 1
            let e = try orExpr()
            guard symbol(")") else { throw error("expected ')'") }
            return e
        }
        if c == 91 {  // [ "a", "b" ]
            i += 1
            var items: [String] = []
            if symbol("]") { return .stringList(items) }
            repeat {
                skipSpace()
                guard i < b.count, b[i] == 34 || b[i] == 39 else { throw error("a list literal holds strings") }
                items.append(try stringLiteral())
            } while symbol(",")
            guard symbol("]") else { throw error("expected ']'") }
            return .stringList(items)
        }
        if c == 34 || c == 39 { return .string(try stringLiteral()) }
        if (c >= 48 && c <= 57) || c == 46 { return .number(try numberLiteral()) }
        if Parser.isIdentStart(c) {
            var j = i
            while j < b.count, Parser.isIdent(b[j]) { j += 1 }
            let name = String(decoding: b[i..<j], as: UTF8.self)
            i = j
            switch name {
            case "true": return .bool(true)
            case "false": return .bool(false)
            case "and", "or", "not", "in": throw error("expected a value before '\(name)'", at: at)
            default: break
            }
            if symbol("(") {
                var args: [Expression] = []
                if !symbol(")") {
                    repeat { args.append(try orExpr()) } while symbol(",")
                    guard symbol(")") else { throw error("expected ')' after the arguments of \(name)") }
                }
                return .call(name, args, at: at)
            }
            return .name(name, at: at)
        }
        throw error("unexpected '\(peekToken())'")
    }

    mutating func numberLiteral() throws(ExpressionError) -> Double {
        let start = i
        while i < b.count, (b[i] >= 48 && b[i] <= 57) || b[i] == 46 || b[i] == 95 { i += 1 }
        if i < b.count, b[i] == 101 || b[i] == 69 {
            i += 1
            if i < b.count, b[i] == 43 || b[i] == 45 { i += 1 }
            while i < b.count, b[i] >= 48 && b[i] <= 57 { i += 1 }
        }
        let text = String(decoding: b[start..<i].filter { $0 != 95 }, as: UTF8.self)
        guard let v = Double(text), v.isFinite else { throw error("invalid number '\(text)'", at: start) }
        return v
    }

    mutating func stringLiteral() throws(ExpressionError) -> String {
        let quote = b[i]
        let start = i
        i += 1
        var out: [UInt8] = []
        while i < b.count, b[i] != quote {
            if b[i] == 92, i + 1 < b.count { i += 1 }
            out.append(b[i])
            i += 1
        }
        guard i < b.count else { throw error("unterminated string", at: start) }
        i += 1
        return String(decoding: out, as: UTF8.self)
    }
}
