/// Event-time parsing and formatting. Vigil keeps time as Int64 milliseconds since the Unix epoch, UTC.
public enum Timestamp {
    /// Parses RFC 3339 / ISO 8601: `YYYY-MM-DD[T| ]hh:mm[:ss[.fraction]][Z|±hh:mm|±hhmm]`.
    /// No zone means UTC. Returns `nil` when the text is not such a timestamp.
    public static func parseISO8601(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { parseISO8601(bytes: $0) }
    }

    public static func parseISO8601(bytes b: UnsafeBufferPointer<UInt8>) -> Int64? {
        var i = 0
        let n = b.count
        func digits(_ count: Int) -> Int? {
            guard i + count <= n else { return nil }
            var v = 0
            for k in 0..<count {
                let c = b[i + k]
                guard c >= 48, c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
            }
            i += count
            return v
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < n, b[i] == c else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect(45), let month = digits(2), expect(45), let day = digits(2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysInMonth(year: year, month: month) else {
            return nil
        }
        var hour = 0, minute = 0, second = 0, millis = 0
        if i < n {
            guard b[i] == 84 || b[i] == 116 || b[i] == 32 else { return nil }  // T, t, space
            i += 1
            guard let h = digits(2), expect(58), let m = digits(2) else { return nil }
            hour = h
            minute = m
            if expect(58) {
                guard let s = digits(2) else { return nil }
                second = s
                if i < n, b[i] == 46 || b[i] == 44 {  // fraction
                    i += 1
                    var scale = 100
                    var any = false
                    while i < n, b[i] >= 48, b[i] <= 57 {
                        millis += Int(b[i] - 48) * scale
                        scale /= 10
                        i += 1
                        any = true
                    }
                    guard any else { return nil }
                }
            }
            guard hour < 24, minute < 60, second < 61 else { return nil }
        }
        var offsetMinutes = 0
        if i < n {
            let c = b[i]
            if c == 90 || c == 122 {  // Z
                i += 1
            } else if c == 43 || c == 45 {
                i += 1
                guard let oh = digits(2) else { return nil }
                _ = expect(58)
                guard let om = digits(2), oh < 24, om < 60 else { return nil }
                offsetMinutes = (oh * 60 + om) * (c == 45 ? -1 : 1)
            } else {
                return nil
            }
        }
        guard i == n else { return nil }
        let days = Int64(daysFromCivil(year: year, month: month, day: day))
        let secs = days * 86_400 + Int64(hour * 3600 + minute * 60 + min(second, 59))
            - Int64(offsetMinutes * 60)
        return secs * 1000 + Int64(millis)
    }

    /// Formats as `YYYY-MM-DDThh:mm:ss.sssZ`.
    public static func formatISO8601(_ ms: Int64) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(24)
        appendISO8601(ms, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// ``formatISO8601(_:)`` written straight into a byte buffer.
    public static func appendISO8601(_ ms: Int64, to out: inout [UInt8]) {
        withISO8601(ms) { out.append(contentsOf: $0) }
    }

    /// ``formatISO8601(_:)``'s bytes, written on the stack for years 0–9999 (the 24 bytes of
    /// `YYYY-MM-DDThh:mm:ss.sssZ`).
    public static func withISO8601<R>(_ ms: Int64, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        let (days, msOfDay) = floorDivMod(ms, 86_400_000)
        let (y, m, d) = civilFromDays(Int(days))
        guard (0...9999).contains(y) else {
            var bytes: [UInt8] = []
            appendISO8601(y, m, d, msOfDay: msOfDay, to: &bytes)
            return bytes.withUnsafeBufferPointer(body)
        }
        // 24 bytes, bound as bytes (so the buffer below may be typed as them).
        var text: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                   UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &text) { raw in
            func put(_ v: Int, _ width: Int, at i: Int) {
                var v = v
                for k in Swift.stride(from: i + width - 1, through: i, by: -1) {
                    raw[k] = UInt8(ascii: "0") + UInt8(v % 10)
                    v /= 10
                }
            }
            put(y, 4, at: 0)
            raw[4] = UInt8(ascii: "-")
            put(m, 2, at: 5)
            raw[7] = UInt8(ascii: "-")
            put(d, 2, at: 8)
            raw[10] = UInt8(ascii: "T")
            put(Int(msOfDay / 3_600_000), 2, at: 11)
            raw[13] = UInt8(ascii: ":")
            put(Int(msOfDay / 60_000 % 60), 2, at: 14)
            raw[16] = UInt8(ascii: ":")
            put(Int(msOfDay / 1000 % 60), 2, at: 17)
            raw[19] = UInt8(ascii: ".")
            put(Int(msOfDay % 1000), 3, at: 20)
            raw[23] = UInt8(ascii: "Z")
            return body(UnsafeBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: UInt8.self), count: 24))
        }
    }

    /// Any year, signed and padded to four digits.
    private static func appendISO8601(_ y: Int, _ m: Int, _ d: Int, msOfDay: Int64, to out: inout [UInt8]) {
        appendPadded(y, 4, to: &out)
        out.append(UInt8(ascii: "-"))
        appendPadded(m, 2, to: &out)
        out.append(UInt8(ascii: "-"))
        appendPadded(d, 2, to: &out)
        out.append(UInt8(ascii: "T"))
        appendPadded(Int(msOfDay / 3_600_000), 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendPadded(Int(msOfDay / 60_000 % 60), 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendPadded(Int(msOfDay / 1000 % 60), 2, to: &out)
        out.append(UInt8(ascii: "."))
        appendPadded(Int(msOfDay % 1000), 3, to: &out)
        out.append(UInt8(ascii: "Z"))
    }

    /// `String(v)` left-padded with zeros to `width` characters (a sign counts as one).
    static func appendPadded(_ v: Int, _ width: Int, to out: inout [UInt8]) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = 0
        var magnitude = v.magnitude
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[n] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                n += 1
            } while magnitude > 0
            let length = n + (v < 0 ? 1 : 0)
            if length < width { out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: width - length)) }
            if v < 0 { out.append(UInt8(ascii: "-")) }
            while n > 0 {
                n -= 1
                out.append(d[n])
            }
        }
    }

    /// UTC calendar fields of an instant: hour 0–23, weekday 0 = Monday … 6 = Sunday, and the day number.
    @inlinable
    public static func calendar(_ ms: Int64) -> (hour: Int, weekday: Int, day: Int64) {
        let (days, msOfDay) = floorDivMod(ms, 86_400_000)
        // 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
        let weekday = Int(((days % 7) + 7 + 3) % 7)
        return (Int(msOfDay / 3_600_000), weekday, days)
    }

    @inlinable
    static func floorDivMod(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        var q = a / b
        var r = a % b
        if r < 0 {
            q -= 1
            r += b
        }
        return (q, r)
    }

    static func isLeap(_ y: Int) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

    static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Howard Hinnant's days_from_civil.
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}

/// Parses durations such as `30s`, `5m`, `1h`, `24h`, `7d`, `500ms` into milliseconds.
public enum DurationText {
    public static func milliseconds(_ text: String) -> Int64? {
        let t = text.trimmingSpaces()
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000), ("w", 604_800_000)]
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            let number = t.dropLast(suffix.count)
            if let v = Int64(number), v >= 0 { return v * scale }
            if suffix == "ms" { continue }
        }
        return nil
    }

    /// The shortest exact text for a duration: 300000 → `5m`.
    public static func format(_ ms: Int64) -> String {
        for (suffix, scale) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1000)]
        where ms >= scale && ms % scale == 0 {
            return "\(ms / scale)\(suffix)"
        }
        return "\(ms)ms"
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
