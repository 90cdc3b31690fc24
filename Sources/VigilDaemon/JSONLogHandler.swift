import Foundation
import Logging
import Vigil

/// One JSON object per line on standard error: time, level, label, message and metadata.
/// For log shippers; the daemon never puts raw card numbers, emails or IPs in metadata.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let m = event.metadata { all.merge(m) { $1 } }
        var w = JSONWriter()
        w.object { w in
            w.field("ts", Timestamp.formatISO8601(Int64(Date().timeIntervalSince1970 * 1000)))
            w.field("level", event.level.rawValue)
            w.field("logger", label)
            w.field("msg", "\(event.message)")
            for (k, v) in all.sorted(by: { $0.key < $1.key }) { w.field(k, "\(v)") }
        }
        let line = w.text + "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}
