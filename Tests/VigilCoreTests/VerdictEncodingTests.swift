import Foundation
import Testing
@testable import VigilCore

/// The verdict JSON is a contract with every consumer of the verdicts topic: these bytes must not
/// change when the encoder does. `Tests/Corpus/verdicts.golden.jsonl` was written by the
/// string-building encoder that the byte-buffer one replaced; regenerate it only for a
/// deliberate, documented change of the format (`VIGIL_WRITE_GOLDEN=1`).
struct VerdictEncodingTests {
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Corpus/verdicts.golden.jsonl")

    /// Verdicts of every shape: escapes and non-ASCII in strings, doubles from subnormal to huge,
    /// non-finite numbers, optional fields present and absent, empty and full lists.
    static func samples() -> [Verdict] {
        var rng = Lehmer(state: 2026)
        func unit() -> Double { Double(rng.next() >> 11) / Double(1 << 53) }
        let specials: [Double] = [0, -0.0, 1, 0.1, 1e-7, .leastNonzeroMagnitude, 2.2250738585072014e-308, 123456789.0, 1e21, 1e-5, 0.30000000000000004,
                                  .nan, .infinity, -.infinity, Double.greatestFiniteMagnitude, -42.5, 1e16, 123456.789]
        let strings = ["tx-1", "", "quote\"back\\slash", "line\nbreak\ttab\rcr", "ctl\u{01}\u{1f}", "café ✓ 支付", "emoji 🚀", "/slash/", "\u{7f}del"]
        let actions = Action.allCases
        var out: [Verdict] = []
        for i in 0..<400 {
            func number() -> Double {
                switch rng.next() % 4 {
                case 0: specials[Int(rng.next() % UInt64(specials.count))]
                case 1: unit()
                case 2: unit() * pow(10, Double(Int(rng.next() % 40) - 20))
                default: -unit() * 1000
                }
            }
            func string() -> String { i % 3 == 0 ? strings[Int(rng.next() % UInt64(strings.count))] : "s\(rng.next() % 100_000)" }
            let members = (0..<Int(rng.next() % 4)).map { Verdict.MemberScore(name: "m\($0)-\(string())", probability: number()) }
            let reasons = (0..<Int(rng.next() % 5)).map { k in
                ReasonCode(kind: [.rule, .feature, .degraded][k % 3], code: string(),
                           detail: rng.next() % 2 == 0 ? string() : nil, value: rng.next() % 2 == 0 ? number() : nil)
            }
            let tags = (0..<Int(rng.next() % 3)).map { _ in string() }
            out.append(Verdict(
                transactionID: i % 7 == 0 ? strings[i % strings.count] : "tx-\(i)", action: actions[i % actions.count], probability: number(),
                memberScores: MemberScores(members), reasons: reasons, tags: tags, modelVersion: string(), rulesVersion: string(),
                degraded: rng.next() % 5 == 0,
                latency: StageLatency(features: number(), rules: number(), model: number(), decide: number()),
                timestamp: Int64(bitPattern: rng.next() % 4_102_444_800_000) - (i % 11 == 0 ? 86_400_000 : 0)))
        }
        return out
    }

