import Testing
@testable import VigilRedis

@Suite("RESP pipeline") struct RedisPipelineTests {
    /// RESP as the protocol spells it, from whole arguments.
    func resp(_ commands: [[String]]) -> [UInt8] {
        var s = ""
        for c in commands {
            s += "*\(c.count)\r\n"
            for a in c { s += "$\(a.utf8.count)\r\n\(a)\r\n" }
        }
        return Array(s.utf8)
    }

    @Test func encodesCommandsAsTheProtocolSpellsThem() {
        var p = RedisPipeline()
        p.begin(6)
        p.argument(Array("XADD".utf8))
        p.argument(Array("P:x:{2:".utf8), hex: 0x00ab_cdef_0123_4567, UInt8(ascii: "}"))
        p.argument(Array("NOMKSTREAM".utf8))
        p.argument(Array("0-".utf8), decimal: 1_234_567_890)
        p.argument(Array("e".utf8))
        p.argument(count: 3) { $0.append(contentsOf: [0, 13, 10]) }  // binary-safe: CR LF inside
        p.append([Array("PEXPIRE".utf8), Array("k".utf8), Array("9".utf8)])
        p.begin(3)
        p.argument(Array("XRANGE".utf8))
        p.argument(Array("(0-".utf8), decimal: 0)
        p.argument([])
        // The sixth argument is binary (a CR LF inside), so that command is spelled by hand.
        var expected = Array("*6\r\n".utf8) + Array(resp([["XADD", "P:x:{2:00abcdef01234567}", "NOMKSTREAM", "0-1234567890", "e"]]).dropFirst(4))
        expected += Array("$3\r\n".utf8) + [0, 13, 10, 13, 10]
        expected += resp([["PEXPIRE", "k", "9"], ["XRANGE", "(0-0", ""]])
        #expect(p.bytes == expected)
        #expect(p.count == 3)
        #expect(String(decoding: p.key(0), as: UTF8.self) == "P:x:{2:00abcdef01234567}")
        #expect(String(decoding: p.key(1), as: UTF8.self) == "k")
        #expect(String(decoding: p.key(2), as: UTF8.self) == "(0-0")
    }

    @Test func copiesCommandsBetweenPipelines() {
        let whole = RedisPipeline([["SET", "a", "1"].bytes, ["GET", "b"].bytes, ["PING"].bytes])
        var picked = RedisPipeline([["ASKING"].bytes])
        picked.append(command: 1, of: whole)
        picked.append(command: 2, of: whole)
        #expect(picked.bytes == resp([["ASKING"], ["GET", "b"], ["PING"]]))
        #expect(picked.count == 3)
        #expect(String(decoding: picked.key(1), as: UTF8.self) == "b")
        #expect(picked.key(2).isEmpty)
        var joined = RedisPipeline()
        joined.append(contentsOf: whole)
        joined.append(contentsOf: picked)
        #expect(joined.bytes == whole.bytes + picked.bytes)
        #expect(joined.count == 6)
        #expect(String(decoding: joined.key(4), as: UTF8.self) == "b")
    }
}
