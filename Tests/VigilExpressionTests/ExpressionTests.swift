import Testing
@testable import VigilExpression

struct Ctx: ExpressionContext {
    var numbers: [Double]
    var strings: [String?]
    var lists: [Set<String>]
    func number(_ slot: Int) -> Double { numbers[slot] }
    func string(_ slot: Int) -> String? { strings[slot] }
    func list(_ slot: Int, contains value: String) -> Bool { lists[slot].contains(value) }
}

@Suite struct ExpressionTests {
    let scope = Scope(["amount": .number(slot: 0), "count": .number(slot: 1), "card": .string(slot: 0), "deny": .list(slot: 0)])
    let ctx = Ctx(numbers: [120, .nan], strings: ["4111222233334444"], lists: [["4111222233334444"]])

    func eval(_ text: String) throws -> Bool {
        try Expression.parse(text).compilePredicate(in: scope, for: Ctx.self)(ctx)
    }

    @Test func precedenceAndArithmetic() throws {
        #expect(try eval("amount > 100 and amount < 200"))
        #expect(try eval("amount + 10 * 2 == 140"))
        #expect(try eval("(amount + 10) * 2 == 260"))
        #expect(try eval("not amount < 100 or false"))
        #expect(try eval("-amount < 0 && !(amount == 0)"))
        #expect(try eval("amount / 0 != 1") == false)  // division by zero is missing
    }

    @Test func missingValuesMakeComparisonsFalse() throws {
        #expect(try eval("count > 0") == false)
        #expect(try eval("count <= 0") == false)
        #expect(try eval("count != 3") == false)
        #expect(try eval("is_missing(count)"))
        #expect(try eval("coalesce(count, 7) == 7"))
        #expect(try eval("max(count, 1) > 0") == false)
    }

    @Test func stringsListsAndFunctions() throws {
        #expect(try eval("card in deny"))
        #expect(try eval("card not in deny") == false)
        #expect(try eval(#"prefix(card, 4) == "4111""#))
        #expect(try eval(#"prefix(card, 6) in ["411122", "999999"]"#))
        #expect(try eval(#"lower("ABC") == "abc""#))
        #expect(try eval(#"number("12.5") == 12.5"#))
        #expect(try eval("abs(-3) == 3 and sqrt(16) == 4 and min(1, 2) == 1"))
    }

    @Test(arguments: [
        ("amount >", "ends too early"),
        ("amount > 1)", "unexpected"),
        ("amont > 1", "unknown name 'amont'; did you mean 'amount'?"),
        ("card > 1", "cannot combine a string and a number"),
        ("amount in deny", "cannot combine"),
        ("card in amount", "must be a list"),
        ("amount + 1", "must be true or false"),
        ("frobnicate(amount)", "unknown function"),
        ("abs(card)", "takes a number"),
        ("prefix(card, amount)", "whole number"),
        ("\"unterminated", "unterminated"),
        ("amount > 1 and", "ends too early"),
    ])
    func errorsSayWhatAndWhere(text: String, message: String) {
        do {
            _ = try eval(text)
            Issue.record("expected an error for \(text)")
        } catch {
            #expect("\(error)".contains(message), "\(error)")
        }
    }

