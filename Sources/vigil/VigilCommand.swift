import ArgumentParser
import Foundation
import Vigil
import VigilSimulator

@main
struct VigilCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigil",
        abstract: "Vigil: real-time fraud scoring — tools for scoring, simulating, training and inspecting features.",
        subcommands: [Score.self, Simulate.self, Train.self, BacktestCommand.self, Tune.self, DriftCommand.self, Compare.self, Features.self, Model.self, Bench.self, BenchRedis.self, BenchHistory.self, RedisMigrate.self, DevBrokerCommand.self, Produce.self, BenchKafka.self, LoadAPI.self])
}

/// Reads transactions from JSONL (default) or CSV (with a mapping), reporting bad lines.
struct InputReader {
    let decoder = TransactionDecoder()
    var csv: CSVTransactionReader?
    let mapPath: String?
    var lineNumber = 0
    var rejected = 0
    let source: String

    init(source: String, mapPath: String?) {
        self.source = source
        self.mapPath = mapPath
    }

    /// Decodes one line; reports and counts a bad one on stderr (without echoing its content).
    mutating func decode(_ line: String) throws -> Transaction? {
        lineNumber += 1
        if let mapPath, csv == nil {
            csv = try CSVTransactionReader(header: line, mapping: CSVMapping.load(path: mapPath))
            return nil
        }
        if line.isEmpty { return nil }
        do {
            if let csv { return try csv.decode(line: line) }
            return try decoder.decode(line)
        } catch {
            rejected += 1
            stderr("\(source):\(lineNumber): rejected: \(error)")
            return nil
        }
    }

    static func lines(_ path: String?) throws -> AnyIterator<String> {
        let handle: FileHandle
        if let path, path != "-" {
            guard let h = FileHandle(forReadingAtPath: path) else { throw ValidationError("cannot read \(path)") }
            handle = h
        } else {
            handle = .standardInput
        }
        var buffer: [UInt8] = []
        var start = 0  // first unread byte; consumed bytes are dropped a chunk at a time, not a line at a time
        var eof = false
        return AnyIterator {
            while true {
                if let nl = buffer[start...].firstIndex(of: 10) {
                    defer { start = nl + 1 }
                    var end = nl
                    if end > start, buffer[end - 1] == 13 { end -= 1 }
                    return String(decoding: buffer[start..<end], as: UTF8.self)
                }
                if eof {
                    guard start < buffer.count else { return nil }
                    defer { start = buffer.count }
                    return String(decoding: buffer[start...], as: UTF8.self)
                }
                buffer.removeFirst(start)
                start = 0
                let chunk = handle.readData(ofLength: 1 << 20)
                if chunk.isEmpty { eof = true } else { buffer.append(contentsOf: chunk) }
            }
        }
    }

    /// Reads a whole file (for training and feature extraction, which need time order).
    static func readAll(_ path: String, map: String?) throws -> (transactions: [Transaction], rejected: Int) {
        var reader = InputReader(source: path, mapPath: map)
        var out: [Transaction] = []
        let progress = Progress(label: "reading \(path)")
        for line in try lines(path) {
            if let tx = try reader.decode(line) { out.append(tx) }
            if reader.lineNumber % 100_000 == 0 { progress.show(count: reader.lineNumber) }
        }
        progress.done("\(out.count) transactions, \(reader.rejected) rejected")
        return (out, reader.rejected)
    }
}

/// Opens a file for writing in place (`O_CREAT | O_TRUNC`), never by replacing what the path
/// names: a device such as `/dev/stdout` or `/dev/full` stays one, and a full disk or a missing
/// directory is an error naming the path.
func openOutput(_ path: String) throws -> FileHandle {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw OutputError("cannot write \(path): \(String(cString: strerror(errno)))") }
    return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
}

/// Creates a directory (and its parents), or says why not.
func makeDirectory(_ path: String) throws {
    do {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    } catch {
        throw OutputError("cannot create directory \(path): \(systemReason(error))")
    }
    guard FileManager.default.isWritableFile(atPath: path) else { throw OutputError("directory \(path) is not writable") }
}

/// An output that cannot be written (full disk, missing or unwritable directory): exit 1 with
/// the path and the cause, not a usage error.
struct OutputError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension FileHandle {
    /// Writes all of `text`, turning an I/O error (a full disk) into a message naming `path`.
    func write(_ text: String, to path: String) throws {
        try write(Array(text.utf8), to: path)
    }

    /// Writes all of `bytes`, as ``write(_:to:)`` does text.
    func write(_ bytes: [UInt8], to path: String) throws {
        do {
            try write(contentsOf: bytes)
        } catch {
            throw OutputError("cannot write \(path): \(systemReason(error))")
        }
    }
}

/// The operating system's words for an I/O error ("No space left on device"), where it has some.
func systemReason(_ error: any Error) -> String {
    let e = error as NSError
    for candidate in [e, e.userInfo[NSUnderlyingErrorKey] as? NSError].compactMap({ $0 }) where candidate.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(candidate.code)))
    }
    if e.domain == NSCocoaErrorDomain, e.code == NSFileWriteOutOfSpaceError { return String(cString: strerror(ENOSPC)) }
    if e.domain == NSCocoaErrorDomain, e.code == NSFileNoSuchFileError || e.code == NSFileReadNoSuchFileError { return String(cString: strerror(ENOENT)) }
    return e.localizedDescription
}

func stderr(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

/// Warns about each entity of `spec` that most of `txs` lack (its features would be missing).
func warnSparseEntities(_ spec: FeatureSpec, _ txs: [Transaction], owner: String = "") {
    for s in spec.sparseEntities(in: FieldCoverage(txs)) { stderr("warning: \(owner)\(s); its features will be missing there") }
}

/// Progress on a terminal (stderr), silent when stderr is not one.
final class Progress {
    let label: String
    let tty = isatty(2) == 1
    let start = Date()
    init(label: String) { self.label = label }
    func show(fraction: Double) {
        guard tty else { return }
        let width = 30
        let filled = Int(fraction * Double(width))
        FileHandle.standardError.write(Data("\r\(label) [\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(Int(fraction * 100))%".utf8))
    }
    func show(count: Int) {
        guard tty else { return }
        let rate = Double(count) / max(Date().timeIntervalSince(start), 1e-3)
        FileHandle.standardError.write(Data("\r\(label): \(count) (\(Int(rate))/s)".utf8))
    }
    func done(_ message: String) {
        if tty { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        stderr("\(label): \(message) in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
    }
}

func parseTime(_ s: String?, _ name: String) throws -> Int64? {
    guard let s else { return nil }
    if let ms = Timestamp.parseISO8601(s) { return ms }
    throw ValidationError("--\(name): '\(s)' is not an RFC 3339 date or timestamp (e.g. 2026-01-20 or 2026-01-20T00:00:00Z)")
}

func parseDuration(_ s: String, _ name: String) throws -> Int64 {
    guard let ms = DurationText.milliseconds(s) else { throw ValidationError("--\(name): '\(s)' is not a duration (e.g. 7d, 12h)") }
    return ms
}
