import Foundation
import Yams

/// Small helpers for reading configuration files with precise errors.
public enum TextFile {
    public static func read(_ path: String) throws(ConfigurationError) -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(file: path, line: nil, message: "cannot read file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(file: path, line: nil, message: "not UTF-8 text")
        }
        return text
    }
}

public enum YAMLSupport {
    /// The 1-based line of a Yams parse error, when it carries one.
    public static func line(of error: any Error) -> Int? {
        if let e = error as? YamlError {
            switch e {
            case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
                return mark.line
            default: return nil
            }
        }
        return nil
    }

    /// Composes a YAML document, turning parse errors into ``ConfigurationError`` with a line.
    public static func compose(_ text: String, file: String?) throws(ConfigurationError) -> Node {
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw ConfigurationError(file: file, line: nil, message: "empty document")
            }
            return node
        } catch let e as ConfigurationError {
            throw e
        } catch {
            throw ConfigurationError(file: file, line: line(of: error), message: "invalid YAML: \(error)")
        }
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    /// The duration in microseconds, as a `Double`.
    public var microseconds: Double { Double(components.seconds) * 1e6 + Double(components.attoseconds) / 1e12 }
}

/// A deterministic pseudo-random generator (SplitMix64): same seed, same stream, on every
/// machine (simulation, bootstrap resampling).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// CPU nanoseconds of the calling thread (user and system).
public func threadCPUNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
