import Foundation
import Testing
@testable import VigilCore

@Suite struct DecoderTests {
    let decoder = TransactionDecoder()

    func problems(_ json: String) -> [DecodeProblem] {
        do {
            _ = try decoder.decode(json)
            return []
        } catch {
            return error.problems
        }
    }

    @Test func decodesEveryCanonicalField() throws {
        let tx = try decoder.decode("""
            {"id":"t1","timestamp":"2026-03-01T12:30:00.250+01:00","amount":12.5,"currency":"EUR","card_id":"4111",
             "customer_id":"c","merchant_id":"m","terminal_id":"t","device_id":"d","ip":"1.2.3.4","email":"a@b.c",
             "country":"FR","mcc":"5411","channel":"ecom","lat":48.8,"lon":2.3,"label":1,"extra":{"nested":[1,2,{"x":null}]}}
            """)
        #expect(tx.id == "t1")
        #expect(tx.timestamp == Timestamp.parseISO8601("2026-03-01T11:30:00.250Z"))
        #expect(tx.amount == 12.5)
        #expect(tx.cardID == "4111" && tx.customerID == "c" && tx.merchantID == "m" && tx.terminalID == "t")
        #expect(tx.deviceID == "d" && tx.ip == "1.2.3.4" && tx.email == "a@b.c" && tx.country == "FR")
        #expect(tx.mcc == "5411" && tx.channel == "ecom" && tx.lat == 48.8 && tx.lon == 2.3 && tx.label == 1)
    }