    @Test("verdict JSON is byte-identical to the golden file")
    func goldenBytes() throws {
        let lines = Self.samples().map { $0.json() }
        let text = lines.joined(separator: "\n") + "\n"
        if ProcessInfo.processInfo.environment["VIGIL_WRITE_GOLDEN"] == "1" {
            try Data(text.utf8).write(to: Self.golden)
        }
        let expected = try String(contentsOf: Self.golden, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(expected.count == lines.count + 1)
        var differing = 0
        for (i, (a, b)) in zip(lines, expected).enumerated() where a != b {
            differing += 1
            if differing <= 3 { Issue.record("verdict \(i):\n  now    \(a)\n  golden \(b)") }
        }
        #expect(differing == 0)
    }

    @Test("member scores past the four held inline keep their order, values and equality")
    func manyMemberScores() throws {
        let scores = (0..<7).map { Verdict.MemberScore(name: "m\($0)", probability: Double($0) / 8) }
        let members = MemberScores(scores)
        #expect(Array(members) == scores)
        #expect(members.probability(6) == 0.75)
        let v = Verdict(transactionID: "t", action: .review, probability: 0.5, memberScores: members, modelVersion: "m", rulesVersion: "r")
        #expect(v.json().contains(#""members":{"m0":0.0,"m1":0.125,"m2":0.25,"m3":0.375,"m4":0.5,"m5":0.625,"m6":0.75}"#))
        // Equal and hashed as the sequence of scores: by names and probabilities, NaN equal to nothing.
        let same = MemberScores(names: scores.map(\.name)) { Double($0) / 8 }
        #expect(same == members && same.hashValue == members.hashValue)
        #expect(MemberScores(names: ["m0", "x"]) { _ in 0 } != MemberScores(names: ["m0", "y"]) { _ in 0 })
        #expect(MemberScores(Array(scores.prefix(6))) != members)
        #expect(MemberScores([.init(name: "a", probability: .nan)]) != MemberScores([.init(name: "a", probability: .nan)]))
        var changed = scores
        changed[5].probability = 0.9
        #expect(MemberScores(changed) != members)
    }

    @Test("every verdict line is valid JSON that parses back to its fields")
    func parsesBack() throws {
        for v in Self.samples() {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(v.json().utf8)) as? [String: Any])
            #expect(object["id"] as? String == v.transactionID)
            #expect(object["action"] as? String == v.action.rawValue)
            #expect((object["reasons"] as? [Any])?.count == v.reasons.count)
            // Foundation's parser may round the last digit; the exact digits are the golden test's job.
            if v.probability.isFinite, let p = object["probability"] as? Double {
                #expect(abs(p - v.probability) <= 1e-12 * max(1, abs(v.probability)))
            }
        }
    }

    /// A fixed stream of numbers (the golden file depends on it, so not the system generator).
    struct Lehmer {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state ^ (state >> 29)
        }
    }

    @Test("numbers written as thousandths are exactly Swift's shortest form, and others are left to it")
    func thousandthsMatchDescription() {
        func written(_ v: Double) -> String {
            var w = JSONWriter()
            w.array { $0.element(v) }
            return String(w.text.dropFirst().dropLast())
        }
        var rng = Lehmer(state: 7)
        var values: [Double] = []
        for n in 1...20_000 { values += [Double(n) / 1000, -Double(n) / 1000] }
        for _ in 0..<200_000 {
            let n = Int64(rng.next() % 10_000_000_000)  // below 10⁷ once divided
            values.append(Double(n) / 1000)
            values.append(Double(n % 1_000_000) / 1000 + 0.0005)  // halfway: not thousandths
            values.append(Double(bitPattern: rng.next()))  // any double at all
        }
        values += [0.001, 0.0009999999, 9_999_999.999, 10_000_000, 1e7 - 0.0005, 0.1 + 0.2, 315.849, 1, 100, -0.0, 0, .leastNonzeroMagnitude]
        var checked = 0, fast = 0
        for v in values where v.isFinite {
            if JSONWriter.thousandths(v) != nil { fast += 1 }
            #expect(written(v) == v.description, "\(v.description)")
            checked += 1
        }
        #expect(fast > 200_000)  // the fast path was taken, not only the fallback
        #expect(checked > 600_000)
    }

    @Test("one encoder over batches (verdicts sharing their versions, degraded flag and latencies, and not) writes each verdict's own bytes")
    func sharedEncoder() {
        // Runs of verdicts given the same end as the run's first (a batch), runs where only one
        // of the shared fields differs, and single verdicts.
        var verdicts: [Verdict] = []
        let samples = Self.samples()
        var i = 0
        while i < samples.count {
            let run = samples[i..<min(samples.count, i + 1 + i % 5)]
            for (k, var v) in run.enumerated() {
                let first = run.first!
                (v.modelVersion, v.rulesVersion, v.degraded, v.latency) = (first.modelVersion, first.rulesVersion, first.degraded, first.latency)
                switch (i + k) % 9 {
                case 1: v.latency.decide += 1
                case 2: v.modelVersion += "x"
                case 3: v.rulesVersion = ""
                case 4: v.degraded.toggle()
                default: break
                }
                verdicts.append(v)
            }
            i += run.count
        }
        var encoder = VerdictEncoder()
        var shared: [UInt8] = [], separate: [UInt8] = []
        for v in verdicts {
            v.encodeJSON(into: &shared, using: &encoder)
            shared.append(UInt8(ascii: "\n"))
            separate += Array(v.json().utf8) + [UInt8(ascii: "\n")]
        }
        #expect(shared == separate)
        #expect(verdicts.count == samples.count)
    }

    @Test("encoding into a reused buffer gives the same bytes as a fresh one")
    func reusedBuffer() {
        var buffer: [UInt8] = []
        for v in Self.samples() {
            buffer.removeAll(keepingCapacity: true)
            v.encodeJSON(into: &buffer)
            #expect(buffer == Array(v.json().utf8))
        }
    }
}
