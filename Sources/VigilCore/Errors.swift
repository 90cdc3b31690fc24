/// A configuration, rule, spec or model-bundle problem found at load time, with where it is.
///
/// Loading fails with this error and whatever was running keeps running (hot reload).
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String?
    public var line: Int?
    public var message: String

    public init(file: String?, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String {
        switch (file, line) {
        case (let f?, let l?): "\(f):\(l): \(message)"
        case (let f?, nil): "\(f): \(message)"
        default: message
        }
    }

    /// The same error, attributed to `file` when it did not name one.
    public func inFile(_ file: String) -> ConfigurationError {
        var e = self
        if e.file == nil { e.file = file }
        return e
    }
}
