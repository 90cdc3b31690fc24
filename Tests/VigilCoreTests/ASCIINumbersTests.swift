import Testing
import VigilCore

@Suite struct ASCIINumbersTests {
    @Test func writesWhatStringWrites() {
        for n: UInt64 in [0, 1, 9, 10, 15, 16, 99, 100, 255, 4096, 12_345, 0xdead_beef, 1 << 63, UInt64.max] {
            var decimal: [UInt8] = [], hex: [UInt8] = [], padded: [UInt8] = []
            ASCIINumbers.appendDecimal(n, to: &decimal)
            ASCIINumbers.appendHexTrimmed(n, to: &hex)
            ASCIINumbers.appendHex(n, to: &padded)
            #expect(String(decoding: decimal, as: UTF8.self) == String(n))
            #expect(ASCIINumbers.digits(n) == String(n).count)
            #expect(String(decoding: hex, as: UTF8.self) == String(n, radix: 16))
            #expect(String(decoding: padded, as: UTF8.self) == KeyedHasher.hex(n))
        }
        for n: Int64 in [0, -1, 7, -12_345, .max, .min] {
            var out: [UInt8] = [0x2f]  // appends after what is there
            ASCIINumbers.appendDecimal(n, to: &out)
            #expect(String(decoding: out, as: UTF8.self) == "/" + String(n))
        }
    }
}