    @Test("lower and prefix take their byte paths only where they equal the character ones")
    func lowerAndPrefixFastPaths() {
        let strings = ["4111111111111111", "user1920@example.com", "User@Example.COM", "", "ab", "a\r\nb", "abcdef\r\n",
                       "abcde\r\nx", "abcdefe\u{301}", "abcdee\u{301}x", "café", "ÄBC", "🚀rocket", "12345🚀", "ABCDEF", "abc\u{7f}def"]
        for s in strings {
            #expect(Expression.lower(s) == s.lowercased(), "\(s.debugDescription)")
            for n in 0...9 { #expect(Expression.prefix(s, n) == String(s.prefix(n)), "\(s.debugDescription) \(n)") }
        }
    }

    @Test("number() reads whole numbers digit by digit and equals Double(_:) on everything")
    func numberFastPath() {
        let texts = ["5411", "0", "-0", "0042", "-17", "999999999999999", "9999999999999999", "12345678901234567890", "",
                     "-", "+5", " 5", "5 ", "1.5", "1e3", "0x10", "inf", "nan", "-", "٣", "12a"]
        for t in texts {
            let a = Expression.number(t), b = Double(t)
            #expect(a?.bitPattern == b?.bitPattern, "\(t.debugDescription): \(String(describing: a)) vs \(String(describing: b))")
        }
    }

    @Test("a StringSet answers as a Set<String> does: ASCII through its filter, anything else through the set")
    func stringSetFilter() {
        // Lengths around the 8-byte chunks, members and near misses, and canonical equivalents:
        // the Kelvin sign equals "K", "é" precomposed equals "e" + combining acute.
        var ascii = (0..<2_000).map { "card-\($0 * 7919)" }
        ascii += ["", "a", "abcdefg", "abcdefgh", "abcdefghi", "4111111111111111", "user1920@example.com"]
        let probes = ascii + (0..<20_000).map { "card-\($0)" } + ["abcdefgH", "K", "\u{212A}", "café", "cafe\u{301}", "🚀", "x\u{7f}"]
        for values in [ascii, ascii + ["\u{212A}"], ascii + ["café"], ["K", "cafe\u{301}"], [], ["only"]] {
            let set = StringSet(values), reference = Set(values)
            #expect(set.count == reference.count)
            let wrong = probes.filter { set.contains($0) != reference.contains($0) }
            #expect(wrong.isEmpty, "\(values.count) values: \(wrong.prefix(5))")
        }
    }

    @Test("a lookup on bytes in place (a field as it is, lowered or cut) answers as the string path does")
    func lookupsInPlace() {
        // Capitals at every position of an 8-byte word and around it, '@' and '[' beside A and Z,
        // CR (CR LF is one character), non-ASCII, lengths around the words.
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("aZz@[AMm09-_.\r\n".unicodeScalars) + ["é", "\u{212A}", "🚀"]
        var strings = ["", "A", "Z", "@", "[", "ABCDEFGH", "abcdefgh", "ABCDEFGHI", "4111222233334444", "User1920@Example.COM", "41\r\n1122"]
        for _ in 0..<3_000 {
            let n = Int.random(in: 0...20, using: &rng)
            strings.append(String(String.UnicodeScalarView((0..<n).map { _ in alphabet.randomElement(using: &rng)! })))
        }
        let transforms: [LookupTransform] = [.none, .lower] + (0...9).map { .prefix($0) }
        for t in transforms {
            // Members: a third of the strings, transformed, those that are ASCII (a list with
            // anything else has no filter: see `stringSetFilter`); every string is a probe.
            let set = StringSet(strings.enumerated().filter { $0.offset % 3 == 0 }.map { t.apply($0.element) }.filter { $0.utf8.allSatisfy { $0 < 0x80 } })
            var ruledOut = 0, asciiMisses = 0
            for s in strings {
                let member = set.contains(t.apply(s))
                var copy = s
                let out = copy.withUTF8 { set.rulesOut($0, t) }
                #expect(!(out && member), "\(s.debugDescription) \(t): ruled out, but a member")
                let compiled = Ctx(numbers: [], strings: [s], lists: [])
                #expect(compiled.string(0, t, isIn: set) == member)
                if !member && s.utf8.allSatisfy({ $0 < 0x80 && $0 != 0x0D }) {
                    asciiMisses += 1
                    if out { ruledOut += 1 }
                }
            }
            // The filter answers most ASCII misses itself (about 15 in 16); a lookup that never
            // ruled anything out would still be correct, and slow.
            #expect(ruledOut * 10 >= asciiMisses * 8, "\(t): \(ruledOut) of \(asciiMisses) ASCII misses ruled out")
        }
    }

    @Test func deepNestingIsRefused() {
        let deep = String(repeating: "(", count: 200) + "1" + String(repeating: ")", count: 200)
        #expect(throws: ExpressionError.self) { try Expression.parse(deep) }
    }
}
