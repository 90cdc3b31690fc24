import Foundation

/// Secrets come from the environment or from a file, never from configuration files or flags,
/// and are never logged.
public enum Secret {
    /// The value of `NAME_FILE` (a path; the file's contents, trailing newlines removed) or else
    /// of `NAME`; nil when neither is set.
    public static func read(_ name: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigurationError) -> [UInt8]? {
        if let path = environment[name + "_FILE"] {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigurationError(file: path, line: nil, message: "cannot read the secret file named by \(name)_FILE")
            }
            var bytes = [UInt8](data)
            while bytes.last == 10 || bytes.last == 13 { bytes.removeLast() }
            return bytes
        }
        return environment[name].map { Array($0.utf8) }
    }

    public static func string(_ name: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigurationError) -> String? {
        try read(name, environment: environment).map { String(decoding: $0, as: UTF8.self) }
    }
}

extension Secret {
    /// Compares without an early exit, so response time does not leak how much of a secret
    /// (a bearer token) matched.
    public static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = UInt8(x.count == y.count ? 0 : 1)
        for i in 0..<max(x.count, y.count) {
            diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
        }
        return diff == 0
    }
}
