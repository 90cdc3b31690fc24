import VigilCore

/// Commands for one round trip, encoded in RESP into one buffer as they are built:
/// `*<argc>\r\n`, then `$<len>\r\n<arg>\r\n` per argument.
///
/// A batch sends a thousand commands or more; built as arrays of arguments, each cost an array
/// per command and per computed argument, all destroyed after the round trip (a tenth of the
/// Redis store's client time in a profile). Here a command is a few appends to one buffer, which
/// goes to hiredis as it is. Each command's key (its second argument, or the one ``begin(_:keyAt:)``
/// names: every command Vigil sends names one key, or keys of one slot) is remembered for Redis
/// Cluster's routing.
struct RedisPipeline {
    private(set) var bytes: [UInt8] = []
    /// Where each command starts in ``bytes``.
    private var starts: [Int] = []
    /// Each command's key, relative to its start.
    private var keys: [Range<Int>] = []
    /// Arguments written so far in the command being built, and how many it declared.
    private var argument = 0
    private var argumentCount = 0
    /// Which argument of the command being built is its key.
    private var keyArgument = 1

    init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    init(_ commands: [[[UInt8]]]) {
        self.init(capacity: commands.reduce(0) { $0 + $1.reduce(16) { $0 + $1.count + 16 } })
        for c in commands { append(c) }
    }

    var count: Int { starts.count }
    var isEmpty: Bool { starts.isEmpty }

    /// Starts a command of `arguments` arguments (the command word included); exactly that many
    /// `argument` calls follow. `keyAt`: the argument that routes it (`EVAL script 1 key`: 3).
    mutating func begin(_ arguments: Int, keyAt: Int = 1) {
        precondition(argument == argumentCount, "the previous command lacks \(argumentCount - argument) arguments")
        keyArgument = keyAt
        starts.append(bytes.count)
        keys.append(0..<0)
        argument = 0
        argumentCount = arguments
        bytes.append(UInt8(ascii: "*"))
        decimal(UInt64(arguments))
        bytes.append(13)
        bytes.append(10)
    }

    /// A whole command from its arguments.
    mutating func append(_ command: [[UInt8]], keyAt: Int = 1) {
        begin(command.count, keyAt: keyAt)
        for a in command { argument(a) }
    }

    /// The commands of `other`, after this one's.
    mutating func append(contentsOf other: RedisPipeline) {
        for i in 0..<other.count { append(command: i, of: other) }
    }

    /// Command `i` of `other`, copied as it is.
    mutating func append(command i: Int, of other: RedisPipeline) {
        precondition(argument == argumentCount, "the previous command is unfinished")
        starts.append(bytes.count)
        keys.append(other.keys[i])
        bytes.append(contentsOf: other.bytes[other.range(i)])
    }

    /// Command `i`'s key (empty when it has none).
    func key(_ i: Int) -> ArraySlice<UInt8> {
        bytes[(starts[i] + keys[i].lowerBound)..<(starts[i] + keys[i].upperBound)]
    }

    private func range(_ i: Int) -> Range<Int> { starts[i]..<(i + 1 < starts.count ? starts[i + 1] : bytes.count) }

    mutating func argument(_ a: [UInt8]) { argument(count: a.count) { $0.append(contentsOf: a) } }

    /// A constant argument (a command word, an option): no array to retain per use.
    mutating func argument(_ a: StaticString) {
        argument(count: a.utf8CodeUnitCount) { out in a.withUTF8Buffer { out.append(contentsOf: $0) } }
    }

    /// `n` in decimal.
    mutating func argument(decimal n: UInt64) {
        argument(count: ASCIINumbers.digits(n)) { ASCIINumbers.appendDecimal(n, to: &$0) }
    }

    /// An argument of `count` bytes, which `write` appends.
    mutating func argument(count: Int, _ write: (inout [UInt8]) -> Void) {
        precondition(argument < argumentCount, "more arguments than the command declared")
        bytes.append(UInt8(ascii: "$"))
        decimal(UInt64(count))
        bytes.append(13)
        bytes.append(10)
        let start = bytes.count
        write(&bytes)
        precondition(bytes.count - start == count, "an argument declared \(count) bytes and wrote \(bytes.count - start)")
        if argument == keyArgument { keys[keys.count - 1] = (start - starts[starts.count - 1])..<(bytes.count - starts[starts.count - 1]) }
        bytes.append(13)
        bytes.append(10)
        argument += 1
    }

    /// `prefix` followed by `n` in decimal (numbers: offsets, TTLs, epochs).
    mutating func argument(_ prefix: [UInt8], decimal n: UInt64) {
        argument(count: prefix.count + ASCIINumbers.digits(n)) {
            $0.append(contentsOf: prefix)
            ASCIINumbers.appendDecimal(n, to: &$0)
        }
    }

    /// `prefix`, `v` as 16 lowercase hex digits (as ``KeyedHasher/hex(_:)`` writes it), then `suffix`.
    mutating func argument(_ prefix: [UInt8], hex v: UInt64, _ suffix: UInt8) {
        argument(count: prefix.count + 17) {
            $0.append(contentsOf: prefix)
            ASCIINumbers.appendHex(v, to: &$0)
            $0.append(suffix)
        }
    }

    private mutating func decimal(_ n: UInt64) { ASCIINumbers.appendDecimal(n, to: &bytes) }

}