    @Test func numbersReadWithoutStrtodEqualItsResult() throws {
        var state: UInt64 = 11
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state ^ (state >> 29)
        }
        var texts = ["0", "-0", "0.0", "1", "12.5", "0.1", "0.30000000000000004", "123456789012345", "1234567890123456",
                     "0.000000000000000000001", "0.0000000000000000000001", "9007199254740993", "1e3", "-2.5E-3", "99.999999999999999"]
        for _ in 0..<100_000 {
            let digits = String(next() % 10_000_000_000_000_000)
            let point = Int(next() % UInt64(digits.count + 1))
            var t = point == digits.count ? digits : String(digits.prefix(point).isEmpty ? "0" : digits.prefix(point)) + "." + digits.dropFirst(point)
            if next() % 2 == 0 { t = "-" + t }
            texts.append(t)
        }
        var fast = 0
        for t in texts {
            guard let v = Array(t.utf8).withUnsafeBufferPointer({ JSONScanner.exactDouble($0) }) else { continue }
            #expect(v.bitPattern == Double(t)!.bitPattern, "\(t)")
            fast += 1
        }
        #expect(fast > 10_000)  // the fast path was taken, not only strtod
        // And the decoder reads its numbers so, falling back to the text for the rest.
        for t in ["12.5", "0.30000000000000004", "1e3", "999999999.99"] {
            #expect(try decoder.decode(#"{"id":"t","timestamp":1700000000000,"amount":\#(t)}"#).amount == Double(t)!)
        }
    }

    /// Numeric fields, whichever path reads them (in place for a plain number, the generic one for
    /// the rest), hold to JSON's number grammar, `Double`'s value and the field's range.
    @Test func numbersInPlaceMatchTheGenericPath() {
        let ranges: [(field: String, range: ClosedRange<Double>)] = [("amount", 0...1e9), ("lat", -90...90), ("lon", -180...180), ("label", 0...1)]
        let texts = ["0", "-0", "1", "0.5", "12.25", "90", "90.0000000000001", "-90", "-90.5", "180", "181", "1e2", "1E-2", "-1",
                     "999999999.99", "1000000000.01", "123456789012345678", "0.1234567890123456789", "01", "1.", "-", ".5", "1 ", "2\n", "3\t"]
        let jsonNumber = try! Regex(#"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"#)
        for (field, range) in ranges {
            for text in texts {
                let other = field == "amount" ? "" : #","amount":1"#
                let json = #"{"id":"t","timestamp":1700000000000\#(other),"\#(field)":\#(text)}"#
                let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
                let valid = trimmed.wholeMatch(of: jsonNumber) != nil
                let value = Double(trimmed)
                let inRange = value.map { range.contains($0) && (field != "label" || $0 == 0 || $0 == 1) } ?? false
                do {
                    let tx = try decoder.decode(json)
                    #expect(valid && inRange, "\(field): \(text) accepted")
                    let got: Double? = switch field {
                    case "amount": tx.amount
                    case "lat": tx.lat
                    case "lon": tx.lon
                    default: tx.label.map(Double.init)
                    }
                    #expect(field == "label" ? got == value : got?.bitPattern == value?.bitPattern, "\(field): \(text)")
                } catch {
                    #expect(!(valid && inRange), "\(field): \(text) refused: \(error)")
                    let p = error.problems
                    #expect(p.count == 1 && (valid ? p[0].field == field : p[0].reason.hasPrefix("malformed JSON")), "\(field): \(text): \(p)")
                }
            }
        }
    }

    @Test func timestampForms() throws {
        let utc = try #require(Timestamp.parseISO8601("2026-03-01T12:00:00Z"))
        #expect(Timestamp.parseISO8601("2026-03-01 12:00:00") == utc)  // no zone = UTC, space separator
        #expect(Timestamp.parseISO8601("2026-03-01T14:00:00+02:00") == utc)
        #expect(Timestamp.parseISO8601("2026-03-01T12:00:00.5Z") == utc + 500)
        #expect(try decoder.decode(#"{"id":"a","timestamp":\#(utc),"amount":1}"#).timestamp == utc)  // epoch ms
        #expect(Timestamp.parseISO8601("2026-02-30T00:00:00Z") == nil)
        #expect(Timestamp.parseISO8601("2026-03-01T25:00:00Z") == nil)
        #expect(Timestamp.parseISO8601("yesterday") == nil)
        #expect(Timestamp.formatISO8601(utc) == "2026-03-01T12:00:00.000Z")
        let cal = Timestamp.calendar(utc)  // a Sunday
        #expect(cal.hour == 12 && cal.weekday == 6)
    }

    @Test(arguments: [
        (#"{"timestamp":"2026-01-01T00:00:00Z","amount":1}"#, "id", "required field missing"),
        (#"{"id":"a","amount":1}"#, "timestamp", "required field missing"),
        (#"{"id":"a","timestamp":"2026-01-01T00:00:00Z"}"#, "amount", "required field missing"),
        (#"{"id":7,"timestamp":"2026-01-01T00:00:00Z","amount":1}"#, "id", "must be a string"),
        (#"{"id":"","timestamp":"2026-01-01T00:00:00Z","amount":1}"#, "id", "must not be empty"),
        (#"{"id":"a","timestamp":"soon","amount":1}"#, "timestamp", "not an RFC 3339 timestamp"),
        (#"{"id":"a","timestamp":true,"amount":1}"#, "timestamp", "must be an RFC 3339 string or epoch milliseconds"),
        (#"{"id":"a","timestamp":1.5,"amount":1}"#, "timestamp", "epoch milliseconds must be an integer"),
        (#"{"id":"a","timestamp":"0001-01-01T00:00:00Z","amount":1}"#, "timestamp", "outside"),
        (#"{"id":"a","timestamp":"9999-12-31T00:00:00Z","amount":1}"#, "timestamp", "outside"),
        (#"{"id":"a","timestamp":"2026-01-01T00:00:00Z","amount":-1}"#, "amount", "must be ≥"),
        (#"{"id":"a","timestamp":"2026-01-01T00:00:00Z","amount":1e300}"#, "amount", "must be ≤"),
        (#"{"id":"a","timestamp":"2026-01-01T00:00:00Z","amount":1e999}"#, "amount", "must be finite"),
        (#"{"id":"a","timestamp":"2026-01-01T00:00:00Z","amount":"12"}"#, "amount", "must be a number"),
        (#"{"id":"a","timestamp":"2026-01-01T00:00:00Z","amount":1,"lat":91}"#, "lat", "must be ≤"),
        (#"{"id":"a","timestamp":"2026-01-01T00:00:00Z","amount":1,"lon":"x"}"#, "lon", "must be a number"),
        (#"{"id":"a","timestamp":"2026-01-01T00:00:00Z","amount":1,"label":2}"#, "label", "must be 0 or 1"),
        (#"{"id":"a","timestamp":"2026-01-01T00:00:00Z","amount":1,"mcc":5411}"#, "mcc", "must be a string"),
        (#"{"id":"a","timestamp":"2026-01-01T00:00:00Z","amount":1,"amount":2}"#, "amount", "duplicate key"),
        (#"{"id":"a","timestamp":"2026-01-01T00:00:00Z","amount":1,"mcc":"1","mcc":"2"}"#, "mcc", "duplicate key"),
        (#"{"id":"a","id":"b","timestamp":"2026-01-01T00:00:00Z","amount":1}"#, "id", "duplicate key"),
        (#"{"id":"\#(String(repeating: "i", count: 257))","timestamp":"2026-01-01T00:00:00Z","amount":1}"#, "id", "longer than 256 bytes"),
        (#"{"id":"a","timestamp":"2026-01-01T00:00:00Z","amount":1,"merchant_id":"\#(String(repeating: "m", count: 257))"}"#, "merchant_id", "longer than 256 bytes"),
    ])
    func fieldProblems(json: String, field: String, reason: String) {
        let p = problems(json)
        #expect(p.contains { $0.field == field && $0.reason.contains(reason) }, "\(p)")
    }

    @Test func reportsEveryProblemAtOnce() {
        let p = problems(#"{"id":1,"timestamp":"x","amount":-5,"lat":500}"#)
        #expect(Set(p.compactMap(\.field)) == ["id", "timestamp", "amount", "lat"])
    }

    @Test func sensitiveValuesAreNotEchoed() {
        let p = problems(#"{"id":"a","timestamp":"2026-01-01T00:00:00Z","amount":1,"card_id":4111111111111111}"#)
        #expect(p.count == 1 && p[0].value == nil)
        #expect(!"\(TransactionDecodingError(problems: p))".contains("4111111111111111"))
    }

    @Test(arguments: [
        "", "[]", "{", #"{"id":"a""#, #"{"id":"a",}"#, #"{"id":"a"} x"#, #"{"id":"\x"}"#, #"{"id":"\ud800"}"#,
        #"{"id":nul}"#, #"{"a":01}"#, "{\"id\":\"a\u{01}\"}", #"{"a":[[[[[[[[[[1]]]]]]]]]]}"#, #"{"a":-}"#,
    ])
    func malformedJSONIsASyntaxError(json: String) {
        let p = problems(json)
        #expect(p.count == 1 && p[0].reason.hasPrefix("malformed JSON") || json.isEmpty && !p.isEmpty, "\(p)")
    }

    @Test func invalidUTF8() {
        let bytes: [UInt8] = Array(#"{"id":""#.utf8) + [0xff, 0xfe] + Array(#"","timestamp":1,"amount":1}"#.utf8)
        #expect(throws: TransactionDecodingError.self) { try decoder.decode(bytes) }
    }

    @Test func oversizeMessage() {
        var limits = DecoderLimits()
        limits.maxBytes = 100
        let big = #"{"id":"a","timestamp":"2026-01-01T00:00:00Z","amount":1,"note":"\#(String(repeating: "x", count: 200))"}"#
        #expect(throws: TransactionDecodingError.self) { try TransactionDecoder(limits: limits).decode(big) }
    }

    @Test func escapesAndUnicode() throws {
        let tx = try decoder.decode(#"{"id":"a\"b\\c\u00e9\ud83d\ude00","timestamp":"2026-01-01T00:00:00Z","amount":0}"#)
        #expect(tx.id == "a\"b\\cé😀")
    }

    /// Keys read whole words at a time (a plain key of under 16 bytes with 16 bytes left in the
    /// message) give the field and the position the byte-by-byte scan gives: every field name,
    /// each one byte off, cut short and run long, escaped, with non-ASCII bytes, and random
    /// keys of 0–20 bytes, each followed by 0–32 bytes of message so both paths are taken.
    @Test func keysReadByWordsMatchTheScan() throws {
        var keys: [String] = []
        for name in TransactionField.allCases.map(\.rawValue) {
            keys += [name, name + "x", String(name.dropLast()), "x" + name, name.uppercased(), name + "é",
                     "\\u00" + String(name.utf8.first!, radix: 16) + String(name.dropFirst()),  // escaped first letter
                     String(name.prefix(2)) + "\\\"" + String(name.dropFirst(2))]
            for k in name.indices { keys.append(name.replacingCharacters(in: k...k, with: "_")) }
        }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let alphabet = Array("abcdeilmnoprstuy_".utf8)
        for _ in 0..<3000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let length = Int(state >> 59) % 21
            var key: [UInt8] = []
            for k in 0..<length { key.append(alphabet[Int((state >> UInt64(k % 8 * 3)) & 15) % alphabet.count]) }
            keys.append(String(decoding: key, as: UTF8.self))
        }
        for key in keys {
            let expected = TransactionField(rawValue: try JSONSerialization.jsonObject(with: Data(("\"" + key + "\"").utf8), options: .fragmentsAllowed) as! String)
            for padding in [0, 1, 7, 8, 15, 16, 32] {
                let json = Array(("{\"" + key + "\":" + String(repeating: "1", count: max(1, padding)) + "}").utf8)
                let (field, end) = try json.withUnsafeBufferPointer { b in
                    var scanner = JSONScanner(bytes: b, limits: DecoderLimits())
                    scanner.i = 1
                    return (try scanner.fieldKey(), scanner.i)
                }
                #expect(field == expected, "key \(key) + \(padding)")
                #expect(json[end] == UInt8(ascii: ":"), "key \(key) + \(padding): after the key at \(end)")
            }
        }
        // A key that is not UTF-8 is an error either way.
        for padding in [0, 32] {
            let json = Array("{\"i".utf8) + [0xFF] + Array(("d\":" + String(repeating: "1", count: max(1, padding)) + "}").utf8)
            #expect(throws: JSONScanner.Syntax.self, "padding \(padding)") {
                try json.withUnsafeBufferPointer { b in
                    var scanner = JSONScanner(bytes: b, limits: DecoderLimits())
                    scanner.i = 1
                    _ = try scanner.fieldKey()
                }
            }
        }
    }

    /// Strings read 8 plain bytes at a time decode as the byte-by-byte scan does: an escape, a
    /// non-ASCII character, a raw control character or an invalid byte at every offset of the
    /// first words, with plain text after it of every length.
    @Test func stringsReadByWordsMatchTheScan() throws {
        let specials: [(bytes: [UInt8], valid: Bool)] = [
            (Array(#"\""#.utf8), true), (Array(#"\\"#.utf8), true), (Array(#"\n"#.utf8), true),
            (Array(#"\u00e9"#.utf8), true), (Array("é".utf8), true), (Array("😀".utf8), true), ([0x7F], true),
            ([0x01], false), ([0x1F], false), ([0xFF], false), ([0xC3], false),
        ]
        for special in specials {
            for before in 0..<20 {
                for after in [0, 1, 7, 8, 9, 17] {
                    let literal = Array(repeating: UInt8(ascii: "a"), count: before) + special.bytes + Array(repeating: UInt8(ascii: "z"), count: after)
                    let json = Array(#"{"timestamp":"2026-01-01T00:00:00Z","amount":1,"id":""#.utf8) + literal + Array(#""}"#.utf8)
                    let decoded = try? decoder.decode(json)
                    guard special.valid else {
                        #expect(decoded == nil, "\(special.bytes) after \(before) bytes")
                        continue
                    }
                    let expected = try JSONSerialization.jsonObject(with: Data([34] + literal + [34]), options: .fragmentsAllowed) as? String
                    #expect(decoded?.id == expected, "\(special.bytes) after \(before) bytes, \(after) after")
                }
            }
        }
    }

    /// Plain strings of every length around the inline limit (15 bytes) and the 8-byte words,
    /// each at every offset of a word, as the id and as an optional field; empty optional strings
    /// read as absent, `null` too.
    @Test func plainStringsOfEveryLength() throws {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789-_.:@/ ~")
        for length in 0...40 {
            for shift in 0..<8 {
                let value = String((0..<length).map { alphabet[($0 + shift) % alphabet.count] })
                let pad = String(repeating: " ", count: shift)
                let json = #"{"timestamp":"2026-01-01T00:00:00Z","amount":1,"id":\#(pad)"x\#(value)","merchant_id":\#(pad)"\#(value)"}"#
                let tx = try decoder.decode(json)
                #expect(tx.id == "x" + value && tx.merchantID == (length == 0 ? nil : value), "length \(length), shift \(shift)")
            }
        }
        #expect(try decoder.decode(#"{"id":"a","timestamp":1767225600000,"amount":1,"email":null}"#).email == nil)
    }

    @Test func labelMessages() throws {
        var json = Array(#"{"id":"t9","label":1}"#.utf8)
        let l = try json.withUnsafeBufferPointer { try decodeLabel($0) }
        #expect(l == Label(transactionID: "t9", isFraud: true))
        json = Array(#"{"id":"t9"}"#.utf8)
        #expect(throws: TransactionDecodingError.self) { try json.withUnsafeBufferPointer { try decodeLabel($0) } }
    }

    @Test func csvThroughMapping() throws {
        let mapping = try CSVMapping.parse("id: tx\ntimestamp: ts\ntimestamp_format: epoch_s\namount: amt\ncard_id: pan\n")
        let reader = try CSVTransactionReader(header: "tx,ts,amt,pan,unused", mapping: mapping)
        let tx = try reader.decode(line: #""t,1",1767225600,"12.50",4111,zzz"#)
        #expect(tx.id == "t,1" && tx.timestamp == 1_767_225_600_000 && tx.amount == 12.5 && tx.cardID == "4111")
        #expect(throws: TransactionDecodingError.self) { try reader.decode(line: "t2,1767225600,-3,4111") }
        #expect(throws: ConfigurationError.self) { try CSVMapping.parse("id: tx\ntimestamp: ts\n") }
        #expect(throws: ConfigurationError.self) { try CSVMapping.parse("id: tx\ntimestamp: ts\namount: a\nbogus: b\n") }
        #expect(throws: ConfigurationError.self) { try CSVTransactionReader(header: "a,b", mapping: mapping) }
    }
}

@Suite struct HashingTests {
    /// Reference vectors from the SipHash paper (key 00 01 … 0f, message 00 01 … n-1).
    @Test func sipHashReferenceVectors() {
        let h = KeyedHasher(k0: 0x0706_0504_0302_0100, k1: 0x0f0e_0d0c_0b0a_0908)
        #expect(h.hash([], domain: 0) == 0x726f_db47_dd0e_0e31)
        #expect(h.hash(Array(0..<15), domain: 0) == 0xa129_ca61_49be_45e5)
        #expect(h.hash(Array(0..<8), domain: 0) == 0x93f5_f579_9a93_2462)
    }

    @Test func secretsChangeTheHash() throws {
        let a = try KeyedHasher(secret: Array("0123456789abcdef".utf8))
        let b = try KeyedHasher(secret: Array("0123456789abcdeF".utf8))
        #expect(a.hash("4111111111111111") != b.hash("4111111111111111"))
        #expect(throws: ConfigurationError.self) { try KeyedHasher(secret: Array("short".utf8)) }
        #expect(!KeyedHasher.hex(a.hash("4111111111111111")).contains("4111"))
    }
}
